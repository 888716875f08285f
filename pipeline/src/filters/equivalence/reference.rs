//! The Gopher quality and repetition code as it was before word ids were shared and n-grams
//! were counted by class (commit 6d251f8), kept as the reference the tests compare with.

use std::ops::Deref;

use rustc_hash::{FxHashMap, FxHashSet};

use super::super::{Analysis, Verdict, duplicates, is_cjk_ideograph, is_symbol_word};
use super::super::{GopherQualityOptions, GopherRepetitionOptions};

pub struct OldQuality<'o>(pub &'o GopherQualityOptions);

impl Deref for OldQuality<'_> {
    type Target = GopherQualityOptions;
    fn deref(&self) -> &GopherQualityOptions {
        self.0
    }
}

pub struct OldRepetition<'o>(pub &'o GopherRepetitionOptions);

impl Deref for OldRepetition<'_> {
    type Target = GopherRepetitionOptions;
    fn deref(&self) -> &GopherRepetitionOptions {
        self.0
    }
}

impl OldQuality<'_> {
    pub fn apply(&self, doc: &Analysis<'_>) -> Verdict {
        let mut v = Verdict::default();
        // One pass over the words for the word counts, lengths, letters and stop words.
        let (mut n, mut non_symbol_chars, mut with_letter, mut stop_count) = (0, 0, 0, 0);
        // The stop words as a set for non-ASCII words: comparing each word with every stop
        // word called memcmp for each one of the same length (most Chinese words and stop
        // words are one character, three bytes).
        let stop_words: FxHashSet<&str> = self.stop_words.iter().map(String::as_str).collect();
        for (word, &chars) in doc.words.iter().zip(&doc.word_chars) {
            if !is_symbol_word(word) {
                n += 1;
                non_symbol_chars += chars;
            }
            if has_letter(word) {
                with_letter += 1;
            }
            if self.is_stop_word(word, &stop_words) {
                stop_count += 1;
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
        let symbols = doc.text.matches('#').count()
            + doc.text.matches("...").count()
            + doc.text.matches('…').count();
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
    /// `self.stop_words`.
    fn is_stop_word(&self, word: &str, stop_words: &FxHashSet<&str>) -> bool {
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
        if word.chars().any(changes) {
            stop_words.contains(word.to_lowercase().as_str())
        } else {
            stop_words.contains(word)
        }
    }
}

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

impl OldRepetition<'_> {
    pub fn apply(&self, doc: &Analysis<'_>) -> Verdict {
        let mut v = Verdict::default();
        let total_chars = doc.chars.max(1) as f64;

        let paragraphs: Vec<&str> = doc
            .text
            .split("\n\n")
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let (dup_paras, dup_para_chars) = duplicates(paragraphs.iter().copied());
        let para_frac = dup_paras as f64 / paragraphs.len().max(1) as f64;
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
        let (dup_lines, dup_line_chars) = doc.duplicated_lines;
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

        let mut words = WordTable::new(&doc.words, &doc.word_chars);
        // One table per kind of count, cleared between n-gram sizes: allocated and grown
        // once per document instead of once per size.
        let mut counts = FxHashMap::with_capacity_and_hasher(words.len(), Default::default());
        let mut seen = FxHashMap::with_capacity_and_hasher(words.len(), Default::default());
        let mut top_max = 0.0f64;
        for &(n, limit) in &self.top_n_grams {
            let frac = words.top_ngram_fraction(n, total_chars, &mut counts);
            top_max = top_max.max(frac);
            if frac > limit {
                v.fail(format!(
                    "gopher_repetition: top {n}-gram covers {frac:.3} > {limit}"
                ));
            }
        }
        v.score("gopher_top_ngram_max", top_max);
        let mut dup_max = 0.0f64;
        // When every n-gram of some size is distinct, so is every longer one (their prefixes
        // are): the scan of each longer size would find nothing. Most documents stop there.
        let mut all_distinct_from = usize::MAX;
        for &(n, limit) in &self.dup_n_grams {
            let frac = if n >= all_distinct_from {
                0.0
            } else {
                let (frac, any) = words.duplicated_ngram_fraction(n, total_chars, &mut seen);
                if !any {
                    all_distinct_from = all_distinct_from.min(n);
                }
                frac
            };
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

/// A document's words as small integer ids with their character counts, built once and
/// shared by every n-gram size (hashing each n-gram's strings again for n = 2..10 was most
/// of the filter's time). The keys of the current size are kept and extended by one word
/// for the next size, so each size costs one step per position, not n.
struct WordTable<'a> {
    words: &'a [&'a str],
    ids: Vec<u32>,
    /// `chars_before[i]`: characters in words `0..i`.
    chars_before: Vec<usize>,
    /// `keys[i]`: the hash of the `key_n`-gram starting at word `i`.
    keys: Vec<u64>,
    key_n: usize,
}

/// One step of the n-gram hash: the key of an n-gram extended by the next word's id.
fn extend_key(h: u64, id: u32) -> u64 {
    (h.rotate_left(32) ^ u64::from(id)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl<'a> WordTable<'a> {
    fn new(words: &'a [&'a str], word_chars: &[usize]) -> Self {
        let mut vocabulary: FxHashMap<&str, u32> =
            FxHashMap::with_capacity_and_hasher(words.len(), Default::default());
        let mut ids = Vec::with_capacity(words.len());
        let mut chars_before = Vec::with_capacity(words.len() + 1);
        let mut chars = 0;
        for (&w, &c) in words.iter().zip(word_chars) {
            let next = vocabulary.len() as u32;
            ids.push(*vocabulary.entry(w).or_insert(next));
            chars_before.push(chars);
            chars += c;
        }
        chars_before.push(chars);
        Self {
            words,
            ids,
            chars_before,
            keys: Vec::new(),
            key_n: 0,
        }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn chars(&self, start: usize, n: usize) -> usize {
        self.chars_before[start + n] - self.chars_before[start]
    }

    /// Makes `keys` hold the hashes of the n-grams (n <= len): extended from the current size
    /// when n is larger, rebuilt otherwise. Callers compare the ids, so a collision never
    /// merges two different n-grams.
    fn key_ngrams(&mut self, n: usize) {
        if n < self.key_n || self.key_n == 0 {
            self.keys.clear();
            self.keys.resize(self.ids.len(), 0);
            self.key_n = 0;
        }
        while self.key_n < n {
            let k = self.key_n;
            let positions = self.ids.len() - k;
            for (i, key) in self.keys[..positions].iter_mut().enumerate() {
                *key = extend_key(*key, self.ids[i + k]);
            }
            self.key_n += 1;
        }
    }

    fn same(&self, a: usize, b: usize, n: usize) -> bool {
        self.ids[a..a + n] == self.ids[b..b + n]
    }

    /// Characters of the most frequent n-gram times its count, over all characters.
    fn top_ngram_fraction(
        &mut self,
        n: usize,
        total_chars: f64,
        counts: &mut FxHashMap<u64, (u32, u32)>,
    ) -> f64 {
        if self.ids.len() < n || n == 0 {
            return 0.0;
        }
        self.key_ngrams(n);
        // key -> (count, first start); a colliding different n-gram is counted on its own
        // under a probed key. The most frequent n-gram is tracked as counts grow (no pass
        // over the table at the end): ties go to the n-gram whose words sort first, so the
        // score does not depend on hash order.
        counts.clear();
        let mut best: Option<(u32, usize)> = None;
        for start in 0..=self.ids.len() - n {
            let mut key = self.keys[start];
            let (count, first) = loop {
                let entry = counts.entry(key).or_insert((0, start as u32));
                if entry.1 as usize == start || self.same(entry.1 as usize, start, n) {
                    entry.0 += 1;
                    break (entry.0, entry.1 as usize);
                }
                key = key.wrapping_add(1);
            };
            let better = match best {
                None => true,
                Some((best_count, best_first)) => {
                    count > best_count
                        || (count == best_count
                            && first != best_first
                            && self.words[first..first + n]
                                < self.words[best_first..best_first + n])
                }
            };
            if better {
                best = Some((count, first));
            }
        }
        best.filter(|&(count, _)| count > 1)
            .map_or(0.0, |(count, start)| {
                (self.chars(start, n) * count as usize) as f64 / total_chars
            })
    }

    /// Characters covered by n-grams that already occurred (non-overlapping), over all
    /// characters, and whether any n-gram occurred twice.
    fn duplicated_ngram_fraction(
        &mut self,
        n: usize,
        total_chars: f64,
        seen: &mut FxHashMap<u64, u32>,
    ) -> (f64, bool) {
        if self.ids.len() < n || n == 0 {
            return (0.0, false);
        }
        self.key_ngrams(n);
        // key -> first start of the n-gram seen under it.
        seen.clear();
        let (mut dup_chars, mut any) = (0usize, false);
        let mut i = 0;
        while i + n <= self.ids.len() {
            let mut key = self.keys[i];
            let duplicate = loop {
                match seen.get(&key) {
                    Some(&first) if self.same(first as usize, i, n) => break true,
                    Some(_) => key = key.wrapping_add(1),
                    None => {
                        seen.insert(key, i as u32);
                        break false;
                    }
                }
            };
            if duplicate {
                any = true;
                dup_chars += self.chars(i, n);
                i += n;
            } else {
                i += 1;
            }
        }
        (dup_chars as f64 / total_chars, any)
    }
}
