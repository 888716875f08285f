//! Text in and out of the model: a Hugging Face `tokenizer.json` (the one a dataset was
//! tokenized with, copied into every checkpoint and export).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Result, anyhow};
use tokenizers::DecoderWrapper;

use crate::model::utf8::{ByteVocab, TokenBytes, byte_level_char_bytes};

/// A Hugging Face `tokenizer.json`, for text in and out of the model.
#[derive(Debug)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    /// Built on first use; `None` for a tokenizer that is not byte-level.
    byte_vocab: OnceLock<Option<ByteVocab>>,
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow!("loading tokenizer {}: {e}", path.display()))?;
        Ok(Self {
            inner,
            byte_vocab: OnceLock::new(),
        })
    }

    /// Ids of `text`; special-token strings in it become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("encoding {text:?}: {e}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The ids of a plain-text prompt for a model whose texts start with `bos`: BOS, then the
    /// text's ids, where a text that already starts with the BOS token's text (`<|bos|>`,
    /// which encodes to the BOS id) keeps its own BOS instead of getting a second one.
    pub fn encode_prompt(&self, text: &str, bos: Option<u32>) -> Result<Vec<u32>> {
        let ids = self.encode(text)?;
        Ok(match bos {
            Some(bos) if ids.first() != Some(&bos) => std::iter::once(bos).chain(ids).collect(),
            _ => ids,
        })
    }

    /// Tokens in the vocabulary, special tokens included.
    pub fn vocab_size(&self) -> u32 {
        u32::try_from(self.inner.get_vocab_size(true)).unwrap_or(u32::MAX)
    }

    /// The id of a token given by its text (special tokens such as `<|end|>`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The ids of jielong's special tokens (`format::SPECIAL_TOKENS`) this tokenizer has, by
    /// name.
    pub fn special_ids(&self) -> std::collections::BTreeMap<String, u32> {
        format::SPECIAL_TOKENS
            .iter()
            .filter_map(|(name, text)| self.token_id(text).map(|id| (name.to_string(), id)))
            .collect()
    }

    /// The chat template of this tokenizer's special tokens for a model whose prompts start
    /// with `bos` (`None`: the model was trained without BOS, whatever the tokenizer has).
    pub fn chat_template_for_model(&self, bos: Option<u32>) -> Result<format::ChatTemplate> {
        Ok(format::ChatTemplate::from_special_tokens(
            &self.special_ids_for_model(bos),
        )?)
    }

    /// [`Self::special_ids`] with `bos` as the model's: its BOS id, or none for a model trained
    /// without BOS (whatever the tokenizer has).
    pub fn special_ids_for_model(
        &self,
        bos: Option<u32>,
    ) -> std::collections::BTreeMap<String, u32> {
        let mut special = self.special_ids();
        match bos {
            Some(bos) => special.insert("bos".into(), bos),
            None => special.remove("bos"),
        };
        special
    }

    /// Text of `ids`. With a byte-level tokenizer an unfinished character (at the end, or
    /// before a special token) is dropped instead of becoming U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        if let Some(vocab) = self.byte_vocab() {
            let (text, dropped) = vocab.decode(ids);
            if dropped {
                return Ok(text);
            }
        }
        self.inner
            .decode(ids, false)
            .map_err(|e| anyhow!("decoding {} ids: {e}", ids.len()))
    }

    /// The bytes of every token and what they do to UTF-8, for sampling valid text; `None`
    /// when the decoder is not byte-level (tokens are not byte strings there).
    pub fn byte_vocab(&self) -> Option<&ByteVocab> {
        self.byte_vocab
            .get_or_init(|| byte_vocab(&self.inner))
            .as_ref()
    }
}

/// Each id's bytes as the byte-level decoder produces them: characters mapped back to bytes
/// (a token with a character outside the map is taken as its UTF-8, as the decoder does).
fn byte_vocab(tokenizer: &tokenizers::Tokenizer) -> Option<ByteVocab> {
    if !matches!(tokenizer.get_decoder(), Some(DecoderWrapper::ByteLevel(_))) {
        return None;
    }
    let char_bytes = byte_level_char_bytes();
    let len = tokenizer
        .get_vocab(true)
        .values()
        .max()
        .map_or(0, |&id| id as usize + 1);
    let added = tokenizer.get_added_vocabulary();
    let tokens = (0..len as u32)
        .map(|id| {
            let Some(token) = tokenizer.id_to_token(id) else {
                return TokenBytes::Unused;
            };
            let bytes = token
                .chars()
                .map(|c| char_bytes.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
                .unwrap_or_else(|| token.as_bytes().to_vec());
            if added.is_special_token(&token) {
                TokenBytes::Special(bytes)
            } else {
                TokenBytes::Text(bytes)
            }
        })
        .collect();
    Some(ByteVocab::new(tokens))
}

impl format::TextEncoder for TextTokenizer {
    fn encode(&self, text: &str) -> std::result::Result<Vec<u32>, String> {
        TextTokenizer::encode(self, text).map_err(|e| e.to_string())
    }
}
