//! MinHash signatures and LSH band keys. Shingles are word n-grams for space-separated text
//! and character n-grams for Chinese, taken after lower-casing and removing punctuation.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Candidates (documents sharing a band) are joined only when their signatures agree on
    /// at least this fraction of all bands x rows hashes (the estimate of their Jaccard
    /// similarity); 0 joins every candidate, as datatrove does. Without this check one band
    /// in 14 matching by chance joins texts of Jaccard 0.4-0.6, and union-find chains them on.
    pub min_similarity: f64,
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
            min_similarity: 0.6,
        }
    }
}

/// The signature scheme, recorded in a run's fingerprint so work files made with another
/// scheme are never resumed into the same dedup: 32-bit shingle hashes (word hashes folded
/// per n-gram), 32-bit minimums from a multiply-add-shift family, band keys from the 32-bit
/// minimums and the check signature their low 16 bits.
pub const SIGNATURE_SCHEME: &str = "shingle32-multiply-add-shift32-with-signatures16";

/// What dedup keeps of a document: its band keys (the LSH candidates, from the 32-bit
/// minimums) and its check signature (to check a candidate pair before joining it): the low
/// 16 bits of each minimum, half the bytes to hold and move. Two different minimums agree on
/// their low 16 bits by chance once in 65,536, which moves the estimate of a pair below the
/// 0.6 threshold by less than 1/65,536 x (1 - J) on average.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sketch {
    pub bands: Vec<u64>,
    pub signature: Vec<u16>,
}

/// The fraction of positions where two check signatures agree: an estimate of the Jaccard
/// similarity of the two shingle sets (unbiased but for 16-bit chance agreements).
pub fn estimated_similarity(a: &[u16], b: &[u16]) -> f64 {
    if a.is_empty() || a.len() != b.len() {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

/// Mixes the last bits of `h` into the high ones (murmur3's finalizer).
fn finish_hash(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The 32-bit hash of an n-gram from its items' 64-bit hashes.
fn ngram_hash(items: &[u64], seed: u64) -> u32 {
    let h = items.iter().fold(seed, |h, &item| {
        (h.rotate_left(27) ^ item).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    });
    (finish_hash(h) >> 32) as u32
}

/// Computes signatures with a fixed family of hash functions over 32-bit shingle hashes:
/// `h(x) = ((a * x + b) mod 2^64) >> 32` with random 64-bit `a` (odd) and `b`, Dietzfelbinger's
/// multiply-add-shift, a universal family from 32-bit keys to 32-bit values. 32-bit values as
/// in datatrove; one 64-bit multiply per hash instead of a 128-bit product and a modulo.
#[derive(Debug, Clone)]
pub struct MinHasher {
    options: MinHashOptions,
    /// The `a` and `b` of each hash function, in two arrays so the inner loop vectorizes.
    multipliers: Vec<u64>,
    offsets: Vec<u64>,
}

impl MinHasher {
    pub fn new(options: MinHashOptions) -> Self {
        let n = (options.bands * options.rows) as u64;
        let multipliers = (0..n)
            .map(|i| xxh3_64_with_seed(&i.to_le_bytes(), options.seed) | 1)
            .collect();
        let offsets = (0..n)
            .map(|i| xxh3_64_with_seed(&i.to_le_bytes(), options.seed ^ 0x9e37_79b9_7f4a_7c15))
            .collect();
        Self {
            options,
            multipliers,
            offsets,
        }
    }

    pub fn options(&self) -> &MinHashOptions {
        &self.options
    }

    /// Appends the 32-bit shingle hashes of `text` to `shingles`: word n-grams, or character
    /// n-grams for Chinese, of the lower-cased text with everything but letters and digits
    /// taken as a space. `items` is scratch space.
    fn shingles(&self, text: &str, chinese: bool, items: &mut Vec<u64>, shingles: &mut Vec<u32>) {
        let seed = self.options.seed;
        // Items (word or character hashes) of the simplified text.
        items.clear();
        if chinese {
            items.extend(text.chars().filter_map(|c| {
                if is_cjk_ideograph(c) {
                    Some(u64::from(c))
                } else {
                    c.is_alphanumeric()
                        .then(|| u64::from(c.to_lowercase().next().unwrap_or(c)))
                }
            }));
        } else {
            let mut word = String::with_capacity(32);
            let flush = |word: &mut String, items: &mut Vec<u64>| {
                if !word.is_empty() {
                    items.push(xxh3_64_with_seed(word.as_bytes(), seed));
                    word.clear();
                }
            };
            for c in text.chars() {
                if c.is_ascii_alphanumeric() {
                    word.push(c.to_ascii_lowercase());
                } else if is_cjk_ideograph(c) {
                    word.push(c);
                } else if c.is_ascii() || !c.is_alphanumeric() {
                    flush(&mut word, items);
                } else {
                    word.push(c.to_lowercase().next().unwrap_or(c));
                }
            }
            flush(&mut word, items);
        }
        let n = if chinese {
            self.options.char_ngram
        } else {
            self.options.word_ngram
        };
        let n = n.min(items.len()).max(1);
        shingles.extend(items.windows(n).map(|w| ngram_hash(w, seed)));
    }

    /// The band keys of `text`: one 64-bit key per band, `None` for an empty text.
    pub fn band_keys(&self, text: &str, chinese: bool) -> Option<Vec<u64>> {
        self.sketch(text, chinese).map(|s| s.bands)
    }

    /// Band keys and signature of `text`, `None` for a text without shingles.
    pub fn sketch(&self, text: &str, chinese: bool) -> Option<Sketch> {
        // Scratch vectors kept per thread: long documents need large ones, and allocating
        // them afresh for each document showed up as page faults.
        thread_local! {
            static SCRATCH: std::cell::RefCell<(Vec<u64>, Vec<u32>)> =
                const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
        }
        let mut signature = vec![u32::MAX; self.multipliers.len()];
        let any = SCRATCH.with_borrow_mut(|(items, shingles)| {
            shingles.clear();
            self.shingles(text, chinese, items, shingles);
            // A minimum: repeated shingles change nothing, and hashing the few repeats costs
            // less than sorting to remove them did (perf: sorting 2.3% of a full run).
            lower_signature(&mut signature, &self.multipliers, &self.offsets, shingles);
            !shingles.is_empty()
        });
        if !any {
            return None;
        }
        let mut bytes = Vec::with_capacity(self.options.rows * 4);
        let bands = signature
            .chunks(self.options.rows)
            .map(|band| {
                bytes.clear();
                bytes.extend(band.iter().flat_map(|v| v.to_le_bytes()));
                xxh3_64_with_seed(&bytes, self.options.seed)
            })
            .collect();
        let signature = signature.iter().map(|&v| v as u16).collect();
        Some(Sketch { bands, signature })
    }
}

/// CJK unified ideographs: letters without case, known without the Unicode tables.
fn is_cjk_ideograph(c: char) -> bool {
    ('\u{4E00}'..='\u{9FFF}').contains(&c)
}

/// Lowers each `signature[i]` to the minimum of hash function `i` over `shingles`.
fn lower_signature(signature: &mut [u32], multipliers: &[u64], offsets: &[u64], shingles: &[u32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512dq") {
        // SAFETY: the CPU has AVX-512 F and DQ (DQ implies F), checked just above.
        unsafe { lower_signature_avx512(signature, multipliers, offsets, shingles) };
        return;
    }
    lower_signature_portable(signature, multipliers, offsets, shingles);
}

/// The same loop compiled with AVX-512, whose 64-bit lane multiply does 8 hash functions an
/// instruction (without it, one scalar multiply each: 30% of a MinHash-only run).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn lower_signature_avx512(
    signature: &mut [u32],
    multipliers: &[u64],
    offsets: &[u64],
    shingles: &[u32],
) {
    lower_signature_portable(signature, multipliers, offsets, shingles);
}

/// Shingles outer, hash functions inner: one pass over a small array of minimums that stays
/// in L1.
#[inline(always)]
fn lower_signature_portable(
    signature: &mut [u32],
    multipliers: &[u64],
    offsets: &[u64],
    shingles: &[u32],
) {
    let n = signature.len().min(multipliers.len()).min(offsets.len());
    let (signature, multipliers, offsets) = (&mut signature[..n], &multipliers[..n], &offsets[..n]);
    for &x in shingles {
        let x = u64::from(x);
        for ((min, &a), &b) in signature.iter_mut().zip(multipliers).zip(offsets) {
            let v = (a.wrapping_mul(x).wrapping_add(b) >> 32) as u32;
            *min = (*min).min(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MinHashOptions, MinHasher, lower_signature, lower_signature_portable};

    #[test]
    fn the_vectorized_signature_equals_the_portable_one() {
        let hasher = MinHasher::new(MinHashOptions::default());
        let shingles: Vec<u32> = (0..1000u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        let mut fast = vec![u32::MAX; hasher.multipliers.len()];
        let mut plain = fast.clone();
        lower_signature(&mut fast, &hasher.multipliers, &hasher.offsets, &shingles);
        lower_signature_portable(&mut plain, &hasher.multipliers, &hasher.offsets, &shingles);
        assert_eq!(fast, plain);
    }

    #[test]
    fn near_duplicates_share_a_band_and_different_texts_do_not() {
        let hasher = MinHasher::new(MinHashOptions::default());
        let words: Vec<String> = (0..300)
            .map(|i| format!("w{}", (i * 7919) % 1000))
            .collect();
        let a = words.join(" ");
        let mut edited = words.clone();
        edited[150] = "changed".into();
        let b = edited.join(" ");
        let other: Vec<String> = (0..300)
            .map(|i| format!("v{}", (i * 104_729) % 997))
            .collect();
        let c = other.join(" ");
        let keys = |t: &str| hasher.band_keys(t, false).expect("keys");
        let shared = |x: &[u64], y: &[u64]| x.iter().zip(y).filter(|(p, q)| p == q).count();
        assert!(shared(&keys(&a), &keys(&b)) > 0);
        assert_eq!(shared(&keys(&a), &keys(&c)), 0);
        // Case and punctuation do not matter.
        assert_eq!(keys(&a), keys(&a.to_uppercase().replace(' ', ", ")));
    }
}
