//! Text in and out of the model: a Hugging Face `tokenizer.json` (the one a dataset was
//! tokenized with, copied into every checkpoint and export).

use std::path::Path;

use anyhow::{Result, anyhow};

/// A Hugging Face `tokenizer.json`, for text in and out of the model.
#[derive(Debug)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow!("loading tokenizer {}: {e}", path.display()))?;
        Ok(Self { inner })
    }

    /// Ids of `text`; special-token strings in it become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("encoding {text:?}: {e}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The id of a token given by its text (special tokens such as `<|end|>`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| anyhow!("decoding {} ids: {e}", ids.len()))
    }
}

impl format::TextEncoder for TextTokenizer {
    fn encode(&self, text: &str) -> std::result::Result<Vec<u32>, String> {
        TextTokenizer::encode(self, text).map_err(|e| e.to_string())
    }
}
