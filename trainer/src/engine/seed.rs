//! The one source of randomness after initialisation: stateless hashes of (seed, step, ...).
//! Every random choice (training windows, draw order, adapter dropout, sampling) derives from
//! them, so a resumed or repeated run makes the same choices.

/// SplitMix64: a tiny, well-mixed, stateless hash that drives every random choice.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Hash of a sequence of integers (seed, step, micro, row, ...).
pub fn mix(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x6A09_E667_F3BC_C908, |h, &p| splitmix64(h ^ p))
}
