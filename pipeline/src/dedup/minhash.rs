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
            word_hashes(text, seed, items);
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

/// Appends the hash of each word of `text` to `items`: runs of letters and digits,
/// lower-cased. ASCII bytes are taken a byte at a time, without decoding characters, and a
/// word is hashed where it stands in `text` unless it has upper-case letters to lower.
fn word_hashes(text: &str, seed: u64, items: &mut Vec<u64>) {
    let bytes = text.as_bytes();
    // The word being read: `bytes[start..i]` while `lowered` is empty, else `lowered`.
    let mut lowered: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let flush = |word: &[u8], lowered: &mut Vec<u8>, items: &mut Vec<u64>| {
        let word = if lowered.is_empty() {
            word
        } else {
            &lowered[..]
        };
        if !word.is_empty() {
            items.push(xxh3_64_with_seed(word, seed));
        }
        lowered.clear();
    };
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii() {
            if b.is_ascii_lowercase() || b.is_ascii_digit() {
                if !lowered.is_empty() {
                    lowered.push(b);
                }
            } else if b.is_ascii_uppercase() {
                if lowered.is_empty() {
                    lowered.extend_from_slice(&bytes[start..i]);
                }
                lowered.push(b.to_ascii_lowercase());
            } else {
                flush(&bytes[start..i], &mut lowered, items);
                start = i + 1;
            }
            i += 1;
            continue;
        }
        let c = text[i..].chars().next().expect("a character starts here");
        let len = c.len_utf8();
        if is_cjk_ideograph(c) {
            if !lowered.is_empty() {
                lowered.extend_from_slice(&bytes[i..i + len]);
            }
        } else if !c.is_alphanumeric() {
            flush(&bytes[start..i], &mut lowered, items);
            start = i + len;
        } else {
            let lower = c.to_lowercase().next().unwrap_or(c);
            if lower != c || !lowered.is_empty() {
                if lowered.is_empty() {
                    lowered.extend_from_slice(&bytes[start..i]);
                }
                let mut buf = [0; 4];
                lowered.extend_from_slice(lower.encode_utf8(&mut buf).as_bytes());
            }
        }
        i += len;
    }
    flush(&bytes[start..], &mut lowered, items);
}

/// The word hashes as they were first computed, a character at a time into a new string:
/// the reference [`word_hashes`] is tested against.
#[cfg(test)]
fn word_hashes_reference(text: &str, seed: u64, items: &mut Vec<u64>) {
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

/// CJK unified ideographs: letters without case, known without the Unicode tables.
fn is_cjk_ideograph(c: char) -> bool {
    ('\u{4E00}'..='\u{9FFF}').contains(&c)
}

/// Lowers each `signature[i]` to the minimum of hash function `i` over `shingles`.
fn lower_signature(signature: &mut [u32], multipliers: &[u64], offsets: &[u64], shingles: &[u32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512dq") {
            // SAFETY: the CPU has AVX-512 F and DQ (DQ implies F), checked just above.
            unsafe { lower_signature_avx512(signature, multipliers, offsets, shingles) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { lower_signature_avx2(signature, multipliers, offsets, shingles) };
            return;
        }
    }
    lower_signature_portable(signature, multipliers, offsets, shingles);
}

/// Hash functions per block of [`lower_signature_avx512`]: 7 registers of minimums.
#[cfg(target_arch = "x86_64")]
const AVX512_BLOCK: usize = 56;

/// Hash functions per block of [`lower_signature_avx2`].
#[cfg(target_arch = "x86_64")]
const AVX2_BLOCK: usize = 16;

/// AVX-512, whose 64-bit lane multiply does 8 hash functions an instruction (without it, one
/// scalar multiply each: 30% of a MinHash-only run). Blocks of hash functions outer, shingles
/// inner: a block's minimums stay in registers, as 64-bit lanes (the minimum of the 32-bit
/// values, which fill the low half of each lane), so no lane is narrowed per shingle (15%
/// faster than narrowing to 32 bits and keeping the minimums in memory).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn lower_signature_avx512(
    signature: &mut [u32],
    multipliers: &[u64],
    offsets: &[u64],
    shingles: &[u32],
) {
    const B: usize = AVX512_BLOCK;
    let n = signature.len().min(multipliers.len()).min(offsets.len());
    let mut start = 0;
    while start + B <= n {
        let a: &[u64; B] = multipliers[start..start + B].try_into().expect("a block");
        let b: &[u64; B] = offsets[start..start + B].try_into().expect("a block");
        let mut mins: [u64; B] = std::array::from_fn(|j| u64::from(signature[start + j]));
        for &x in shingles {
            let x = u64::from(x);
            for j in 0..B {
                mins[j] = mins[j].min(a[j].wrapping_mul(x).wrapping_add(b[j]) >> 32);
            }
        }
        for (min, &m) in signature[start..start + B].iter_mut().zip(&mins) {
            *min = m as u32; // below 2^32: a 64-bit value shifted right by 32
        }
        start += B;
    }
    lower_signature_portable(
        &mut signature[start..n],
        &multipliers[start..n],
        &offsets[start..n],
        shingles,
    );
}

/// AVX2, which has no 64-bit lane multiply: `a * x` with `x` below 2^32 is
/// `lo(a) * x + (hi(a) * x) << 32`, two 32 x 32 -> 64-bit lane multiplies, of which the
/// second only matters below bit 32 (the shift drops the rest). Blocks of hash functions
/// outer, shingles inner, as with AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lower_signature_avx2(
    signature: &mut [u32],
    multipliers: &[u64],
    offsets: &[u64],
    shingles: &[u32],
) {
    const B: usize = AVX2_BLOCK;
    let n = signature.len().min(multipliers.len()).min(offsets.len());
    let mut start = 0;
    while start + B <= n {
        let low: [u32; B] = std::array::from_fn(|j| multipliers[start + j] as u32);
        let high: [u32; B] = std::array::from_fn(|j| (multipliers[start + j] >> 32) as u32);
        let b: &[u64; B] = offsets[start..start + B].try_into().expect("a block");
        let mut mins: [u32; B] = signature[start..start + B].try_into().expect("a block");
        for &x in shingles {
            for j in 0..B {
                // (a * x + b) >> 32 modulo 2^32: the high half of `lo(a) * x + b` (which
                // cannot overflow 64 bits) plus the low half of `hi(a) * x`.
                let t = (u64::from(low[j]) * u64::from(x)).wrapping_add(b[j]);
                let v = ((t >> 32) as u32).wrapping_add(high[j].wrapping_mul(x));
                mins[j] = mins[j].min(v);
            }
        }
        signature[start..start + B].copy_from_slice(&mins);
        start += B;
    }
    lower_signature_portable(
        &mut signature[start..n],
        &multipliers[start..n],
        &offsets[start..n],
        shingles,
    );
}

/// Shingles outer, hash functions inner: one pass over a small array of minimums that stays
/// in L1. The reference the vectorized versions are tested against.
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
    use super::{word_hashes, word_hashes_reference};

    /// Words of mixed scripts, cases, digits, punctuation and spacing hash as the reference
    /// does: the lowered copy starting mid-word, at a word's end, after a non-ASCII letter
    /// that lower-cases to itself and to another letter.
    #[test]
    fn word_hashes_equal_the_reference() {
        let texts = [
            "",
            " ",
            "abc",
            "Abc dEF ghI JKL",
            "hello, World! 42 times--x_y",
            "Straße ÉCOLE école Ωmega ωΜΕΓΑ İstanbul ǅemal",
            "数据 清洗Data流程 ABC中文 def",
            "mixed\tTabs\nand\r\nlines\u{a0}nbsp\u{2003}em",
            "ÀÁÂ àáâ 123abc ABC123 a1B2c3",
            "emoji😀Word ok👍 Ok",
            "Ǆ ǅ ǆ ẞ ß ﬁ Ⅻ ⅻ ① ²",
        ];
        for text in texts {
            for seed in [0, 1, 77] {
                let (mut fast, mut plain) = (Vec::new(), Vec::new());
                word_hashes(text, seed, &mut fast);
                word_hashes_reference(text, seed, &mut plain);
                assert_eq!(fast, plain, "{text:?}");
            }
        }
        // Every character of the first planes, alone and between words.
        for c in (0u32..0x3_0000).filter_map(char::from_u32) {
            let text = format!("aB{c}Cd {c} {c}x");
            let (mut fast, mut plain) = (Vec::new(), Vec::new());
            word_hashes(&text, 1, &mut fast);
            word_hashes_reference(&text, 1, &mut plain);
            assert_eq!(fast, plain, "{:?}", c);
        }
    }

    use super::{MinHashOptions, MinHasher, lower_signature, lower_signature_portable};

    /// Each vectorized version the CPU has, and the dispatcher, against the portable loop:
    /// hash counts that are and are not multiples of the blocks, shingles at the extremes,
    /// and a starting signature that is not all `u32::MAX`.
    #[test]
    fn the_vectorized_signatures_equal_the_portable_one() {
        let mut shingles: Vec<u32> = (0..1000u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        shingles.extend([0, 1, u32::MAX, u32::MAX - 1]);
        for (bands, rows) in [(14, 8), (1, 5), (9, 13), (20, 6)] {
            let options = MinHashOptions {
                bands,
                rows,
                seed: bands as u64,
                ..MinHashOptions::default()
            };
            let hasher = MinHasher::new(options);
            let (a, b) = (&hasher.multipliers, &hasher.offsets);
            let start: Vec<u32> = (0..a.len() as u32)
                .map(|i| u32::MAX - i.wrapping_mul(40_503) % 7)
                .collect();
            for shingles in [&shingles[..], &shingles[..3], &[]] {
                let mut plain = start.clone();
                lower_signature_portable(&mut plain, a, b, shingles);
                let mut fast = start.clone();
                lower_signature(&mut fast, a, b, shingles);
                assert_eq!(fast, plain, "{bands} x {rows}");
                #[cfg(target_arch = "x86_64")]
                {
                    if std::arch::is_x86_feature_detected!("avx512dq") {
                        let mut fast = start.clone();
                        // SAFETY: checked just above.
                        unsafe { super::lower_signature_avx512(&mut fast, a, b, shingles) };
                        assert_eq!(fast, plain, "AVX-512, {bands} x {rows}");
                    }
                    if std::arch::is_x86_feature_detected!("avx2") {
                        let mut fast = start.clone();
                        // SAFETY: checked just above.
                        unsafe { super::lower_signature_avx2(&mut fast, a, b, shingles) };
                        assert_eq!(fast, plain, "AVX2, {bands} x {rows}");
                    }
                }
            }
        }
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
