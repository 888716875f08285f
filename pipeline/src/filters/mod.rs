//! Quality filters. Each is a small stage with a name, the scores it measured and, when it
//! drops a document, the reason. Thresholds come from the config; the defaults are the
//! published ones (Gopher / MassiveText, C4, FineWeb, FineWeb-2's `cmn_Hani`).
//!
//! Language routing: Chinese documents (`cmn`) are measured with words from jieba and the
//! FineWeb-2 cmn_Hani thresholds; every other language with whitespace words and the English
//! thresholds. C4's line rules are English-specific and only run on non-Chinese documents.

pub mod c4;
#[cfg(test)]
mod equivalence;
pub mod fineweb;
pub mod gopher;
pub mod ngrams;

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

pub use c4::C4Options;
pub use fineweb::FineWebOptions;
pub use gopher::{GopherQualityOptions, GopherRepetitionOptions};

/// Scores a filter measured, by name, and its drop reason if any.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    pub scores: Vec<(&'static str, f64)>,
    pub drop: Option<String>,
}

impl Verdict {
    fn score(&mut self, name: &'static str, value: f64) {
        self.scores.push((name, value));
    }

    /// Records the first reason only: later checks still add their scores.
    fn fail(&mut self, reason: impl Into<String>) {
        if self.drop.is_none() {
            self.drop = Some(reason.into());
        }
    }
}

/// The document as the filters see it, split once and shared by every filter: words (with
/// their character counts), non-empty trimmed lines, character counts, duplicated lines.
#[derive(Debug)]
pub struct Analysis<'a> {
    pub text: &'a str,
    pub chinese: bool,
    pub words: Vec<&'a str>,
    /// Characters of each word, aligned with `words`.
    pub word_chars: Vec<usize>,
    /// Each word's id, and each distinct word's first position and count.
    pub vocabulary: ngrams::Vocabulary,
    pub lines: Vec<&'a str>,
    /// Characters in `text`.
    pub chars: usize,
    /// Duplicated lines and the characters they hold (first occurrences not counted).
    pub duplicated_lines: (usize, usize),
}

static JIEBA: LazyLock<jieba_rs::Jieba> = LazyLock::new(jieba_rs::Jieba::new);

/// Characters that make a token "only punctuation" for word counts.
fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation() || (!is_cjk_ideograph(c) && !c.is_alphanumeric() && !c.is_whitespace())
}

/// CJK unified ideographs (U+4E00 to U+9FFF): alphabetic, not numeric, not whitespace and
/// unchanged by lower-casing, known without the Unicode tables (a test checks each of them).
/// Most characters of Chinese text are in this block.
pub(crate) fn is_cjk_ideograph(c: char) -> bool {
    ('\u{4E00}'..='\u{9FFF}').contains(&c)
}

/// Characters in `s`, without decoding when it is ASCII.
pub(crate) fn char_count(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

impl<'a> Analysis<'a> {
    pub fn new(text: &'a str, chinese: bool) -> Self {
        let ascii = text.is_ascii();
        let (words, word_chars): (Vec<&str>, Vec<usize>) = if chinese {
            // A token's characters are `end - start` (jieba counts them), so its words are
            // not decoded again.
            JIEBA
                .cut(text, false)
                .into_iter()
                // `!w.trim().is_empty()`, deciding on the first character in most cases.
                .filter(|t| {
                    t.word
                        .chars()
                        .any(|c| is_cjk_ideograph(c) || !c.is_whitespace())
                })
                .map(|token| (token.word, token.end - token.start))
                .unzip()
        } else if ascii {
            let words = ascii_words(text);
            let word_chars = words.iter().map(|w| w.len()).collect();
            (words, word_chars)
        } else {
            let words: Vec<&str> = text.split_whitespace().collect();
            let word_chars = words.iter().map(|w| char_count(w)).collect();
            (words, word_chars)
        };
        let vocabulary = ngrams::Vocabulary::new(&words);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let duplicated_lines = duplicates(lines.iter().copied());
        Self {
            text,
            chinese,
            words,
            word_chars,
            vocabulary,
            lines,
            chars: if ascii {
                text.len()
            } else {
                text.chars().count()
            },
            duplicated_lines,
        }
    }

    /// Words with at least one non-punctuation character.
    pub fn non_symbol_words(&self) -> impl Iterator<Item = &&'a str> {
        self.words.iter().filter(|w| !is_symbol_word(w))
    }
}

/// `text.split_whitespace()` for ASCII text, from a mask of its whitespace bytes (tab, line
/// feed, vertical tab, form feed, carriage return, space) per 64 bytes: words start where
/// a non-space follows a space and end where a space follows a non-space, taken in turn
/// from the masks (a branch per word boundary, which alternate, instead of one per byte,
/// which mispredicts at every boundary: 37 -> 23 ms over the 18 MB bench corpus's ASCII
/// texts).
fn ascii_words(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut words = Vec::with_capacity(text.len() / 5);
    // Whether the byte before the chunk is a space (the text starts after one).
    let mut space_before = 1u64;
    let mut start = 0;
    for (c, chunk) in bytes.chunks(64).enumerate() {
        let base = c * 64;
        let mut space = 0u64;
        for (j, &b) in chunk.iter().enumerate() {
            space |= u64::from(b == b' ' || b.wrapping_sub(b'\t') < 5) << j;
        }
        // Past the end counts as space, so a last word ends there.
        if chunk.len() < 64 {
            space |= !0u64 << chunk.len();
        }
        let before = (space << 1) | space_before;
        let mut starts = !space & before;
        let mut ends = space & !before;
        space_before = space >> 63;
        loop {
            let (s, e) = (starts.trailing_zeros(), ends.trailing_zeros());
            if s < e {
                start = base + s as usize;
                starts &= starts - 1;
            } else if e < 64 {
                words.push(&text[start..base + e as usize]);
                ends &= ends - 1;
            } else {
                break;
            }
        }
    }
    // A text of whole chunks ending in a word.
    if space_before == 0 {
        words.push(&text[start..]);
    }
    words
}

/// [`ascii_words`] as it was first written, a byte at a time: the reference it is tested
/// against.
#[cfg(test)]
fn ascii_words_reference(text: &str) -> Vec<&str> {
    let is_space = |b: u8| b == b' ' || (b'\t'..=b'\r').contains(&b);
    let mut words = Vec::with_capacity(text.len() / 5);
    let mut start = None;
    for (i, &b) in text.as_bytes().iter().enumerate() {
        match (is_space(b), start) {
            (true, Some(s)) => {
                words.push(&text[s..i]);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push(&text[s..]);
    }
    words
}

/// Whether every character of `word` is punctuation or a symbol.
#[inline]
pub(crate) fn is_symbol_word(word: &str) -> bool {
    if word.is_ascii() {
        // ASCII: punctuation, or a control character (neither alphanumeric nor whitespace).
        !word
            .bytes()
            .any(|b| b.is_ascii_alphanumeric() || char::from(b).is_whitespace())
    } else {
        word.chars().all(is_punct)
    }
}

/// Terminal punctuation, Latin and CJK.
pub const TERMINAL_PUNCTUATION: &[char] = &[
    '.', '!', '?', '"', '\'', '”', '’', '…', '。', '！', '？', '」', '』', '；', ';', ')', '）',
];

pub(crate) fn ends_with_terminal(line: &str) -> bool {
    line.trim_end()
        .chars()
        .last()
        .is_some_and(|c| TERMINAL_PUNCTUATION.contains(&c))
}

/// Counts duplicated elements and the characters they hold (first occurrences not counted).
pub(crate) fn duplicates<'s>(items: impl Iterator<Item = &'s str>) -> (usize, usize) {
    let mut seen: rustc_hash::FxHashSet<&str> = rustc_hash::FxHashSet::default();
    let (mut count, mut chars) = (0, 0);
    for item in items {
        if !seen.insert(item) {
            count += 1;
            chars += char_count(item);
        }
    }
    (count, chars)
}

/// Which filters run, with their thresholds, for each language group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterOptions {
    pub gopher_quality: GopherQualityOptions,
    pub gopher_repetition: GopherRepetitionOptions,
    pub c4: C4Options,
    pub fineweb: FineWebOptions,
    /// The Chinese preset (FineWeb-2 cmn_Hani), used for documents identified as `cmn`.
    pub chinese: ChineseOptions,
}

/// FineWeb-2's cmn_Hani settings for the Gopher and FineWeb filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChineseOptions {
    /// Use these settings for Chinese documents; with false, Chinese documents get the
    /// English settings (which reject most of them: words are not space-separated).
    pub enabled: bool,
    pub gopher_quality: GopherQualityOptions,
    pub gopher_repetition: GopherRepetitionOptions,
    pub fineweb: FineWebOptions,
}

impl Default for ChineseOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            gopher_quality: GopherQualityOptions::chinese(),
            gopher_repetition: GopherRepetitionOptions::chinese(),
            fineweb: FineWebOptions::chinese(),
        }
    }
}

/// One filter's outcome, named.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterOutcome {
    pub filter: &'static str,
    pub verdict: Verdict,
}

/// The names of every score column the filters can produce, in a stable order.
pub fn score_names() -> Vec<&'static str> {
    let mut names = Vec::new();
    names.extend(gopher::QUALITY_SCORES);
    names.extend(gopher::REPETITION_SCORES);
    names.extend(c4::SCORES);
    names.extend(fineweb::SCORES);
    names
}

impl FilterOptions {
    /// Runs the filters on `text` in order: C4 line removal first (it rewrites the text), then
    /// the document-level filters on the result. Returns the final text and each outcome; the
    /// first outcome with a drop reason decides.
    pub fn run(&self, text: String, chinese: bool) -> (String, Vec<FilterOutcome>) {
        let mut outcomes = Vec::new();
        let mut text = text;
        if !chinese && self.c4.enabled {
            let (kept, verdict) = self.c4.apply(&text);
            text = kept;
            outcomes.push(FilterOutcome {
                filter: "c4",
                verdict,
            });
        }
        let (quality, repetition, fineweb) = if chinese && self.chinese.enabled {
            (
                &self.chinese.gopher_quality,
                &self.chinese.gopher_repetition,
                &self.chinese.fineweb,
            )
        } else {
            (&self.gopher_quality, &self.gopher_repetition, &self.fineweb)
        };
        if !(quality.enabled || repetition.enabled || fineweb.enabled) {
            // Nothing to measure: skip splitting the text into words and lines.
            return (text, outcomes);
        }
        let analysis = Analysis::new(&text, chinese);
        if quality.enabled {
            outcomes.push(FilterOutcome {
                filter: "gopher_quality",
                verdict: quality.apply(&analysis),
            });
        }
        if repetition.enabled {
            outcomes.push(FilterOutcome {
                filter: "gopher_repetition",
                verdict: repetition.apply(&analysis),
            });
        }
        if fineweb.enabled {
            outcomes.push(FilterOutcome {
                filter: "fineweb",
                verdict: fineweb.apply(&analysis),
            });
        }
        (text, outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::{Analysis, char_count, is_cjk_ideograph};

    #[test]
    fn chinese_word_characters_are_the_words_character_counts() {
        let texts = [
            "",
            "我来到北京清华大学，iPhone 15 Pro的售价为9999元。\r\n第二行\t  ",
            "𠀀𠀁𪚥龘 扩展区汉字、emoji 😀🎉 和 한국어 텍스트 ÀÉ ＡＢＣ１２３",
            "　　天下大势，分久必合，合久必分。\n\n周末七国分争，并入于秦。",
        ];
        for text in texts {
            let analysis = Analysis::new(text, true);
            let counted: Vec<usize> = analysis.words.iter().map(|w| char_count(w)).collect();
            assert_eq!(analysis.word_chars, counted, "{text:?}");
            assert!(
                analysis.words.iter().all(|w| !w.trim().is_empty()),
                "{text:?}"
            );
        }
        assert!(
            Analysis::new(texts[2], true)
                .word_chars
                .iter()
                .any(|&c| c > 1)
        );
    }

    /// The mask version splits as the byte loop did: texts around the 64-byte chunk edges,
    /// every kind of ASCII whitespace, runs of spaces, words across chunks.
    #[test]
    fn ascii_words_equal_the_reference() {
        let pieces = [
            "word", " ", "\t", "\n", "\u{0B}", "\u{0C}", "\r\n", "  ", "x", "a-b.c", "\u{1}",
        ];
        let mut text = String::new();
        for round in 0..3000usize {
            text.push_str(pieces[(round * 5 + round / 7) % pieces.len()]);
            assert_eq!(
                super::ascii_words(&text),
                super::ascii_words_reference(&text),
                "{text:?}"
            );
        }
        for len in 0..200 {
            for text in [
                "x".repeat(len),
                format!(" {}", "y".repeat(len)),
                format!("{} z", "y".repeat(len)),
            ] {
                assert_eq!(
                    super::ascii_words(&text),
                    super::ascii_words_reference(&text),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn cjk_ideographs_are_letters_without_case_digits_or_space() {
        let block: Vec<char> = ('\u{4E00}'..='\u{9FFF}').collect();
        assert_eq!(block.len(), 0x5200);
        for c in block {
            assert!(is_cjk_ideograph(c));
            assert!(c.is_alphabetic() && c.is_alphanumeric(), "{c:?}");
            assert!(!c.is_numeric() && !c.is_whitespace(), "{c:?}");
            assert!(c.to_lowercase().eq([c]), "{c:?}");
        }
        assert!(!is_cjk_ideograph('\u{3007}') && !is_cjk_ideograph('a'));
    }
}
