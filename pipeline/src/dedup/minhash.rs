//! MinHash signatures and LSH band keys. Shingles are word n-grams for space-separated text
//! and character n-grams for Chinese, taken after lower-casing and removing punctuation.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinHashOptions {
    /// Run near-duplicate detection (default true).
    pub enabled: bool,
    /// Words per shingle (space-separated languages).
    pub word_ngram: usize,
    /// Characters per shingle (Chinese).
    pub char_ngram: usize,
    /// LSH bands, and hashes per band: bands x rows hashes in all.
    pub bands: usize,
    pub rows: usize,
    pub seed: u64,
}

impl Default for MinHashOptions {
    fn default() -> Self {
        // FineWeb's setting: 5-grams, 14 bands of 8 hashes (~75% similarity threshold).
        Self {
            enabled: true,
            word_ngram: 5,
            char_ngram: 5,
            bands: 14,
            rows: 8,
            seed: 1,
        }
    }
}

const MERSENNE_61: u64 = (1 << 61) - 1;

/// `x mod (2^61 - 1)` for `x < 2^123` without a 128-bit division (which dominated the
/// signature time): `2^61 = 1 (mod p)`, so the high part folds onto the low part.
fn mod_mersenne_61(x: u128) -> u64 {
    let p = u128::from(MERSENNE_61);
    // x < 2^123: the first fold leaves < 2^62 + 2^61, the second < 2^61 + 2.
    let folded = (x & p) + (x >> 61);
    let folded = (folded & p) + (folded >> 61);
    let r = folded as u64;
    if r >= MERSENNE_61 { r - MERSENNE_61 } else { r }
}

/// Computes signatures with a fixed family of hash permutations `(a * h + b) mod (2^61 - 1)`.
#[derive(Debug, Clone)]
pub struct MinHasher {
    options: MinHashOptions,
    permutations: Vec<(u64, u64)>,
}

impl MinHasher {
    pub fn new(options: MinHashOptions) -> Self {
        let n = options.bands * options.rows;
        let permutations = (0..n as u64)
            .map(|i| {
                let a = xxh3_64_with_seed(&i.to_le_bytes(), options.seed) % (MERSENNE_61 - 1) + 1;
                let b = xxh3_64_with_seed(&i.to_le_bytes(), options.seed ^ 0x9e37_79b9_7f4a_7c15)
                    % MERSENNE_61;
                (a, b)
            })
            .collect();
        Self {
            options,
            permutations,
        }
    }

    pub fn options(&self) -> &MinHashOptions {
        &self.options
    }

    /// Shingle hashes of `text`.
    fn shingles(&self, text: &str, chinese: bool) -> Vec<u64> {
        let simplified: String = text
            .chars()
            .map(|c| {
                if c.is_alphanumeric() {
                    c.to_lowercase().next().unwrap_or(c)
                } else {
                    ' '
                }
            })
            .collect();
        let seed = self.options.seed;
        if chinese {
            let chars: Vec<char> = simplified.chars().filter(|c| !c.is_whitespace()).collect();
            let n = self.options.char_ngram.min(chars.len()).max(1);
            chars
                .windows(n)
                .map(|w| {
                    let s: String = w.iter().collect();
                    xxh3_64_with_seed(s.as_bytes(), seed)
                })
                .collect()
        } else {
            let words: Vec<&str> = simplified.split_whitespace().collect();
            let n = self.options.word_ngram.min(words.len()).max(1);
            words
                .windows(n)
                .map(|w| xxh3_64_with_seed(w.join(" ").as_bytes(), seed))
                .collect()
        }
    }

    /// The band keys of `text`: one 64-bit key per band, `None` for an empty text.
    pub fn band_keys(&self, text: &str, chinese: bool) -> Option<Vec<u64>> {
        let mut shingles = self.shingles(text, chinese);
        // A minimum over a set: repeated shingles change nothing, so hash each once.
        shingles.sort_unstable();
        shingles.dedup();
        if shingles.is_empty() {
            return None;
        }
        // Shingles outer, permutations inner: one pass over a small array of minimums that
        // stays in registers/L1 (twice as fast as a pass over the shingles per permutation).
        let mut signature = vec![u64::MAX; self.permutations.len()];
        for &h in &shingles {
            let h = u128::from(h % MERSENNE_61);
            for (min, &(a, b)) in signature.iter_mut().zip(&self.permutations) {
                let v = mod_mersenne_61(u128::from(a) * h + u128::from(b));
                if v < *min {
                    *min = v;
                }
            }
        }
        Some(
            signature
                .chunks(self.options.rows)
                .map(|band| {
                    let bytes: Vec<u8> = band.iter().flat_map(|v| v.to_le_bytes()).collect();
                    xxh3_64_with_seed(&bytes, self.options.seed)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{MERSENNE_61, mod_mersenne_61};

    #[test]
    fn mersenne_reduction_equals_the_remainder() {
        let p = u128::from(MERSENNE_61);
        let mut edge = vec![0, 1, p - 1, p, p + 1, 2 * p, (p - 1) * (p - 1) + (p - 1)];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = u128::from(x % MERSENNE_61);
            let h = u128::from(x.rotate_left(29) % MERSENNE_61);
            edge.push(a * h + u128::from(x >> 3));
        }
        for v in edge {
            assert_eq!(u128::from(mod_mersenne_61(v)), v % p, "{v}");
        }
    }
}
