//! jielong patch 4: a text's trigrams counted as packed integers in a reused open-addressing
//! table, and its top `TEXT_TRIGRAMS_SIZE` trigrams put in rank order by bucketing on the
//! count, instead of a fresh `HashMap<Trigram, u32>` per text and a comparison sort of
//! `(count, Trigram)` pairs. The rank order is the original's: count descending, ties by
//! trigram descending (the trigrams are distinct, so that order is total and the list is the
//! same whatever the algorithm).

use std::cell::RefCell;

use super::{TEXT_TRIGRAMS_SIZE, Trigram};
use crate::utils::is_stop_char;

/// A trigram as one integer: its three code points in 21 bits each, the first one highest,
/// so that the integers' order is `Trigram`'s derived (lexicographic) order. Below 2^63.
pub(crate) type PackedTrigram = u64;

const CHAR_BITS: u32 = 21;
#[cfg(test)]
const CHAR_MASK: u64 = (1 << CHAR_BITS) - 1;
const PACKED_MASK: u64 = (1 << (3 * CHAR_BITS)) - 1;
/// No packed trigram has this value (they are below 2^63): marks a free slot.
pub(crate) const EMPTY: u64 = u64::MAX;

#[inline]
pub(crate) fn pack(trigram: Trigram) -> PackedTrigram {
    let Trigram(c1, c2, c3) = trigram;
    (u64::from(c1) << (2 * CHAR_BITS)) | (u64::from(c2) << CHAR_BITS) | u64::from(c3)
}

#[cfg(test)]
pub(crate) fn unpack(packed: PackedTrigram) -> Trigram {
    let ch = |shift: u32| {
        char::from_u32(((packed >> shift) & CHAR_MASK) as u32).expect("a packed code point")
    };
    Trigram(ch(2 * CHAR_BITS), ch(CHAR_BITS), ch(0))
}

/// The slot of `packed` in a table of 2^(64 - `shift`) slots (Fibonacci hashing: the top bits
/// of the product depend on every bit of the key).
#[inline]
pub(crate) fn home_slot(packed: PackedTrigram, shift: u32) -> usize {
    (packed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
}

/// log2 of the table size a text starts with: 4,096 slots hold the at most 2,001 distinct
/// trigrams of a 2,000-character text (pipeline's limit) at under half load.
const INITIAL_BITS: u32 = 12;
/// A table grown past this (a very long text) is dropped after its text, not kept.
const KEPT_BITS: u32 = 16;

/// Trigram counts of one text and its ranked trigrams; reused from text to text by a thread
/// (only the slots a text used are cleared), so counting allocates nothing.
struct TrigramCounts {
    keys: Vec<PackedTrigram>,
    counts: Vec<u32>,
    /// The slots in use, to clear and to walk them without scanning the table.
    used: Vec<u32>,
    shift: u32,
    /// Per count: how many trigrams have it, then where its bucket ends in `ranked`.
    buckets: Vec<u32>,
    ranked: Vec<PackedTrigram>,
}

impl TrigramCounts {
    fn new() -> Self {
        let slots = 1 << INITIAL_BITS;
        Self {
            keys: vec![EMPTY; slots],
            counts: vec![0; slots],
            used: Vec::with_capacity(slots / 2),
            shift: 64 - INITIAL_BITS,
            buckets: Vec::new(),
            ranked: Vec::with_capacity(TEXT_TRIGRAMS_SIZE),
        }
    }

    fn clear(&mut self) {
        if self.shift < 64 - KEPT_BITS {
            *self = Self::new();
            return;
        }
        for &slot in &self.used {
            self.keys[slot as usize] = EMPTY;
        }
        self.used.clear();
    }

    #[inline(always)]
    fn add(&mut self, packed: PackedTrigram) {
        let mask = self.keys.len() - 1;
        let mut slot = home_slot(packed, self.shift);
        loop {
            let key = self.keys[slot];
            if key == packed {
                self.counts[slot] += 1;
                return;
            }
            if key == EMPTY {
                self.keys[slot] = packed;
                self.counts[slot] = 1;
                self.used.push(slot as u32);
                if self.used.len() * 2 > self.keys.len() {
                    self.grow();
                }
                return;
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Doubles the table, moving the trigrams it holds.
    #[cold]
    fn grow(&mut self) {
        let slots = self.keys.len() * 2;
        let old_keys = std::mem::replace(&mut self.keys, vec![EMPTY; slots]);
        let old_counts = std::mem::replace(&mut self.counts, vec![0; slots]);
        self.shift -= 1;
        let mask = slots - 1;
        for slot in self.used.iter_mut() {
            let packed = old_keys[*slot as usize];
            let mut new_slot = home_slot(packed, self.shift);
            while self.keys[new_slot] != EMPTY {
                new_slot = (new_slot + 1) & mask;
            }
            self.keys[new_slot] = packed;
            self.counts[new_slot] = old_counts[*slot as usize];
            *slot = new_slot as u32;
        }
    }

    /// Counts the trigrams of `text` (lowercased) exactly as the original `count` does:
    /// stop characters read as spaces, a space is added at each end, and no trigram is a
    /// space between spaces or a space beside a leading or trailing one. (The window starts
    /// as two spaces, which the original's first step also skips, and ends with a space.)
    fn count(&mut self, text: &str) {
        self.clear();
        let mut window = Window {
            c1: ' ',
            c2: ' ',
            packed: pack(Trigram(' ', ' ', ' ')),
        };
        for ch in text.chars() {
            let c3 = if ch.is_ascii() {
                char::from(TRIGRAM_ASCII[ch as usize])
            } else {
                ch
            };
            if let Some(packed) = window.push(c3) {
                self.add(packed);
            }
        }
        if let Some(packed) = window.push(' ') {
            self.add(packed);
        }
    }

    /// Fills `ranked` with the top `TEXT_TRIGRAMS_SIZE` trigrams in rank order: buckets by
    /// count from the highest down to the count where the list fills, each bucket sorted by
    /// trigram, descending (bitwise-inverted keys sorted ascending).
    fn rank(&mut self) {
        let counts = &self.counts;
        let max_count = self.used.iter().map(|&slot| counts[slot as usize]).max();
        let max_count = max_count.unwrap_or(0) as usize;
        self.buckets.clear();
        self.buckets.resize(max_count + 1, 0);
        for &slot in &self.used {
            self.buckets[self.counts[slot as usize] as usize] += 1;
        }
        // The lowest count that has a place in the list.
        let mut lowest = 1;
        let mut above = 0;
        for count in (1..=max_count).rev() {
            above += self.buckets[count] as usize;
            if above >= TEXT_TRIGRAMS_SIZE {
                lowest = count;
                break;
            }
        }
        let mut start = 0;
        for count in (lowest..=max_count).rev() {
            let size = self.buckets[count];
            self.buckets[count] = start;
            start += size;
        }
        self.ranked.clear();
        self.ranked.resize(start as usize, 0);
        for &slot in &self.used {
            let count = self.counts[slot as usize] as usize;
            if count >= lowest {
                let at = &mut self.buckets[count];
                self.ranked[*at as usize] = !self.keys[slot as usize];
                *at += 1;
            }
        }
        let mut start = 0;
        for count in (lowest..=max_count).rev() {
            let end = self.buckets[count] as usize;
            let bucket = &mut self.ranked[start..end];
            if end > TEXT_TRIGRAMS_SIZE {
                // The last bucket, of which only the greatest trigrams fit.
                let fit = TEXT_TRIGRAMS_SIZE - start;
                bucket.select_nth_unstable(fit - 1);
                bucket[..fit].sort_unstable();
            } else {
                bucket.sort_unstable();
            }
            start = end;
        }
        self.ranked.truncate(TEXT_TRIGRAMS_SIZE);
        for packed in &mut self.ranked {
            *packed = !*packed;
        }
    }
}

/// The last two characters read and the trigram they end.
struct Window {
    c1: char,
    c2: char,
    packed: PackedTrigram,
}

impl Window {
    /// Moves on by `c3`; the trigram (c1, c2, c3) if it counts.
    #[inline]
    fn push(&mut self, c3: char) -> Option<PackedTrigram> {
        self.packed = ((self.packed << CHAR_BITS) | u64::from(c3)) & PACKED_MASK;
        let counts = !(self.c2 == ' ' && (self.c1 == ' ' || c3 == ' '));
        self.c1 = self.c2;
        self.c2 = c3;
        counts.then_some(self.packed)
    }
}

/// `to_trigram_char` of each ASCII character: a space for the stop characters.
const TRIGRAM_ASCII: [u8; 128] = {
    let mut table = [b' '; 128];
    let mut byte = 0;
    while byte < 128 {
        if !is_stop_char(byte as char) {
            table[byte as usize] = byte;
        }
        byte += 1;
    }
    table
};

thread_local! {
    static COUNTS: RefCell<TrigramCounts> = RefCell::new(TrigramCounts::new());
}

/// Calls `f` with the text's (lowercased) top trigrams in rank order, packed.
pub(crate) fn with_ranked_trigrams<R>(text: &str, f: impl FnOnce(&[PackedTrigram]) -> R) -> R {
    COUNTS.with(|cell| {
        let mut fresh;
        let mut borrowed;
        let counts = match cell.try_borrow_mut() {
            Ok(counts) => {
                borrowed = counts;
                &mut *borrowed
            }
            // Only reachable if `f` itself ranked trigrams: use a table of its own.
            Err(_) => {
                fresh = TrigramCounts::new();
                &mut fresh
            }
        };
        counts.count(text);
        counts.rank();
        f(&counts.ranked)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::LowercaseText;
    use crate::test_texts::{Rng, hard_texts, random_texts};
    use crate::trigrams::utils::{count, get_trigrams_with_positions};

    fn ranked(text: &LowercaseText) -> Vec<Trigram> {
        with_ranked_trigrams(text, |ranked| ranked.iter().copied().map(unpack).collect())
    }

    /// The original's ranks (its map from trigram to position) as a list.
    fn original_ranked(text: &LowercaseText) -> Vec<Trigram> {
        let positions = get_trigrams_with_positions(text).trigram_positions;
        let mut by_position: Vec<(u32, Trigram)> =
            positions.into_iter().map(|(t, n)| (n, t)).collect();
        by_position.sort_unstable();
        by_position.into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn packing_keeps_the_trigram_order() {
        let mut rng = Rng::new(7);
        let chars = [
            '\0',
            ' ',
            'a',
            'z',
            'é',
            'я',
            '中',
            '\u{FFFF}',
            '\u{10FFFF}',
        ];
        let mut random_char = || {
            if rng.below(2) == 0 {
                *rng.pick(&chars)
            } else {
                char::from_u32((rng.next_u64() % 0x11_0000) as u32).unwrap_or('\u{D7FF}')
            }
        };
        let trigrams: Vec<Trigram> = (0..2000)
            .map(|_| Trigram(random_char(), random_char(), random_char()))
            .collect();
        for a in &trigrams {
            assert_eq!(unpack(pack(*a)), *a);
            assert!(pack(*a) < 1 << 63, "{a:?}");
            for b in trigrams.iter().take(200) {
                assert_eq!(pack(*a).cmp(&pack(*b)), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn counts_are_the_original_counts() {
        let mut counts = TrigramCounts::new();
        for text in hard_texts(11, 300, 3000) {
            let lower = LowercaseText::new(&text);
            counts.count(&lower);
            let original = count(&lower).trigram_occurances;
            assert_eq!(counts.used.len(), original.len(), "{text}");
            for &slot in &counts.used {
                let trigram = unpack(counts.keys[slot as usize]);
                assert_eq!(
                    Some(&counts.counts[slot as usize]),
                    original.get(&trigram),
                    "{trigram:?} in {text}"
                );
            }
        }
    }

    #[test]
    fn ranked_trigrams_are_the_original_positions_in_order() {
        let mut over_600 = 0;
        for text in hard_texts(12, 500, 3000) {
            let lower = LowercaseText::new(&text);
            let expected = original_ranked(&lower);
            over_600 += usize::from(count(&lower).trigram_occurances.len() > TEXT_TRIGRAMS_SIZE);
            assert_eq!(ranked(&lower), expected, "{text}");
        }
        assert!(
            over_600 > 50,
            "only {over_600} texts with over 600 trigrams"
        );
    }

    #[test]
    fn a_grown_table_counts_the_same_and_is_dropped_after() {
        // Over 2,048 distinct trigrams (the table doubles at least once), then above
        // 2^15 (it is not kept), then short texts through the same thread's table.
        let many: Vec<char> = ('\u{4E00}'..'\u{4E40}')
            .chain('a'..='z')
            .chain('а'..='я')
            .collect();
        let mut rng = Rng::new(13);
        let long: String = (0..200_000).map(|_| *rng.pick(&many)).collect();
        let medium: String = long.chars().take(20_000).collect();
        let mut texts = vec![medium, long];
        texts.extend(random_texts(14, 50, 500));
        for text in texts {
            let lower = LowercaseText::new(&text);
            assert_eq!(ranked(&lower), original_ranked(&lower), "{text}");
        }
        COUNTS.with(|cell| {
            let mut counts = cell.borrow_mut();
            counts.count("");
            assert_eq!(counts.keys.len(), 1 << INITIAL_BITS);
        });
    }

    #[test]
    fn ranking_inside_ranking_uses_a_table_of_its_own() {
        let outer = LowercaseText::new("outer text outer");
        let inner = LowercaseText::new("an inner one");
        let (outer_ranked, inner_ranked) = with_ranked_trigrams(&outer, |outer_packed| {
            let inner_ranked = ranked(&inner);
            (
                outer_packed.iter().copied().map(unpack).collect::<Vec<_>>(),
                inner_ranked,
            )
        });
        assert_eq!(outer_ranked, original_ranked(&outer));
        assert_eq!(inner_ranked, original_ranked(&inner));
    }
}
