//! Gopher (MassiveText) quality and repetition rules, Rae et al. 2021, with the thresholds
//! datatrove uses by default; `chinese()` gives FineWeb-2's cmn_Hani values.

use std::cell::OnceCell;

use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use super::ngrams::NgramInput;
use super::{Analysis, Verdict, duplicates, is_cjk_ideograph, is_symbol_word};

pub const QUALITY_SCORES: [&str; 7] = [
    "gopher_words",
    "gopher_avg_word_length",
    "gopher_symbol_word_ratio",
    "gopher_bullet_lines_ratio",
    "gopher_ellipsis_lines_ratio",
    "gopher_alpha_words_ratio",
    "gopher_stop_words",
];

pub const REPETITION_SCORES: [&str; 4] = [
    "gopher_dup_line_frac",
    "gopher_dup_para_frac",
    "gopher_top_ngram_max",
    "gopher_dup_ngram_max",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GopherQualityOptions {
    /// Run this filter (default true).
    pub enabled: bool,
    pub min_doc_words: usize,
    pub max_doc_words: usize,
    pub min_avg_word_length: f64,
    pub max_avg_word_length: f64,
    pub max_symbol_word_ratio: f64,
    pub max_bullet_lines_ratio: f64,
    pub max_ellipsis_lines_ratio: f64,
    /// At most this fraction of words may lack an alphabetic character.
    pub max_non_alpha_words_ratio: f64,
    pub min_stop_words: usize,
    pub stop_words: Vec<String>,
}

impl Default for GopherQualityOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            min_doc_words: 50,
            max_doc_words: 100_000,
            min_avg_word_length: 3.0,
            max_avg_word_length: 10.0,
            max_symbol_word_ratio: 0.1,
            max_bullet_lines_ratio: 0.9,
            max_ellipsis_lines_ratio: 0.3,
            max_non_alpha_words_ratio: 0.8,
            min_stop_words: 2,
            stop_words: ["the", "be", "to", "of", "and", "that", "have", "with"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl GopherQualityOptions {
    /// FineWeb-2 cmn_Hani.
    pub fn chinese() -> Self {
        Self {
            min_avg_word_length: 1.0,
            max_avg_word_length: 5.0,
            max_non_alpha_words_ratio: 0.735,
            stop_words: [
                "的", "年", "在", "月", "是", "和", "日", "了", "於", "·", "為", "有", "被", "人",
                "中", "为", "他", "與", "後", "也", "而", "由",
            ]
            .map(String::from)
            .to_vec(),
            ..Self::default()
        }
    }

    pub fn apply(&self, doc: &Analysis<'_>) -> Verdict {
        let mut v = Verdict::default();
        // One pass over the distinct words for the word counts, lengths, letters and stop
        // words, each weighted by how often the word occurs.
        let (mut n, mut non_symbol_chars, mut with_letter, mut stop_count) = (0, 0, 0, 0);
        // The stop words as a set for non-ASCII words, built on the first one.
        let stop_words = OnceCell::new();
        let vocabulary = &doc.vocabulary;
        for (&first, &count) in vocabulary.firsts.iter().zip(&vocabulary.counts) {
            let (word, chars) = (doc.words[first as usize], doc.word_chars[first as usize]);
            let count = count as usize;
            if !is_symbol_word(word) {
                n += count;
                non_symbol_chars += chars * count;
            }
            if has_letter(word) {
                with_letter += count;
            }
            if self.is_stop_word(word, &stop_words) {
                stop_count += count;
            }
        }
        v.score("gopher_words", n as f64);
        if n < self.min_doc_words {
            v.fail(format!("gopher: {n} words < {}", self.min_doc_words));
        }
        if n > self.max_doc_words {
            v.fail(format!("gopher: {n} words > {}", self.max_doc_words));
        }
        let avg = if n == 0 {
            0.0
        } else {
            non_symbol_chars as f64 / n as f64
        };
        v.score("gopher_avg_word_length", avg);
        if n > 0 && (avg < self.min_avg_word_length || avg > self.max_avg_word_length) {
            v.fail(format!(
                "gopher: average word length {avg:.2} outside [{}, {}]",
                self.min_avg_word_length, self.max_avg_word_length
            ));
        }
        let all_words = doc.words.len().max(1) as f64;
        let symbols = symbol_count(doc.text);
        let symbol_ratio = symbols as f64 / all_words;
        v.score("gopher_symbol_word_ratio", symbol_ratio);
        if symbol_ratio > self.max_symbol_word_ratio {
            v.fail(format!(
                "gopher: symbol/word ratio {symbol_ratio:.3} > {}",
                self.max_symbol_word_ratio
            ));
        }
        let lines = doc.lines.len().max(1) as f64;
        let bullets = doc
            .lines
            .iter()
            .filter(|l| l.starts_with(['•', '●', '○', '▪', '‣', '-', '*', '·']))
            .count() as f64
            / lines;
        v.score("gopher_bullet_lines_ratio", bullets);
        if bullets > self.max_bullet_lines_ratio {
            v.fail(format!(
                "gopher: bullet lines ratio {bullets:.2} > {}",
                self.max_bullet_lines_ratio
            ));
        }
        let ellipsis = doc
            .lines
            .iter()
            .filter(|l| l.ends_with("...") || l.ends_with('…'))
            .count() as f64
            / lines;
        v.score("gopher_ellipsis_lines_ratio", ellipsis);
        if ellipsis > self.max_ellipsis_lines_ratio {
            v.fail(format!(
                "gopher: ellipsis lines ratio {ellipsis:.2} > {}",
                self.max_ellipsis_lines_ratio
            ));
        }
        let alpha = with_letter as f64 / all_words;
        v.score("gopher_alpha_words_ratio", alpha);
        if alpha < self.max_non_alpha_words_ratio {
            v.fail(format!(
                "gopher: only {alpha:.2} of words contain a letter (< {})",
                self.max_non_alpha_words_ratio
            ));
        }
        v.score("gopher_stop_words", stop_count as f64);
        if stop_count < self.min_stop_words {
            v.fail(format!(
                "gopher: {stop_count} stop words < {}",
                self.min_stop_words
            ));
        }
        v
    }

    /// Whether `word`, lower-cased, is a stop word; lower-cases into a new string only when
    /// a non-ASCII word has a character that lower-casing changes. `stop_words` holds
    /// `self.stop_words` once initialised.
    fn is_stop_word<'s>(&'s self, word: &str, stop_words: &OnceCell<FxHashSet<&'s str>>) -> bool {
        if word.is_ascii() {
            return self
                .stop_words
                .iter()
                .any(|s| s.len() == word.len() && s.eq_ignore_ascii_case(word) && is_lower(s));
        }
        let changes = |c: char| {
            if is_cjk_ideograph(c) {
                return false;
            }
            let mut lower = c.to_lowercase();
            !(lower.next() == Some(c) && lower.next().is_none())
        };
        let stop_words =
            stop_words.get_or_init(|| self.stop_words.iter().map(String::as_str).collect());
        if word.chars().any(changes) {
            stop_words.contains(word.to_lowercase().as_str())
        } else {
            stop_words.contains(word)
        }
    }
}

/// `text.matches('#').count() + text.matches("...").count() + text.matches('…').count()` in
/// one pass: "..." matches do not overlap, so a run of dots holds a third of its length.
pub(crate) fn symbol_count(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut count, mut run, mut last_dot) = (0, 0, usize::MAX);
    // '…' is E2 80 A6 in UTF-8; A6 alone is found, then its lead bytes are checked.
    for i in memchr::memchr3_iter(b'#', b'.', 0xA6, bytes) {
        match bytes[i] {
            b'#' => count += 1,
            b'.' => {
                run = if last_dot.wrapping_add(1) == i {
                    run + 1
                } else {
                    1
                };
                if run == 3 {
                    count += 1;
                    run = 0;
                }
                last_dot = i;
            }
            _ => {
                if i >= 2 && bytes[i - 2] == 0xE2 && bytes[i - 1] == 0x80 {
                    count += 1;
                }
            }
        }
    }
    count
}

#[inline]
fn has_letter(word: &str) -> bool {
    if word.is_ascii() {
        word.bytes().any(|b| b.is_ascii_alphabetic())
    } else {
        word.chars()
            .any(|c| is_cjk_ideograph(c) || c.is_alphabetic())
    }
}

/// Whether `s` equals its lower-case form (a configured stop word with capitals never
/// matches a lower-cased word).
fn is_lower(s: &str) -> bool {
    !s.chars().any(char::is_uppercase)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GopherRepetitionOptions {
    /// Run this filter (default true).
    pub enabled: bool,
    pub dup_line_frac: f64,
    pub dup_para_frac: f64,
    pub dup_line_char_frac: f64,
    pub dup_para_char_frac: f64,
    /// (n, max fraction of characters in the most frequent n-gram).
    pub top_n_grams: Vec<(usize, f64)>,
    /// (n, max fraction of characters in duplicated n-grams).
    pub dup_n_grams: Vec<(usize, f64)>,
}

impl Default for GopherRepetitionOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            dup_line_frac: 0.3,
            dup_para_frac: 0.3,
            dup_line_char_frac: 0.2,
            dup_para_char_frac: 0.2,
            top_n_grams: vec![(2, 0.2), (3, 0.18), (4, 0.16)],
            dup_n_grams: vec![
                (5, 0.15),
                (6, 0.14),
                (7, 0.13),
                (8, 0.12),
                (9, 0.11),
                (10, 0.10),
            ],
        }
    }
}

impl GopherRepetitionOptions {
    /// FineWeb-2 cmn_Hani.
    pub fn chinese() -> Self {
        Self {
            dup_line_frac: 0.287,
            top_n_grams: vec![(2, 0.256), (3, 0.201), (4, 0.171)],
            dup_n_grams: vec![
                (5, 0.198),
                (6, 0.182),
                (7, 0.167),
                (8, 0.154),
                (9, 0.14),
                (10, 0.127),
            ],
            ..Self::default()
        }
    }

    pub fn apply(&self, doc: &Analysis<'_>) -> Verdict {
        let mut v = Verdict::default();
        let total_chars = doc.chars.max(1) as f64;

        let (dup_lines, dup_line_chars) = doc.duplicated_lines;
        // Two equal paragraphs begin with two equal lines: with no duplicated line there is no
        // duplicated paragraph to look for.
        let (para_frac, dup_para_chars) = if dup_lines == 0 {
            (0.0, 0)
        } else {
            let paragraphs: Vec<&str> = doc
                .text
                .split("\n\n")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            let (dup_paras, dup_para_chars) = duplicates(paragraphs.iter().copied());
            (
                dup_paras as f64 / paragraphs.len().max(1) as f64,
                dup_para_chars,
            )
        };
        v.score("gopher_dup_para_frac", para_frac);
        if para_frac > self.dup_para_frac {
            v.fail(format!(
                "gopher_repetition: duplicated paragraphs {para_frac:.2} > {}",
                self.dup_para_frac
            ));
        }
        if dup_para_chars as f64 / total_chars > self.dup_para_char_frac {
            v.fail("gopher_repetition: characters in duplicated paragraphs");
        }
        let line_frac = dup_lines as f64 / doc.lines.len().max(1) as f64;
        v.score("gopher_dup_line_frac", line_frac);
        if line_frac > self.dup_line_frac {
            v.fail(format!(
                "gopher_repetition: duplicated lines {line_frac:.2} > {}",
                self.dup_line_frac
            ));
        }
        if dup_line_chars as f64 / total_chars > self.dup_line_char_frac {
            v.fail("gopher_repetition: characters in duplicated lines");
        }

        let top_sizes: Vec<usize> = self.top_n_grams.iter().map(|&(n, _)| n).collect();
        let dup_sizes: Vec<usize> = self.dup_n_grams.iter().map(|&(n, _)| n).collect();
        let fractions = NgramInput {
            words: &doc.words,
            word_chars: &doc.word_chars,
            vocabulary: &doc.vocabulary,
            total_chars,
        }
        .fractions(&top_sizes, &dup_sizes);
        let mut top_max = 0.0f64;
        for (&(n, limit), &frac) in self.top_n_grams.iter().zip(&fractions.top) {
            top_max = top_max.max(frac);
            if frac > limit {
                v.fail(format!(
                    "gopher_repetition: top {n}-gram covers {frac:.3} > {limit}"
                ));
            }
        }
        v.score("gopher_top_ngram_max", top_max);
        let mut dup_max = 0.0f64;
        for (&(n, limit), &frac) in self.dup_n_grams.iter().zip(&fractions.duplicated) {
            dup_max = dup_max.max(frac);
            if frac > limit {
                v.fail(format!(
                    "gopher_repetition: duplicated {n}-grams cover {frac:.3} > {limit}"
                ));
            }
        }
        v.score("gopher_dup_ngram_max", dup_max);
        v
    }
}
