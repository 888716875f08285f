//! Keeping sampled text valid UTF-8 with a byte-level tokenizer. Each token stands for a byte
//! string that may hold part of a character, so a free choice of tokens can continue a
//! character with a byte it cannot have, start one with a continuation byte, or stop inside
//! one: decoded, each becomes U+FFFD. [`ByteVocab`] classifies every token once per tokenizer
//! by what it does to each state of a UTF-8 decoder, and keeps, per state, the ids that would
//! make the stream invalid, so a sampling step only sets those logits to -inf.

use std::fmt;

/// Where a byte stream stands: between characters, or inside one and what its next byte
/// must be (the ranges of Unicode's table 3-7, which rule out overlong forms, surrogates and
/// code points above U+10FFFF).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Utf8State {
    /// Between characters: ASCII or a leading byte may come.
    Between,
    /// One byte 80..=BF left.
    Need1,
    /// Two bytes 80..=BF left.
    Need2,
    /// Three bytes 80..=BF left.
    Need3,
    /// After E0: A0..=BF, then one more.
    AfterE0,
    /// After ED: 80..=9F (no surrogates), then one more.
    AfterEd,
    /// After F0: 90..=BF, then two more.
    AfterF0,
    /// After F4: 80..=8F (nothing above U+10FFFF), then two more.
    AfterF4,
}

impl Utf8State {
    pub const ALL: [Utf8State; 8] = [
        Utf8State::Between,
        Utf8State::Need1,
        Utf8State::Need2,
        Utf8State::Need3,
        Utf8State::AfterE0,
        Utf8State::AfterEd,
        Utf8State::AfterF0,
        Utf8State::AfterF4,
    ];

    /// Its place in [`Utf8State::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The state after `byte`, or `None` when no valid UTF-8 has that byte here.
    pub fn step(self, byte: u8) -> Option<Utf8State> {
        use Utf8State::*;
        let within = |lo: u8, hi: u8, next: Utf8State| (lo..=hi).contains(&byte).then_some(next);
        match self {
            Between => match byte {
                0x00..=0x7f => Some(Between),
                0xc2..=0xdf => Some(Need1),
                0xe0 => Some(AfterE0),
                0xed => Some(AfterEd),
                0xe1..=0xef => Some(Need2),
                0xf0 => Some(AfterF0),
                0xf1..=0xf3 => Some(Need3),
                0xf4 => Some(AfterF4),
                _ => None,
            },
            Need1 => within(0x80, 0xbf, Between),
            Need2 => within(0x80, 0xbf, Need1),
            Need3 => within(0x80, 0xbf, Need2),
            AfterE0 => within(0xa0, 0xbf, Need1),
            AfterEd => within(0x80, 0x9f, Need1),
            AfterF0 => within(0x90, 0xbf, Need2),
            AfterF4 => within(0x80, 0x8f, Need2),
        }
    }

    /// The state after all of `bytes`, or `None` if they cannot follow this state.
    pub fn after(self, bytes: &[u8]) -> Option<Utf8State> {
        bytes.iter().try_fold(self, |state, &b| state.step(b))
    }
}

/// What one token id decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenBytes {
    /// Ordinary text: these bytes are appended to the stream.
    Text(Vec<u8>),
    /// A special token (`<|end|>`, EOS, ...): always allowed; it ends the text before it,
    /// so an unfinished character there is dropped, and the stream starts afresh after it.
    Special(Vec<u8>),
    /// No token has this id (the model's vocabulary may be larger): decodes to nothing.
    Unused,
}

/// The byte strings of a byte-level vocabulary, with each token's effect on every
/// [`Utf8State`] and, per state, the ids that cannot come next.
pub struct ByteVocab {
    tokens: Vec<TokenBytes>,
    /// `next[id][state]`: the state after the token, `None` where it makes the stream invalid.
    next: Vec<[Option<Utf8State>; 8]>,
    /// Per state, the ids to mask; empty for a state that no id could follow (never masked).
    banned: [Vec<u32>; 8],
}

impl fmt::Debug for ByteVocab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteVocab")
            .field("tokens", &self.tokens.len())
            .field("banned", &self.banned.each_ref().map(Vec::len))
            .finish()
    }
}

impl ByteVocab {
    /// Classifies `tokens` (indexed by id) for every state.
    pub fn new(tokens: Vec<TokenBytes>) -> Self {
        let next: Vec<[Option<Utf8State>; 8]> = tokens
            .iter()
            .map(|token| {
                Utf8State::ALL.map(|state| match token {
                    TokenBytes::Text(bytes) => state.after(bytes),
                    TokenBytes::Special(_) => Some(Utf8State::Between),
                    TokenBytes::Unused => Some(state),
                })
            })
            .collect();
        let banned = Utf8State::ALL.map(|state| {
            let banned: Vec<u32> = (0..next.len())
                .filter(|&id| next[id][state.index()].is_none())
                .map(|id| id as u32)
                .collect();
            // Masking every id would leave nothing to sample: keep today's behaviour there.
            if banned.len() == next.len() {
                Vec::new()
            } else {
                banned
            }
        });
        Self {
            tokens,
            next,
            banned,
        }
    }

    /// Sets to -inf the logits of the ids that cannot follow `state`.
    pub fn mask(&self, state: Utf8State, logits: &mut [f32]) {
        for &id in &self.banned[state.index()] {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
    }

    /// The ids [`ByteVocab::mask`] sets to -inf after `state`.
    pub fn banned(&self, state: Utf8State) -> &[u32] {
        &self.banned[state.index()]
    }

    /// Whether `id` may come after `state`.
    pub fn allows(&self, state: Utf8State, id: u32) -> bool {
        self.next
            .get(id as usize)
            .is_none_or(|next| next[state.index()].is_some())
    }

    /// The state after `id`; an id that was not allowed starts afresh (between characters).
    pub fn advance(&self, state: Utf8State, id: u32) -> Utf8State {
        match self.next.get(id as usize) {
            Some(next) => next[state.index()].unwrap_or(Utf8State::Between),
            None => state,
        }
    }

    /// The bytes of `ids` as text, with every unfinished character dropped: at the end and
    /// before each special token. The bool says whether anything was dropped. Other invalid
    /// bytes (ids that were not masked) become U+FFFD, as the tokenizer's decoder makes them.
    pub fn decode(&self, ids: &[u32]) -> (String, bool) {
        let mut bytes = Vec::new();
        let mut dropped = false;
        for &id in ids {
            match self.tokens.get(id as usize) {
                Some(TokenBytes::Text(b)) => bytes.extend_from_slice(b),
                Some(TokenBytes::Special(b)) => {
                    dropped |= drop_unfinished(&mut bytes);
                    bytes.extend_from_slice(b);
                }
                Some(TokenBytes::Unused) | None => {}
            }
        }
        dropped |= drop_unfinished(&mut bytes);
        (String::from_utf8_lossy(&bytes).into_owned(), dropped)
    }
}

/// Drops a last character that has started but not finished (at most 3 bytes, all of them a
/// valid beginning); true if there was one.
fn drop_unfinished(bytes: &mut Vec<u8>) -> bool {
    let is_continuation = |b: u8| b & 0xc0 == 0x80;
    let Some(start) = (bytes.len().saturating_sub(3)..bytes.len())
        .rev()
        .find(|&i| !is_continuation(bytes[i]))
    else {
        return false;
    };
    match std::str::from_utf8(&bytes[start..]) {
        // `error_len() == None`: the input ended inside a character that was valid so far.
        Err(e) if e.error_len().is_none() && e.valid_up_to() == 0 => {
            bytes.truncate(start);
            true
        }
        _ => false,
    }
}

/// The byte each character of a byte-level vocabulary stands for (GPT-2's reversible map:
/// printable Latin-1 bytes are themselves, the other 68 bytes are U+0100 onwards, in order).
pub fn byte_level_char_bytes() -> std::collections::HashMap<char, u8> {
    let stands_for_itself = |b: u8| matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
    let mut shifted = 0u32;
    (0..=255u8)
        .filter_map(|b| {
            let code = if stands_for_itself(b) {
                u32::from(b)
            } else {
                shifted += 1;
                0xff + shifted
            };
            char::from_u32(code).map(|c| (c, b))
        })
        .collect()
}
