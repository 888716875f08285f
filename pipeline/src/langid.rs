//! Language identification with whatlang (its trigram model is compiled into the crate:
//! nothing to download). Codes are ISO 639-3 (`eng`, `cmn`, `rus`, ...), and `und` for a
//! document whose language could not be decided: whatlang has no guess, or its guess scores
//! below that language's `min_score`. `und` is a label like any other: `keep = []` keeps it,
//! and a keep list can name it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LangIdOptions {
    /// Identify languages (default true). With false no document is dropped for its language
    /// and every document gets the filters' default (English) settings, as datatrove does
    /// without a language filter: what the stage-isolated benchmarks measure.
    pub enabled: bool,
    /// Languages to keep (ISO 639-3, and `und` for undetermined); empty keeps every document.
    pub keep: Vec<String>,
    /// Minimum confidence for a guess to count, per language (`default_min_score` for the
    /// others); a document whose guess scores lower is labelled `und`.
    pub min_score: std::collections::BTreeMap<String, f64>,
    pub default_min_score: f64,
}

impl Default for LangIdOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            keep: vec!["eng".into(), "cmn".into()],
            // FineWeb keeps English at 0.65; FineWeb-2's cmn_Hani language_score is 0.692.
            // whatlang's confidence is a different scale, so these are starting points.
            min_score: [("eng".to_string(), 0.5), ("cmn".to_string(), 0.5)].into(),
            default_min_score: 0.5,
        }
    }
}

/// The label for a document whose language could not be decided.
pub const UNDETERMINED: &str = "und";

/// A language and its confidence in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Language {
    pub code: String,
    pub score: f64,
}

/// What language id says of a document: its label (a language, or [`UNDETERMINED`]) and
/// whatlang's best guess, which still routes the filters (Chinese or English settings) when
/// the label is `und`.
#[derive(Debug, Clone, PartialEq)]
pub struct Identified {
    pub label: String,
    pub guess: Option<Language>,
}

impl Identified {
    /// The guess's confidence (also for `und`: how close the guess came).
    pub fn score(&self) -> Option<f64> {
        self.guess.as_ref().map(|g| g.score)
    }

    /// Whether the best guess is Mandarin Chinese (the filters' Chinese settings).
    pub fn guessed_chinese(&self) -> bool {
        self.guess.as_ref().is_some_and(|g| g.code == "cmn")
    }
}

/// whatlang's guess for `text` from its first 2,000 characters (enough for a stable guess,
/// bounded cost for long documents).
fn best_guess(text: &str) -> Option<Language> {
    let end = text.char_indices().nth(2000).map_or(text.len(), |(i, _)| i);
    let info = whatlang::detect(&text[..end])?;
    Some(Language {
        code: info.lang().code().to_string(),
        score: info.confidence(),
    })
}

impl LangIdOptions {
    /// The minimum score for a guess of `code` to count.
    pub fn min_score_of(&self, code: &str) -> f64 {
        self.min_score
            .get(code)
            .copied()
            .unwrap_or(self.default_min_score)
    }

    /// Labels `text`: the guessed language when its score reaches that language's minimum,
    /// else `und`.
    pub fn identify(&self, text: &str) -> Identified {
        let guess = best_guess(text);
        let decided = guess
            .as_ref()
            .filter(|g| g.score >= self.min_score_of(&g.code));
        Identified {
            label: decided.map_or_else(|| UNDETERMINED.to_string(), |g| g.code.clone()),
            guess,
        }
    }

    /// `None` to keep the document, or why it is dropped.
    pub fn verdict(&self, identified: &Identified) -> Option<String> {
        if self.keep.is_empty() || self.keep.contains(&identified.label) {
            return None;
        }
        if identified.label != UNDETERMINED {
            return Some(format!("language {} not in keep list", identified.label));
        }
        Some(match &identified.guess {
            None => "language undetermined (no guess; keep \"und\" to keep these)".into(),
            Some(g) => format!(
                "language undetermined (best guess {} at {:.2} < min_score {}; keep \"und\" to keep these)",
                g.code,
                g.score,
                self.min_score_of(&g.code)
            ),
        })
    }
}
