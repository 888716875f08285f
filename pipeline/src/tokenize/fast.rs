//! A fast encoder for the tokenizer shape jielong trains and most byte-level BPE tokenizers
//! have: no normalizer, the GPT-2 split (`ByteLevel` pre-tokenizer with `use_regex`, no
//! prefix space), a BPE model, and added tokens matched verbatim. It gives exactly the ids of
//! `tokenizers`' `encode(text, false)` (tests compare both on English, Chinese, web pages and
//! random Unicode), while skipping what makes the generic path slow for pretraining-sized
//! input: the backtracking regex, offset bookkeeping and one `String` per token. Words are
//! split by hand with the character classes of the same regex library, and each thread keeps
//! a cache of word -> ids, so the BPE merges run once per distinct word.
//!
//! Any other tokenizer shape goes through `tokenizers` unchanged ([`FastEncoder::new`] says
//! no).

use std::cell::RefCell;

use aho_corasick::{AhoCorasick, MatchKind};
use anyhow::{Result, anyhow};
use regex_syntax::hir::{Class, HirKind};
use rustc_hash::FxHashMap;
use thread_local::ThreadLocal;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Model, ModelWrapper, Tokenizer};

/// Words longer than this (bytes) are not cached: long runs (Chinese text has no spaces) are
/// mostly unique and would only fill the cache.
const MAX_CACHED_WORD: usize = 64;
/// Entries per thread before the cache is emptied and starts again.
const MAX_CACHE_ENTRIES: usize = 1 << 18;

/// The character classes of the GPT-2 split: `\p{L}`, `\p{N}`, `\s`, anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CharClass {
    Letter,
    Number,
    Space,
    Other,
}

/// Sorted code-point ranges of one Unicode class, as the `regex` crates define it.
#[derive(Debug)]
struct Ranges(Vec<(u32, u32)>);

impl Ranges {
    fn of(class: &str) -> Result<Self> {
        let hir = regex_syntax::parse(class)?;
        match hir.kind() {
            HirKind::Class(Class::Unicode(set)) => Ok(Self(
                set.ranges()
                    .iter()
                    .map(|r| (r.start() as u32, r.end() as u32))
                    .collect(),
            )),
            other => Err(anyhow!("{class} parsed to {other:?}, not a class")),
        }
    }

    fn contains(&self, c: char) -> bool {
        let c = c as u32;
        self.0
            .binary_search_by(|&(lo, hi)| {
                if hi < c {
                    std::cmp::Ordering::Less
                } else if lo > c {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }
}

#[derive(Debug)]
struct Classes {
    ascii: [CharClass; 128],
    letter: Ranges,
    number: Ranges,
    space: Ranges,
}

impl Classes {
    fn new() -> Result<Self> {
        let mut classes = Self {
            ascii: [CharClass::Other; 128],
            letter: Ranges::of(r"\p{L}")?,
            number: Ranges::of(r"\p{N}")?,
            space: Ranges::of(r"\s")?,
        };
        for b in 0..128u8 {
            classes.ascii[b as usize] = classes.slow(b as char);
        }
        Ok(classes)
    }

    fn slow(&self, c: char) -> CharClass {
        if self.space.contains(c) {
            CharClass::Space
        } else if self.letter.contains(c) {
            CharClass::Letter
        } else if self.number.contains(c) {
            CharClass::Number
        } else {
            CharClass::Other
        }
    }

    fn of(&self, c: char) -> CharClass {
        if c.is_ascii() {
            self.ascii[c as usize]
        } else {
            self.slow(c)
        }
    }
}

/// Byte-level BPE's reversible map from bytes to printable characters (GPT-2's
/// `bytes_to_unicode`): printable Latin-1 bytes stand for themselves, the rest for 256 + n.
fn byte_chars() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
    let mut out = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let code = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        out[b as usize] = char::from_u32(code).unwrap_or('\0');
    }
    out
}

/// The GPT-2 split of text into words and the byte-level map of a word to the characters
/// the BPE vocabulary is written in; shared by the fast encoder and tokenizer training.
#[derive(Debug)]
pub struct ByteLevelSplitter {
    classes: Classes,
    byte_chars: [char; 256],
}

impl ByteLevelSplitter {
    pub fn new() -> Result<Self> {
        Ok(Self {
            classes: Classes::new()?,
            byte_chars: byte_chars(),
        })
    }

    /// The words of `text`, in order; together they are `text`.
    pub fn words<'t>(&self, text: &'t str) -> impl Iterator<Item = &'t str> {
        let mut start = 0;
        std::iter::from_fn(move || {
            (start < text.len()).then(|| {
                let end = self.word_end(text, start);
                let word = &text[start..end];
                start = end;
                word
            })
        })
    }

    /// Appends `word`'s bytes as byte-level characters to `out`.
    pub fn map_bytes(&self, word: &str, out: &mut String) {
        out.extend(word.bytes().map(|b| self.byte_chars[b as usize]));
    }

    /// Where the word starting at byte `start` ends, by the GPT-2 split
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    /// (the first alternative that matches at `start` wins).
    fn word_end(&self, text: &str, start: usize) -> usize {
        let mut chars = text[start..].char_indices().map(|(i, c)| (start + i, c));
        let Some((_, first)) = chars.next() else {
            return start;
        };
        let rest = &text[start + first.len_utf8()..];
        if first == '\'' {
            for suffix in ["s", "t", "re", "ve", "m", "ll", "d"] {
                if rest.starts_with(suffix) {
                    return start + 1 + suffix.len();
                }
            }
        }
        let class = self.classes.of(first);
        // ` ?X+`: an optional single space, then a run of one class.
        let run_class = match (first, rest.chars().next()) {
            (' ', Some(next)) if self.classes.of(next) != CharClass::Space => {
                chars.next();
                Some(self.classes.of(next))
            }
            _ if class != CharClass::Space => Some(class),
            _ => None,
        };
        if let Some(run_class) = run_class {
            for (i, c) in chars {
                if self.classes.of(c) != run_class {
                    return i;
                }
            }
            return text.len();
        }
        // Whitespace: `\s+(?!\S)` leaves the last space of a run to the word after it
        // (when the run has more than one), `\s+` takes a lone one.
        let mut last_start = start;
        for (i, c) in chars {
            if self.classes.of(c) != CharClass::Space {
                return if last_start > start { last_start } else { i };
            }
            last_start = i;
        }
        text.len()
    }
}

/// Word -> ids, per thread.
type WordCache = FxHashMap<Box<str>, Box<[u32]>>;

/// The fast encoder of one tokenizer (see the module docs).
#[derive(Debug)]
pub struct FastEncoder {
    splitter: ByteLevelSplitter,
    /// Added tokens found verbatim in the text, leftmost-longest like `tokenizers`.
    added: Option<(AhoCorasick, Vec<u32>)>,
    cache: ThreadLocal<RefCell<WordCache>>,
}

impl FastEncoder {
    /// `None` unless `tokenizer` has exactly the shape this encoder reproduces.
    pub fn new(tokenizer: &Tokenizer) -> Option<Self> {
        if tokenizer.get_normalizer().is_some() {
            return None;
        }
        match tokenizer.get_pre_tokenizer() {
            Some(PreTokenizerWrapper::ByteLevel(b)) if b.use_regex && !b.add_prefix_space => {}
            _ => return None,
        }
        let ModelWrapper::BPE(bpe) = tokenizer.get_model() else {
            return None;
        };
        let plain_bpe = bpe.dropout.is_none_or(|d| d == 0.0)
            && bpe.continuing_subword_prefix.is_none()
            && bpe.end_of_word_suffix.is_none()
            && !bpe.byte_fallback
            && bpe.unk_token.is_none();
        if !plain_bpe || tokenizer.get_added_vocabulary().get_encode_special_tokens() {
            return None;
        }
        let mut added: Vec<(String, u32)> = Vec::new();
        for (id, token) in tokenizer.get_added_tokens_decoder() {
            if token.normalized || token.lstrip || token.rstrip || token.single_word {
                return None;
            }
            added.push((token.content, id));
        }
        added.sort_by_key(|(_, id)| *id);
        let added = if added.is_empty() {
            None
        } else {
            let matcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(added.iter().map(|(content, _)| content))
                .ok()?;
            Some((matcher, added.iter().map(|(_, id)| *id).collect()))
        };
        Some(Self {
            splitter: ByteLevelSplitter::new().ok()?,
            added,
            cache: ThreadLocal::new(),
        })
    }

    /// Appends the ids of `text` to `out`, as `tokenizer.encode(text, false)` would give them.
    pub fn encode(&self, tokenizer: &Tokenizer, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let ModelWrapper::BPE(bpe) = tokenizer.get_model() else {
            return Err(anyhow!("the fast encoder needs a BPE model"));
        };
        let cache = self.cache.get_or(|| RefCell::new(WordCache::default()));
        let mut cache = cache.borrow_mut();
        let mut mapped = String::new();
        let mut encode_segment = |segment: &str, out: &mut Vec<u32>| -> Result<()> {
            for word in self.splitter.words(segment) {
                if let Some(ids) = cache.get(word) {
                    out.extend_from_slice(ids);
                    continue;
                }
                mapped.clear();
                self.splitter.map_bytes(word, &mut mapped);
                let first = out.len();
                out.extend(bpe_tokens(bpe, &mapped)?);
                if word.len() <= MAX_CACHED_WORD {
                    if cache.len() >= MAX_CACHE_ENTRIES {
                        cache.clear();
                    }
                    cache.insert(word.into(), out[first..].into());
                }
            }
            Ok(())
        };
        match &self.added {
            None => encode_segment(text, out)?,
            Some((matcher, ids)) => {
                let mut at = 0;
                for m in matcher.find_iter(text) {
                    encode_segment(&text[at..m.start()], out)?;
                    out.push(ids[m.pattern().as_usize()]);
                    at = m.end();
                }
                encode_segment(&text[at..], out)?;
            }
        }
        Ok(())
    }
}

/// The ids of one byte-mapped word from the BPE model.
fn bpe_tokens(bpe: &BPE, mapped: &str) -> Result<impl Iterator<Item = u32>> {
    let tokens = bpe
        .tokenize(mapped)
        .map_err(|e| anyhow!("BPE failed on {mapped:?}: {e}"))?;
    Ok(tokens.into_iter().map(|t| t.id))
}
