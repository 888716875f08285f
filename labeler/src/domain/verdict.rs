//! An annotator's verdict on a pair of answers, in the order they were shown.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    /// The left (first shown) answer is better.
    A,
    /// The right (second shown) answer is better.
    B,
    Tie,
    BothBad,
}

impl Choice {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
            Self::Tie => "tie",
            Self::BothBad => "both_bad",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "a" => Some(Self::A),
            "b" => Some(Self::B),
            "tie" => Some(Self::Tie),
            "both_bad" => Some(Self::BothBad),
            _ => None,
        }
    }
    /// A or B: the verdict yields a chosen/rejected pair.
    pub fn is_decisive(self) -> bool {
        matches!(self, Self::A | Self::B)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strength {
    Slightly,
    Much,
}

impl Strength {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slightly => "slightly",
            Self::Much => "much",
        }
    }
}

/// A checked preference verdict: strength only with a decisive choice; rationale present
/// when the project requires one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub choice: Choice,
    pub strength: Option<Strength>,
    pub rationale: Option<String>,
}

impl Verdict {
    pub fn parse(
        choice: Choice,
        strength: Option<Strength>,
        rationale: Option<String>,
        rationale_required: bool,
    ) -> Result<Self, String> {
        if strength.is_some() && !choice.is_decisive() {
            return Err("strength applies only to choice \"a\" or \"b\"".into());
        }
        let rationale = check_rationale(rationale, rationale_required)?;
        Ok(Self {
            choice,
            strength,
            rationale,
        })
    }
}

/// A rationale trimmed to `None` when blank, required when the project says so, at most
/// 20000 bytes of text.
pub fn check_rationale(
    rationale: Option<String>,
    rationale_required: bool,
) -> Result<Option<String>, String> {
    let rationale = rationale.filter(|r| !r.trim().is_empty());
    if rationale_required && rationale.is_none() {
        return Err("this project requires a rationale".into());
    }
    if let Some(r) = &rationale {
        if r.len() > 20_000 {
            return Err("rationale is longer than 20000 bytes".into());
        }
        super::check_text(r).map_err(|e| format!("rationale: {e}"))?;
    }
    Ok(rationale)
}
