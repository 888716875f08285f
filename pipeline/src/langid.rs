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

/// How many characters of a document language id reads.
const GUESS_CHARS: usize = 2000;

/// whatlang's guess for `text` from its first 2,000 characters (enough for a stable guess,
/// bounded cost for long documents).
fn best_guess(text: &str) -> Option<Language> {
    let info = whatlang::detect(first_chars(text, GUESS_CHARS))?;
    Some(Language {
        code: info.lang().code().to_string(),
        score: info.confidence(),
    })
}

/// The first `n` characters of `text` (all of it if shorter). A character starts at every
/// byte that is not a UTF-8 continuation byte; whole blocks of bytes are counted at once.
fn first_chars(text: &str, n: usize) -> &str {
    const BLOCK: usize = 64;
    let is_start = |byte: &u8| (*byte as i8) >= -0x40;
    let bytes = text.as_bytes();
    let mut seen = 0;
    let mut at = 0;
    while let Some(block) = bytes.get(at..at + BLOCK) {
        let starts = block.iter().filter(|b| is_start(b)).count();
        if seen + starts > n {
            break;
        }
        seen += starts;
        at += BLOCK;
    }
    for (i, byte) in bytes.iter().enumerate().skip(at) {
        if is_start(byte) {
            if seen == n {
                return &text[..i];
            }
            seen += 1;
        }
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_chars_ends_where_the_nth_char_starts() {
        let pieces = ["a", "é", "中", "😀", " ", "\n", "ab", "Ωmega"];
        let mut texts = vec![String::new()];
        let mut state = 1u64;
        for len in [1, 5, 63, 64, 65, 200, 2500, 9000] {
            let text: String = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    pieces[(state >> 33) as usize % pieces.len()]
                })
                .collect();
            texts.push(text);
        }
        texts.push("a".repeat(2000));
        texts.push("中".repeat(2001));
        for text in &texts {
            for n in [0, 1, 2, 63, 64, 65, 100, 1999, 2000, 2001, 5000] {
                let expected = text.char_indices().nth(n).map_or(text.len(), |(i, _)| i);
                assert_eq!(
                    first_chars(text, n),
                    &text[..expected],
                    "n={n} text={text:?}"
                );
            }
        }
    }
}
