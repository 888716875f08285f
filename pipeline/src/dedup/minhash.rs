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
        let shingles = self.shingles(text, chinese);
        if shingles.is_empty() {
            return None;
        }
        let signature: Vec<u64> = self
            .permutations
            .iter()
            .map(|&(a, b)| {
                shingles
                    .iter()
                    .map(|&h| {
                        ((u128::from(a) * u128::from(h % MERSENNE_61) + u128::from(b))
                            % u128::from(MERSENNE_61)) as u64
                    })
                    .min()
                    .unwrap_or(u64::MAX)
            })
            .collect();
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
