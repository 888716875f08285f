//! Tokenization: train a byte-level BPE tokenizer (`pipeline tokenizer train`), encode
//! documents into pretraining shards with a held-out validation split (`pipeline tokenize`),
//! and render labeler exports into SFT / preference shards (`pipeline tokenize-chat`).

pub mod chat;
mod encoded;
pub mod fast;
pub mod parts;
pub mod pretrain;
pub mod remote;
pub mod shuffle;
mod task_markers;
pub mod tasks;
pub mod train;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use format::{SPECIAL_TOKENS, TextEncoder, TokenizerSpec};
use tokenizers::Tokenizer;

/// A Hugging Face tokenizer loaded from `tokenizer.json`, with jielong's special tokens.
pub struct LoadedTokenizer {
    pub tokenizer: Tokenizer,
    pub spec: TokenizerSpec,
    /// The same ids without the generic pipeline's overhead, when the tokenizer's shape
    /// allows (see [`fast`]).
    fast: Option<fast::FastEncoder>,
}

impl std::fmt::Debug for LoadedTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedTokenizer")
            .field("spec", &self.spec)
            .finish()
    }
}

impl LoadedTokenizer {
    /// Loads `path` and finds the special tokens by their text. `eos` is required (every
    /// pretraining document ends with it); the chat markers are required for chat datasets;
    /// `bos`, when the tokenizer has it, starts every row written with it.
    pub fn load(path: &Path) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: not a tokenizers file: {e}", path.display()))?;
        let mut special_tokens = BTreeMap::new();
        for (name, text) in SPECIAL_TOKENS {
            if let Some(id) = tokenizer.token_to_id(text) {
                special_tokens.insert(name.to_string(), id);
            }
        }
        if !special_tokens.contains_key("bos") {
            // A tokenizer from elsewhere may have its own beginning-of-text token; one
            // trained by jielong before BOS existed has none, and its datasets start bare.
            for alt in ["<s>", "<|begin_of_text|>"] {
                if let Some(id) = tokenizer.token_to_id(alt) {
                    special_tokens.insert("bos".into(), id);
                    break;
                }
            }
        }
        if !special_tokens.contains_key("eos") {
            // Tokenizers from elsewhere name end-of-text differently.
            for alt in ["</s>", "<|end_of_text|>", "<eos>", "[SEP]"] {
                if let Some(id) = tokenizer.token_to_id(alt) {
                    special_tokens.insert("eos".into(), id);
                    break;
                }
            }
        }
        let vocab_size =
            u32::try_from(tokenizer.get_vocab_size(true)).context("vocabulary larger than u32")?;
        Ok(Self {
            fast: fast::FastEncoder::new(&tokenizer),
            tokenizer,
            spec: TokenizerSpec {
                path: path.to_path_buf(),
                vocab_size,
                special_tokens,
            },
        })
    }

    pub fn eos(&self) -> Result<u32> {
        self.spec.special_tokens.get("eos").copied().ok_or_else(|| {
            anyhow!(
                "{}: no end-of-text token ({} or a known alternative)",
                self.spec.path.display(),
                SPECIAL_TOKENS[0].1
            )
        })
    }

    /// The BOS id that starts every document and example, if the tokenizer has one.
    pub fn bos(&self) -> Option<u32> {
        self.spec.special_tokens.get("bos").copied()
    }

    /// Encodes plain text without adding special tokens. Very long texts are cut into pieces
    /// at whitespace (at most `max_piece_bytes` each) so one huge line cannot stall a worker.
    pub fn encode_long(&self, text: &str, max_piece_bytes: usize) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len() / 3);
        for piece in split_pieces(text, max_piece_bytes) {
            self.encode_into(piece, &mut ids)?;
        }
        Ok(ids)
    }

    /// Appends the ids of `text` (no special tokens added) to `ids`.
    pub fn encode_into(&self, text: &str, ids: &mut Vec<u32>) -> Result<()> {
        match &self.fast {
            Some(fast) => fast.encode(&self.tokenizer, text, ids),
            None => {
                let encoding = self
                    .tokenizer
                    .encode_fast(text, false)
                    .map_err(|e| anyhow!("tokenizer failed: {e}"))?;
                ids.extend_from_slice(encoding.get_ids());
                Ok(())
            }
        }
    }

    /// Whether encoding takes the fast path (see [`fast`]).
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| anyhow!("decoding failed: {e}"))
    }
}

impl TextEncoder for LoadedTokenizer {
    fn encode(&self, text: &str) -> std::result::Result<Vec<u32>, String> {
        let mut ids = Vec::new();
        self.encode_into(text, &mut ids)
            .map_err(|e| format!("{e:#}"))?;
        Ok(ids)
    }
}

/// Splits `text` into pieces of at most about `max` bytes, preferring a newline, then a
/// space, then any character boundary. The cut goes just before the whitespace, so it starts
/// the next piece: byte-level BPE attaches a space to the word after it, and the ids of the
/// pieces equal the ids of the whole text.
pub fn split_pieces(text: &str, max: usize) -> Vec<&str> {
    let max = max.max(16);
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let window = &rest[..cut];
        let at = window
            .rfind('\n')
            .or_else(|| window.rfind(' '))
            .filter(|&i| i > max / 2)
            .unwrap_or(cut);
        pieces.push(&rest[..at]);
        rest = &rest[at..];
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}
