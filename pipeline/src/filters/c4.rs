//! C4's cleaning rules (Raffel et al. 2020), as datatrove applies them: drop lines that are
//! not sentences, policy boilerplate, lines mentioning javascript, citation markers; drop
//! documents with "lorem ipsum", a curly bracket, or fewer than five sentences left.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{Verdict, ends_with_terminal};

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
static SENTENCE_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"[.!?。！？]+["'”’)]*(\s|$)"#).unwrap_or_else(|e| panic!("static regex: {e}"))
});

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
        let lower = text.to_lowercase();
        if self.filter_lorem_ipsum && lower.contains("lorem ipsum") {
            v.fail("c4: lorem ipsum");
        }
        if self.filter_curly_bracket && text.contains('{') {
            v.fail("c4: curly bracket (code)");
        }
        let mut kept: Vec<String> = Vec::new();
        let mut total = 0usize;
        for line in text.split('\n') {
            let line = line.trim();
            if line.is_empty() {
                // Keep paragraph structure.
                if kept.last().is_some_and(|l| !l.is_empty()) {
                    kept.push(String::new());
                }
                continue;
            }
            total += 1;
            let line = if self.remove_citations {
                CITATION.replace_all(line, "").into_owned()
            } else {
                line.to_string()
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            let lower = line.to_lowercase();
            let drop = words.len() < self.min_words_per_line
                || words
                    .iter()
                    .any(|w| w.chars().count() > self.max_word_length)
                || (self.filter_no_terminal_punct
                    && (!ends_with_terminal(&line)
                        || line.ends_with("...")
                        || line.ends_with('…')))
                || (self.filter_javascript && lower.contains("javascript"))
                || (self.filter_policy && POLICY_SUBSTRINGS.iter().any(|p| lower.contains(p)));
            if !drop {
                kept.push(line);
            }
        }
        while kept.last().is_some_and(String::is_empty) {
            kept.pop();
        }
        let kept_lines = kept.iter().filter(|l| !l.is_empty()).count();
        let removed = if total == 0 {
            0.0
        } else {
            1.0 - kept_lines as f64 / total as f64
        };
        v.score("c4_lines_removed_frac", removed);
        let result = kept.join("\n");
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
