//! Word ids and exact repeated-n-gram statistics for the Gopher filters, on tables reused
//! across documents.
//!
//! Every word gets an id once per document (short words are their own key, packed into a
//! `u64`, so most never need a string comparison). Every n-gram then gets a class: equal
//! n-grams share one. The class of an (n+1)-gram is found from the pair (class of its n-gram
//! prefix, id of its last word), an exact `u64` key, so no hash collision can merge two
//! different n-grams. An (n+1)-gram that contains an n-gram occurring once occurs once too
//! (class `ONCE`) and is never looked up. Natural text runs out of repeated
//! n-grams after a few words, and the work with it.

use std::cell::RefCell;

/// The class of every n-gram that occurs once (its count stays 1).
const ONCE: u32 = 0;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    key: u64,
    /// Live when equal to the table's generation.
    stamp: u32,
    value: u32,
}

/// Open-addressing table from `u64` keys to `u32` values. A slot is live when its stamp is
/// the current generation, so emptying the table for the next n-gram size or document
/// writes nothing.
#[derive(Debug, Default)]
struct Table {
    slots: Vec<Slot>,
    mask: usize,
    shift: u32,
    generation: u32,
}

impl Table {
    /// Empties the table, with room for `entries` keys.
    fn reset(&mut self, entries: usize) {
        let capacity = (entries.max(8) * 2).next_power_of_two();
        if capacity > self.slots.len() {
            self.slots = vec![Slot::default(); capacity];
            self.generation = 0;
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.slots.iter_mut().for_each(|s| s.stamp = 0);
            self.generation = 1;
        }
        self.mask = capacity - 1;
        self.shift = 64 - capacity.trailing_zeros();
    }

    /// The value under `key` for which `same` holds, or `new` inserted under it.
    #[inline]
    fn find_or_insert(&mut self, key: u64, new: u32, same: impl Fn(u32) -> bool) -> u32 {
        let mut i = (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize;
        loop {
            let slot = &mut self.slots[i];
            if slot.stamp != self.generation {
                *slot = Slot {
                    key,
                    stamp: self.generation,
                    value: new,
                };
                return new;
            }
            if slot.key == key && same(slot.value) {
                return slot.value;
            }
            i = (i + 1) & self.mask;
        }
    }
}

/// Buffers reused by every document a thread analyses.
#[derive(Debug, Default)]
struct Scratch {
    table: Table,
    classes: Vec<u32>,
    next: Vec<u32>,
    /// Occurrences of each class of the current size, and of the size being built.
    counts: Vec<u32>,
    next_counts: Vec<u32>,
    /// The largest of `counts` but the class `ONCE`'s (1 when there is none).
    most: u32,
    firsts: Vec<u32>,
    seen: Vec<u32>,
    seen_generation: u32,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// A document's distinct words: `ids[i]` is the id of word `i`; id `d` first occurs at word
/// `firsts[d]` and occurs `counts[d]` times.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vocabulary {
    pub ids: Vec<u32>,
    pub firsts: Vec<u32>,
    pub counts: Vec<u32>,
}

/// Key of a word: its bytes and length packed when it has 1 to 7 bytes (exact), else a hash
/// with the top byte zero (compared by string on a match).
#[inline]
fn word_key(word: &str) -> (u64, bool) {
    let b = word.as_bytes();
    let len = b.len();
    let packed = match len {
        // Two overlapping loads put every byte at its own place (overlapping bytes agree).
        4..=7 => {
            let low = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let high = u32::from_le_bytes([b[len - 4], b[len - 3], b[len - 2], b[len - 1]]);
            u64::from(low) | (u64::from(high) << (8 * (len - 4)))
        }
        1..=3 => {
            u64::from(b[0])
                | (u64::from(b[len / 2]) << (8 * (len / 2)))
                | (u64::from(b[len - 1]) << (8 * (len - 1)))
        }
        _ => return (xxhash_rust::xxh3::xxh3_64(b) >> 8, false),
    };
    (packed | ((len as u64) << 56), true)
}

impl Vocabulary {
    pub fn new(words: &[&str]) -> Self {
        let mut ids = Vec::with_capacity(words.len());
        let mut firsts: Vec<u32> = Vec::new();
        let mut counts: Vec<u32> = Vec::new();
        SCRATCH.with_borrow_mut(|scratch| {
            let table = &mut scratch.table;
            table.reset(words.len());
            for (i, &word) in words.iter().enumerate() {
                let (key, exact) = word_key(word);
                let next = firsts.len() as u32;
                let id = table.find_or_insert(key, next, |id| {
                    exact || words[firsts[id as usize] as usize] == word
                });
                if id == next {
                    firsts.push(i as u32);
                    counts.push(1);
                } else {
                    counts[id as usize] += 1;
                }
                ids.push(id);
            }
        });
        Self {
            ids,
            firsts,
            counts,
        }
    }
}

/// The Gopher repetition fractions of one document, aligned with the sizes asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct NgramFractions {
    /// Characters of the most frequent n-gram times its count, over all characters (0 when
    /// no n-gram occurs twice); ties go to the n-gram whose words sort first.
    pub top: Vec<f64>,
    /// Characters covered by n-grams that already occurred (counted left to right, skipping
    /// past each duplicate), over all characters.
    pub duplicated: Vec<f64>,
}

/// The document as the n-gram statistics see it.
#[derive(Debug)]
pub struct NgramInput<'a> {
    pub words: &'a [&'a str],
    pub word_chars: &'a [usize],
    pub vocabulary: &'a Vocabulary,
    pub total_chars: f64,
}

impl NgramInput<'_> {
    pub fn fractions(&self, top_sizes: &[usize], dup_sizes: &[usize]) -> NgramFractions {
        let mut fractions = NgramFractions {
            top: vec![0.0; top_sizes.len()],
            duplicated: vec![0.0; dup_sizes.len()],
        };
        let largest = top_sizes
            .iter()
            .chain(dup_sizes)
            .copied()
            .max()
            .unwrap_or(0);
        let len = self.words.len();
        if largest == 0 || len == 0 {
            return fractions;
        }
        let mut chars_before = Vec::with_capacity(len + 1);
        let mut chars = 0;
        chars_before.push(0);
        for &c in self.word_chars {
            chars += c;
            chars_before.push(chars);
        }
        SCRATCH.with_borrow_mut(|scratch| {
            // Size 1: the words, class = id + 1.
            let vocabulary = self.vocabulary;
            scratch.counts.clear();
            scratch.counts.push(1);
            scratch.counts.extend_from_slice(&vocabulary.counts);
            scratch.most = vocabulary.counts.iter().copied().max().unwrap_or(1);
            scratch.firsts.clear();
            scratch.firsts.push(0);
            scratch.firsts.extend_from_slice(&vocabulary.firsts);
            scratch.classes.clear();
            scratch
                .classes
                .extend(vocabulary.ids.iter().map(|&id| id + 1));
            let mut sizes = Sizes {
                input: self,
                chars_before: &chars_before,
                scratch,
            };
            for n in 1..=largest.min(len) {
                if n > 1 && !sizes.next_size(n) {
                    // No n-gram of the previous size occurs twice: nor does a longer one.
                    break;
                }
                if top_sizes.contains(&n) {
                    let fraction = sizes.top_fraction(n);
                    for (i, _) in top_sizes.iter().enumerate().filter(|&(_, &s)| s == n) {
                        fractions.top[i] = fraction;
                    }
                }
                if dup_sizes.contains(&n) {
                    let fraction = sizes.duplicated_fraction(n);
                    for (i, _) in dup_sizes.iter().enumerate().filter(|&(_, &s)| s == n) {
                        fractions.duplicated[i] = fraction;
                    }
                }
            }
        });
        fractions
    }
}

/// The classes of the current n-gram size, one per start position.
struct Sizes<'s, 'a> {
    input: &'s NgramInput<'a>,
    chars_before: &'s [usize],
    scratch: &'s mut Scratch,
}

impl Sizes<'_, '_> {
    fn chars(&self, start: usize, n: usize) -> usize {
        self.chars_before[start + n] - self.chars_before[start]
    }

    /// Replaces the classes of (n-1)-grams by those of n-grams; false when no (n-1)-gram
    /// occurs twice (nothing left to count).
    fn next_size(&mut self, n: usize) -> bool {
        let s = &mut *self.scratch;
        if s.most < 2 {
            return false;
        }
        let positions = self.input.words.len() + 1 - n;
        // The last word of the n-gram starting at each position.
        let last_words = &self.input.vocabulary.ids[n - 1..];
        s.next_counts.clear();
        s.next_counts.push(1);
        s.firsts.clear();
        s.firsts.push(0);
        s.next.clear();
        s.next.resize(positions, ONCE);
        s.table.reset(positions);
        let mut most = 1;
        let pairs = s.classes.windows(2).zip(last_words);
        for (start, ((pair, &last), next)) in pairs.zip(s.next.iter_mut()).enumerate() {
            let (prefix, suffix) = (pair[0], pair[1]);
            // An n-gram holding an (n-1)-gram that occurs once occurs once.
            if s.counts[prefix as usize] < 2 || s.counts[suffix as usize] < 2 {
                continue;
            }
            let key = (u64::from(prefix) << 32) | u64::from(last);
            let new = s.next_counts.len() as u32;
            let class = s.table.find_or_insert(key, new, |_| true);
            if class == new {
                s.next_counts.push(1);
                s.firsts.push(start as u32);
            } else {
                let count = &mut s.next_counts[class as usize];
                *count += 1;
                most = most.max(*count);
            }
            *next = class;
        }
        std::mem::swap(&mut s.classes, &mut s.next);
        std::mem::swap(&mut s.counts, &mut s.next_counts);
        s.most = most;
        true
    }

    fn top_fraction(&self, n: usize) -> f64 {
        let s = &*self.scratch;
        let words = self.input.words;
        let most = s.most;
        if most < 2 {
            return 0.0;
        }
        let ngram = |first: u32| &words[first as usize..first as usize + n];
        let first = s
            .counts
            .iter()
            .zip(&s.firsts)
            .filter(|&(&count, _)| count == most)
            .map(|(_, &first)| first)
            .min_by(|&a, &b| ngram(a).cmp(ngram(b)))
            .unwrap_or(0) as usize;
        (self.chars(first, n) * most as usize) as f64 / self.input.total_chars
    }

    fn duplicated_fraction(&mut self, n: usize) -> f64 {
        let s = &mut *self.scratch;
        s.seen_generation = s.seen_generation.wrapping_add(1);
        if s.seen_generation == 0 || s.seen.len() < s.counts.len() {
            s.seen.clear();
            s.seen.resize(s.counts.len().max(s.seen.capacity()), 0);
            s.seen_generation = 1;
        }
        let generation = s.seen_generation;
        let positions = self.input.words.len() + 1 - n;
        let mut dup_chars = 0;
        let mut start = 0;
        while start < positions {
            let class = s.classes[start];
            if s.counts[class as usize] > 1 {
                let seen = &mut s.seen[class as usize];
                if *seen == generation {
                    dup_chars += self.chars_before[start + n] - self.chars_before[start];
                    start += n;
                    continue;
                }
                *seen = generation;
            }
            start += 1;
        }
        dup_chars as f64 / self.input.total_chars
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn equal_keys_of_different_entries_are_kept_apart() {
        let mut table = Table::default();
        for round in 0..3 {
            table.reset(4);
            // Ten entries under one key (as two long words with equal hashes would be), told
            // apart by `same`; the slots wrap around the end of the table.
            for value in 0..10 {
                assert_eq!(table.find_or_insert(u64::MAX, value, |v| v == value), value);
            }
            for value in 0..10 {
                assert_eq!(table.find_or_insert(u64::MAX, 99, |v| v == value), value);
            }
            // A fresh generation forgets them.
            table.reset(4);
            assert_eq!(
                table.find_or_insert(u64::MAX, 50 + round, |_| true),
                50 + round
            );
        }
    }
}
