//! FineWeb's additional rules (Penedo et al. 2024): enough lines ending in punctuation, not
//! mostly short lines, few characters in duplicated lines, not a list of one-word lines.
//! `chinese()` gives FineWeb-2's cmn_Hani thresholds.

use serde::{Deserialize, Serialize};

use super::{Analysis, Verdict, char_count, ends_with_terminal};

pub const SCORES: [&str; 4] = [
    "fineweb_line_punct_ratio",
    "fineweb_short_line_ratio",
    "fineweb_char_dup_ratio",
    "fineweb_new_line_ratio",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FineWebOptions {
    /// Run this filter (default true).
    pub enabled: bool,
    /// Minimum fraction of lines that end with terminal punctuation.
    pub line_punct_thr: f64,
    /// Maximum fraction of lines of at most `short_line_length` characters.
    pub short_line_thr: f64,
    pub short_line_length: usize,
    /// Maximum fraction of characters in duplicated lines.
    pub char_duplicates_ratio: f64,
    /// Maximum newlines per word.
    pub new_line_ratio: f64,
}

impl Default for FineWebOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            line_punct_thr: 0.12,
            short_line_thr: 0.67,
            short_line_length: 30,
            char_duplicates_ratio: 0.01,
            new_line_ratio: 0.3,
        }
    }
}

impl FineWebOptions {
    /// FineWeb-2 cmn_Hani.
    pub fn chinese() -> Self {
        Self {
            line_punct_thr: 0.106,
            new_line_ratio: 0.178,
            ..Self::default()
        }
    }

    pub fn apply(&self, doc: &Analysis<'_>) -> Verdict {
        let mut v = Verdict::default();
        let lines = doc.lines.len().max(1) as f64;
        let punct = doc.lines.iter().filter(|l| ends_with_terminal(l)).count() as f64 / lines;
        v.score("fineweb_line_punct_ratio", punct);
        if punct < self.line_punct_thr {
            v.fail(format!(
                "fineweb: lines ending in punctuation {punct:.3} < {}",
                self.line_punct_thr
            ));
        }
        let short = doc
            .lines
            .iter()
            .filter(|l| {
                l.len() <= self.short_line_length || char_count(l) <= self.short_line_length
            })
            .count() as f64
            / lines;
        v.score("fineweb_short_line_ratio", short);
        if short > self.short_line_thr {
            v.fail(format!(
                "fineweb: short lines {short:.2} > {}",
                self.short_line_thr
            ));
        }
        let (_, dup_chars) = doc.duplicated_lines;
        let newline_count = doc.text.bytes().filter(|&b| b == b'\n').count();
        let non_newline_chars = (doc.chars - newline_count).max(1);
        let dup = dup_chars as f64 / non_newline_chars as f64;
        v.score("fineweb_char_dup_ratio", dup);
        if dup > self.char_duplicates_ratio {
            v.fail(format!(
                "fineweb: characters in duplicated lines {dup:.3} > {}",
                self.char_duplicates_ratio
            ));
        }
        let newlines = newline_count as f64 / doc.words.len().max(1) as f64;
        v.score("fineweb_new_line_ratio", newlines);
        if newlines > self.new_line_ratio {
            v.fail(format!(
                "fineweb: newlines per word {newlines:.3} > {}",
                self.new_line_ratio
            ));
        }
        v
    }
}
