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
// Lines are searched through `Phrases`; these regexes search lines whose citations were
// removed.
static JAVASCRIPT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i-u)javascript").unwrap_or_else(|e| panic!("static regex: {e}"))
});
static POLICY: LazyLock<Regex> = LazyLock::new(|| {
    let alternatives: Vec<String> = POLICY_SUBSTRINGS.iter().map(|p| regex::escape(p)).collect();
    Regex::new(&format!("(?i-u){}", alternatives.join("|")))
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});

fn is_sentence_end(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '。' | '！' | '？')
}

/// The number of matches of `[.!?。！？]+["'”’)]*(\s|$)` found left to right (the regex
/// engine's `find_iter(text).count()`, which the tests compare with): a match is a run of
/// sentence ends, then closing quotes or brackets, then whitespace or the end of the text.
/// Both runs are taken whole (a shorter one would leave an end or a closer where whitespace
/// must follow), so when the character after them is something else no match starts in the
/// first run, and the search goes on from that character.
fn count_sentences(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut count = 0;
    let mut i = 0;
    loop {
        // The next sentence end: ASCII, or a full-width one (lead bytes E3 and EF).
        let Some(p) = bytes[i..]
            .iter()
            .position(|&b| matches!(b, b'.' | b'!' | b'?' | 0xE3 | 0xEF))
        else {
            return count;
        };
        let mut chars = text[i + p..].char_indices();
        let first = chars.next().map(|(_, c)| c);
        if !first.is_some_and(is_sentence_end) {
            // A lead byte of another character.
            i += p + first.map_or(1, char::len_utf8);
            continue;
        }
        let mut after = None;
        let mut closing = false;
        for (offset, c) in chars {
            if (!closing && is_sentence_end(c)) || matches!(c, '"' | '\'' | '”' | '’' | ')') {
                closing |= !is_sentence_end(c);
                continue;
            }
            after = Some((offset, c));
            break;
        }
        match after {
            None => return count + 1,
            Some((offset, c)) if c.is_whitespace() => {
                count += 1;
                i += p + offset + c.len_utf8();
            }
            Some((offset, _)) => i += p + offset,
        }
    }
}

/// Where "javascript" and the policy phrases start in the text, found once on its ASCII
/// lower case instead of by a case-insensitive search of every line. A line that is a slice
/// of the text matches when one of them starts in it: they hold no line break and neither
/// begin nor end with whitespace, so the one that starts in a line ends in its trimmed part
/// (and a search that skips past each match still finds one in every line that holds one).
/// A line whose citations were removed is not a slice of the text: the regexes search it.
struct Phrases {
    lorem_ipsum: bool,
    javascript: Vec<usize>,
    policy: Vec<usize>,
}

/// Leftmost-first (the searcher with a vectorised prefilter); a phrase hidden by an
/// overlapping one is in the same line, which has a match either way.
static POLICY_PHRASES: LazyLock<aho_corasick::AhoCorasick> = LazyLock::new(|| {
    aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostFirst)
        .build(POLICY_SUBSTRINGS)
        .unwrap_or_else(|e| panic!("static policy phrases: {e}"))
});
static JAVASCRIPT_LOWER: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(b"javascript"));
static LOREM_IPSUM_LOWER: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(b"lorem ipsum"));

impl Phrases {
    fn find(text: &str, options: &C4Options) -> Self {
        let mut phrases = Self {
            lorem_ipsum: false,
            javascript: Vec::new(),
            policy: Vec::new(),
        };
        if !(options.filter_lorem_ipsum || options.filter_javascript || options.filter_policy) {
            return phrases;
        }
        let lower = text.as_bytes().to_ascii_lowercase();
        phrases.lorem_ipsum =
            options.filter_lorem_ipsum && LOREM_IPSUM_LOWER.find(&lower).is_some();
        if options.filter_javascript {
            phrases.javascript = JAVASCRIPT_LOWER.find_iter(&lower).collect();
        }
        if options.filter_policy {
            phrases.policy = POLICY_PHRASES
                .find_iter(&lower)
                .map(|m| m.start())
                .collect();
        }
        phrases
    }

    /// Whether a phrase of `starts` begins within `line` when it is a slice of `text`, or,
    /// when it is not (a line whose citations were removed, in a buffer of its own), whether
    /// `regex` matches it.
    fn in_line(starts: &[usize], text: &str, line: &str, regex: &Regex) -> bool {
        let offset = (line.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
        if offset >= text.len() {
            return regex.is_match(line);
        }
        let first = starts.partition_point(|&s| s < offset);
        starts.get(first).is_some_and(|&s| s < offset + line.len())
    }

    fn javascript(&self, text: &str, line: &str) -> bool {
        Self::in_line(&self.javascript, text, line, &JAVASCRIPT)
    }

    fn policy(&self, text: &str, line: &str) -> bool {
        Self::in_line(&self.policy, text, line, &POLICY)
    }
}

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
        let phrases = Phrases::find(text, self);
        if self.filter_lorem_ipsum && phrases.lorem_ipsum {
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
                || (self.filter_javascript && phrases.javascript(text, &line))
                || (self.filter_policy && phrases.policy(text, &line));
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
        let sentences = count_sentences(&result);
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

#[cfg(test)]
mod tests {
    use super::*;

    static SENTENCE_END: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"[.!?。！？]+["'”’)]*(\s|$)"#).unwrap_or_else(|e| panic!("static regex: {e}"))
    });
    static LOREM_IPSUM: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i-u)lorem ipsum").unwrap_or_else(|e| panic!("{e}")));

    /// `C4Options::apply` as it was before the phrases were found once per text.
    fn reference_apply(options: &C4Options, text: &str) -> (String, Verdict) {
        let mut v = Verdict::default();
        if options.filter_lorem_ipsum && LOREM_IPSUM.is_match(text) {
            v.fail("c4: lorem ipsum");
        }
        if options.filter_curly_bracket && text.contains('{') {
            v.fail("c4: curly bracket (code)");
        }
        let mut kept = KeptLines::with_capacity(text.len());
        let mut total = 0usize;
        for line in text.split('\n') {
            let line = line.trim();
            if line.is_empty() {
                if kept.last_has_text {
                    kept.push("");
                }
                continue;
            }
            total += 1;
            let line = if options.remove_citations && line.contains('[') {
                CITATION.replace_all(line, "")
            } else {
                Cow::Borrowed(line)
            };
            let drop = line
                .split_whitespace()
                .take(options.min_words_per_line)
                .count()
                < options.min_words_per_line
                || (line.len() > options.max_word_length
                    && line
                        .split_whitespace()
                        .any(|w| char_count(w) > options.max_word_length))
                || (options.filter_no_terminal_punct
                    && (!ends_with_terminal(&line)
                        || line.ends_with("...")
                        || line.ends_with('…')))
                || (options.filter_javascript && JAVASCRIPT.is_match(&line))
                || (options.filter_policy && POLICY.is_match(&line));
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
        if sentences < options.min_num_sentences {
            v.fail(format!(
                "c4: {sentences} sentences < {}",
                options.min_num_sentences
            ));
        }
        (result, v)
    }

    #[test]
    fn sentence_count_equals_the_regex() {
        let pieces = [
            ".", "!", "?", "。", "！", "？", "\"", "'", "”", "’", ")", "（", " ", "\n", "\u{3000}",
            "\u{a0}", "a", "中", "…", "\u{e3}", "\u{ef}", "ｍ", "〃",
        ];
        let mut rng = crate::test_rng::TestRng::new(0x2545_f491_4f6c_dd1d);
        for round in 0..5000 {
            let count = [0, 1, 2, 4, 10, 30][round % 6];
            let text = rng.text(&pieces, count);
            assert_eq!(
                count_sentences(&text),
                SENTENCE_END.find_iter(&text).count(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn c4_equals_the_line_by_line_search() {
        let pieces = [
            "word",
            "Words",
            "the",
            "JavaScript",
            "javascript",
            "JAVA",
            "java[1]script",
            "script",
            "Privacy",
            "policy",
            "privacy policy",
            "Terms of Use",
            "terms of use.",
            "uses cookies",
            "use of cookies",
            "USE COOKIES",
            "use",
            "cookies",
            "Lorem",
            "ipsum",
            "lorem ipsum",
            "{",
            "[edit]",
            "[citation needed]",
            "[12]",
            "[",
            "]",
            ".",
            "!",
            "?",
            "...",
            "…",
            "。",
            "\u{212A}",
            "policy.",
            "end.",
            "\"quoted.\"",
            "x".repeat(40).leak(),
        ];
        let separators = [
            " ", " ", " ", " ", "\n", "\n\n", "\t", "\u{a0}", "\r\n", "  \n  ",
        ];
        let options = [
            C4Options::default(),
            C4Options {
                max_word_length: 10,
                min_num_sentences: 1,
                ..C4Options::default()
            },
            C4Options {
                remove_citations: false,
                filter_javascript: false,
                ..C4Options::default()
            },
        ];
        let mut rng = crate::test_rng::TestRng::new(0x9e37_79b9_7f4a_7c15);
        let mut phrase_drops = 0;
        for round in 0..2000 {
            let count = [0, 1, 3, 10, 40, 120][round % 6];
            let text: String = (0..count)
                .map(|_| format!("{}{}", rng.pick(&pieces), rng.pick(&separators)))
                .collect();
            for options in &options {
                let (kept, verdict) = options.apply(&text);
                assert_eq!(
                    (kept.clone(), verdict.clone()),
                    reference_apply(options, &text),
                    "{text:?}"
                );
                let without_phrases = C4Options {
                    filter_javascript: false,
                    filter_policy: false,
                    ..options.clone()
                };
                phrase_drops += usize::from(kept != without_phrases.apply(&text).0);
            }
        }
        // The phrases remove lines in a good part of the texts.
        assert!(phrase_drops > 500, "{phrase_drops}");
    }
}
