//! C4's cleaning rules (Raffel et al. 2020), as datatrove applies them: drop lines that are
//! not sentences, policy boilerplate, lines mentioning javascript, citation markers; drop
//! documents with "lorem ipsum", a curly bracket, or fewer than five sentences left.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{Verdict, char_count, ends_with_terminal};

pub const SCORES: [&str; 2] = ["c4_lines_removed_frac", "c4_sentences"];

const POLICY_SUBSTRINGS: [&str; 6] = [
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
];

static CITATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[\d*\]|\[edit\]|\[citation needed\]")
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});
// ASCII-only case folding: what lower-casing the text and searching for these lower-case
// ASCII phrases finds, without lower-casing a copy of every line (the one non-ASCII character
// that lower-cases to one of their letters, the Kelvin sign for `k`, no longer matches).
static LOREM_IPSUM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i-u)lorem ipsum").unwrap_or_else(|e| panic!("static regex: {e}"))
});
static JAVASCRIPT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i-u)javascript").unwrap_or_else(|e| panic!("static regex: {e}"))
});
static POLICY: LazyLock<Regex> = LazyLock::new(|| {
    let alternatives: Vec<String> = POLICY_SUBSTRINGS.iter().map(|p| regex::escape(p)).collect();
    Regex::new(&format!("(?i-u){}", alternatives.join("|")))
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});
static SENTENCE_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"[.!?。！？]+["'”’)]*(\s|$)"#).unwrap_or_else(|e| panic!("static regex: {e}"))
});

/// The kept lines as one string: what pushing them, with empty strings for paragraph breaks,
/// onto a list, dropping trailing empty ones and joining with newlines gives.
struct KeptLines {
    text: String,
    /// Entries written, and empty entries held back until a line with text follows.
    written: usize,
    held_empty: usize,
    /// Lines with text.
    lines: usize,
    /// Whether the last entry has text.
    last_has_text: bool,
}

impl KeptLines {
    fn with_capacity(bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            written: 0,
            held_empty: 0,
            lines: 0,
            last_has_text: false,
        }
    }

    fn push(&mut self, line: &str) {
        if line.is_empty() {
            self.held_empty += 1;
            self.last_has_text = false;
            return;
        }
        for _ in 0..std::mem::take(&mut self.held_empty) {
            if self.written > 0 {
                self.text.push('\n');
            }
            self.written += 1;
        }
        if self.written > 0 {
            self.text.push('\n');
        }
        self.text.push_str(line);
        self.written += 1;
        self.lines += 1;
        self.last_has_text = true;
    }

    /// The text and the number of lines with text.
    fn finish(self) -> (String, usize) {
        (self.text, self.lines)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C4Options {
    /// Run this filter (default true).
    pub enabled: bool,
    pub remove_citations: bool,
    pub filter_no_terminal_punct: bool,
    pub min_words_per_line: usize,
    pub max_word_length: usize,
    pub min_num_sentences: usize,
    pub filter_lorem_ipsum: bool,
    pub filter_javascript: bool,
    pub filter_curly_bracket: bool,
    pub filter_policy: bool,
}

impl Default for C4Options {
    fn default() -> Self {
        Self {
            enabled: true,
            remove_citations: true,
            filter_no_terminal_punct: true,
            min_words_per_line: 3,
            max_word_length: 1000,
            min_num_sentences: 5,
            filter_lorem_ipsum: true,
            filter_javascript: true,
            filter_curly_bracket: true,
            filter_policy: true,
        }
    }
}

impl C4Options {
    /// Returns the text with the failing lines removed and the verdict on what is left.
    pub fn apply(&self, text: &str) -> (String, Verdict) {
        let mut v = Verdict::default();
        if self.filter_lorem_ipsum && LOREM_IPSUM.is_match(text) {
            v.fail("c4: lorem ipsum");
        }
        if self.filter_curly_bracket && text.contains('{') {
            v.fail("c4: curly bracket (code)");
        }
        // The kept lines joined by newlines, an empty line between paragraphs, built in place.
        let mut kept = KeptLines::with_capacity(text.len());
        let mut total = 0usize;
        for line in text.split('\n') {
            let line = line.trim();
            if line.is_empty() {
                // Keep paragraph structure.
                if kept.last_has_text {
                    kept.push("");
                }
                continue;
            }
            total += 1;
            let line = if self.remove_citations && line.contains('[') {
                CITATION.replace_all(line, "")
            } else {
                Cow::Borrowed(line)
            };
            let drop = line
                .split_whitespace()
                .take(self.min_words_per_line)
                .count()
                < self.min_words_per_line
                || (line.len() > self.max_word_length
                    && line
                        .split_whitespace()
                        .any(|w| char_count(w) > self.max_word_length))
                || (self.filter_no_terminal_punct
                    && (!ends_with_terminal(&line)
                        || line.ends_with("...")
                        || line.ends_with('…')))
                || (self.filter_javascript && JAVASCRIPT.is_match(&line))
                || (self.filter_policy && POLICY.is_match(&line));
            if !drop {
                kept.push(&line);
            }
        }
        let (result, kept_lines) = kept.finish();
        let removed = if total == 0 {
            0.0
        } else {
            1.0 - kept_lines as f64 / total as f64
        };
        v.score("c4_lines_removed_frac", removed);
        let sentences = SENTENCE_END.find_iter(&result).count();
        v.score("c4_sentences", sentences as f64);
        if sentences < self.min_num_sentences {
            v.fail(format!(
                "c4: {sentences} sentences < {}",
                self.min_num_sentences
            ));
        }
        (result, v)
    }
}
