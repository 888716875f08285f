//! Rating projects: the aspects a project scores (each with its guideline line) and an
//! annotator's rating of one answer (thumbs up or down, 1-5 per aspect, a comment).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::account::is_name;

/// Most aspects one project may define (the keys `1`-`5` score the one in focus, `a` moves
/// the focus, so a long list is slow to go through).
pub const MAX_ASPECTS: usize = 12;

/// One named aspect scored 1-5, e.g. `helpfulness`, with the line that tells annotators what
/// a 1 and a 5 mean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aspect {
    pub name: String,
    #[serde(default)]
    pub guideline: String,
}

/// A project's checked aspects: distinct names of `[A-Za-z0-9_.-]{1,64}`, guidelines of at
/// most 500 characters, at most [`MAX_ASPECTS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Aspects(Vec<Aspect>);

impl Aspects {
    pub fn parse(list: Vec<Aspect>) -> Result<Self, String> {
        if list.len() > MAX_ASPECTS {
            return Err(format!(
                "at most {MAX_ASPECTS} aspects, found {}",
                list.len()
            ));
        }
        for (i, a) in list.iter().enumerate() {
            if !is_name(&a.name) {
                return Err(format!(
                    "aspects[{i}]: name {:?} must be 1-64 characters of letters, digits, '_', '.', '-'",
                    a.name
                ));
            }
            if list[..i].iter().any(|b| b.name == a.name) {
                return Err(format!("aspects[{i}]: {:?} is named twice", a.name));
            }
            if a.guideline.chars().count() > 500 {
                return Err(format!(
                    "aspects[{i}]: the guideline is longer than 500 characters"
                ));
            }
            super::check_text(&a.guideline).map_err(|e| format!("aspects[{i}]: {e}"))?;
        }
        Ok(Self(list))
    }

    /// `name=guideline` or `name: guideline` (the command line's `--aspect`, a line of the
    /// project form); the guideline may be empty.
    pub fn parse_flags(flags: &[String]) -> Result<Self, String> {
        let list = flags
            .iter()
            .filter(|f| !f.trim().is_empty())
            .map(|f| {
                let (name, guideline) = f.split_once(['=', ':']).unwrap_or((f.as_str(), ""));
                Aspect {
                    name: name.trim().to_string(),
                    guideline: guideline.trim().to_string(),
                }
            })
            .collect();
        Self::parse(list)
    }

    pub fn as_slice(&self) -> &[Aspect] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A checked rating: scores only for the project's aspects, each 1-5 (an aspect may be left
/// unscored); the comment trimmed, `None` when blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rating {
    /// true: thumbs up (the model should answer like this more often).
    pub label: bool,
    pub scores: BTreeMap<String, u8>,
    pub comment: Option<String>,
}

impl Rating {
    pub fn parse(
        label: bool,
        scores: BTreeMap<String, i64>,
        comment: Option<String>,
        aspects: &[Aspect],
    ) -> Result<Self, String> {
        let mut checked = BTreeMap::new();
        for (name, score) in scores {
            if !aspects.iter().any(|a| a.name == name) {
                let known: Vec<&str> = aspects.iter().map(|a| a.name.as_str()).collect();
                return Err(if known.is_empty() {
                    format!("scores.{name}: this project scores no aspects")
                } else {
                    format!(
                        "scores.{name}: not an aspect of this project (one of: {})",
                        known.join(", ")
                    )
                });
            }
            if !(1..=5).contains(&score) {
                return Err(format!("scores.{name}: {score} is not between 1 and 5"));
            }
            checked.insert(name, score as u8);
        }
        let comment = comment
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
        if let Some(c) = &comment {
            if c.len() > 20_000 {
                return Err("comment is longer than 20000 bytes".into());
            }
            super::check_text(c).map_err(|e| format!("comment: {e}"))?;
        }
        Ok(Self {
            label,
            scores: checked,
            comment,
        })
    }

    /// The scores as the JSON object stored in `responses.scores`.
    pub fn scores_json(&self) -> serde_json::Value {
        serde_json::json!(self.scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aspects() -> Vec<Aspect> {
        vec![Aspect {
            name: "helpfulness".into(),
            guideline: "5: fully answers".into(),
        }]
    }

    #[test]
    fn scores_must_name_an_aspect_and_lie_in_1_to_5() {
        let ok = Rating::parse(true, [("helpfulness".into(), 4)].into(), None, &aspects());
        assert_eq!(ok.map(|r| r.scores["helpfulness"]), Ok(4));
        let bad = Rating::parse(true, [("helpfulness".into(), 6)].into(), None, &aspects());
        assert!(bad.is_err_and(|e| e.contains("between 1 and 5")));
        let unknown = Rating::parse(false, [("tone".into(), 3)].into(), None, &aspects());
        assert!(unknown.is_err_and(|e| e.contains("one of: helpfulness")));
    }

    #[test]
    fn aspect_names_are_checked_and_distinct() {
        let twice = Aspects::parse_flags(&["a=x".into(), "a=y".into()]);
        assert!(twice.is_err_and(|e| e.contains("named twice")));
        assert!(Aspects::parse_flags(&["bad name=x".into()]).is_err());
        let ok = Aspects::parse_flags(&["helpfulness=Is it useful?".into()]).unwrap_or_default();
        assert_eq!(ok.as_slice()[0].guideline, "Is it useful?");
    }
}
