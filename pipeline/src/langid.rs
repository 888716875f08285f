//! Language identification with whatlang (its trigram model is compiled into the crate:
//! nothing to download). Codes are ISO 639-3 (`eng`, `cmn`, `rus`, ...).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LangIdOptions {
    /// Identify languages (default true). With false no document is dropped for its language
    /// and every document gets the filters' default (English) settings, as datatrove does
    /// without a language filter: what the stage-isolated benchmarks measure.
    pub enabled: bool,
    /// Languages to keep (ISO 639-3); empty keeps every language.
    pub keep: Vec<String>,
    /// Minimum confidence, per language; `default_min_score` for the others.
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

/// The detected language and its confidence in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Language {
    pub code: String,
    pub score: f64,
}

/// Detects the language of `text` from its first 2,000 characters (enough for a stable guess,
/// bounded cost for long documents).
pub fn identify(text: &str) -> Option<Language> {
    let end = text.char_indices().nth(2000).map_or(text.len(), |(i, _)| i);
    let info = whatlang::detect(&text[..end])?;
    Some(Language {
        code: info.lang().code().to_string(),
        score: info.confidence(),
    })
}

impl LangIdOptions {
    /// `None` to keep the document, or why it is dropped.
    pub fn verdict(&self, lang: Option<&Language>) -> Option<String> {
        let Some(lang) = lang else {
            return (!self.keep.is_empty()).then(|| "language could not be identified".into());
        };
        if !self.keep.is_empty() && !self.keep.contains(&lang.code) {
            return Some(format!("language {} not in keep list", lang.code));
        }
        let min = self
            .min_score
            .get(&lang.code)
            .copied()
            .unwrap_or(self.default_min_score);
        (lang.score < min).then(|| format!("language score {:.2} < {min}", lang.score))
    }
}
