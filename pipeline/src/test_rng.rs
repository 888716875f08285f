//! A small deterministic generator for the unit tests that compare code with its reference
//! on generated texts (xorshift64), so that a failing case reproduces from its seed.

pub(crate) struct TestRng(u64);

impl TestRng {
    /// `seed` must not be 0 (xorshift stays at 0).
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// `count` pieces drawn from `pieces`, joined.
    pub fn text(&mut self, pieces: &[&str], count: usize) -> String {
        (0..count).map(|_| self.pick(pieces)).collect()
    }
}
