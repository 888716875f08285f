//! `manifest.json`: what a dataset directory holds and how it was made. It is the last file a
//! writer creates (atomically), so its presence means every shard it names is complete.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{FormatError, Result, io_err};
use crate::schema::{DatasetKind, TokenDtype};

/// The version of the on-disk contract this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";

/// The tokenizer a dataset was encoded with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerInfo {
    /// File name inside the dataset directory, normally `tokenizer.json`.
    pub file: String,
    pub sha256: String,
    pub vocab_size: u32,
    /// Special tokens by name (`eos`, `user`, `assistant`, `end_of_turn`, `bos`, ...).
    /// `bos`, when present, is the first id of every row (see [`TokenizerInfo::bos`]).
    pub special_tokens: BTreeMap<String, u32>,
}

impl TokenizerInfo {
    pub fn special(&self, name: &str) -> Option<u32> {
        self.special_tokens.get(name).copied()
    }

    /// The BOS id that starts every row of the dataset (a pretraining document's `tokens`,
    /// an SFT example's `input_ids`, a preference or unpaired `prompt_ids`), and that
    /// generation prepends. `None` for a dataset tokenized before jielong had a BOS token:
    /// its rows start bare, and so does generation from a model trained on it.
    pub fn bos(&self) -> Option<u32> {
        self.special("bos")
    }
}

/// One shard as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    pub file: String,
    pub rows: u64,
    /// Token ids in the shard, summed over every token column.
    pub tokens: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Sums over all shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    pub rows: u64,
    pub tokens: u64,
    pub bytes: u64,
}

impl Totals {
    /// Sums of the given shard entries.
    pub fn of(shards: &[ShardEntry]) -> Self {
        shards.iter().fold(Self::default(), |t, s| Self {
            rows: t.rows + s.rows,
            tokens: t.tokens + s.tokens,
            bytes: t.bytes + s.bytes,
        })
    }
}

/// The content of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub kind: DatasetKind,
    pub tokenizer: TokenizerInfo,
    pub token_dtype: TokenDtype,
    pub shards: Vec<ShardEntry>,
    pub totals: Totals,
    /// The resolved configuration that produced the dataset, as the producer serialised it.
    pub config: serde_json::Value,
    /// RFC 3339 UTC time at which `finish()` wrote the manifest.
    pub created_at: String,
}

impl Manifest {
    /// Reads and checks `DIR/manifest.json`: parseable, known version, totals consistent with
    /// the shard list, token width consistent with the vocabulary.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        let bad = |message: String| FormatError::Manifest {
            path: path.clone(),
            message,
        };
        // Look at the version first so a future manifest gets a version error, not a field error.
        let raw: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let version = raw
            .get("format_version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("missing integer field `format_version`".into()))?;
        if version != u64::from(FORMAT_VERSION) {
            return Err(FormatError::UnknownVersion {
                path,
                found: u32::try_from(version).unwrap_or(u32::MAX),
                supported: FORMAT_VERSION,
            });
        }
        let manifest: Manifest = serde_json::from_value(raw).map_err(|e| bad(e.to_string()))?;
        manifest.check().map_err(bad)?;
        Ok(manifest)
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        let sum = Totals::of(&self.shards);
        if sum != self.totals {
            return Err(format!(
                "totals {:?} do not add up to the shards' {:?}",
                self.totals, sum
            ));
        }
        let expected = self.kind.token_dtype(self.tokenizer.vocab_size);
        if self.token_dtype != expected {
            return Err(format!(
                "token_dtype {} does not fit a {} dataset with vocab_size {} (expected {})",
                self.token_dtype.as_str(),
                self.kind,
                self.tokenizer.vocab_size,
                expected.as_str()
            ));
        }
        if let Some(bos) = self.tokenizer.bos() {
            if bos >= self.tokenizer.vocab_size {
                return Err(format!(
                    "tokenizer.special_tokens.bos {bos} is outside vocab_size {}",
                    self.tokenizer.vocab_size
                ));
            }
            if self.tokenizer.special("eos") == Some(bos) {
                return Err(format!(
                    "tokenizer.special_tokens.bos {bos} equals eos: BOS must be its own token"
                ));
            }
        }
        for shard in &self.shards {
            if shard.file.contains('/') || shard.file.contains('\\') || shard.file.starts_with('.')
            {
                return Err(format!(
                    "shard file name {:?} must be a plain file name",
                    shard.file
                ));
            }
        }
        Ok(())
    }

    /// Writes `DIR/manifest.json` so that a reader sees either the old state or the complete
    /// new file: temp file, fsync, rename, fsync of the directory.
    pub fn write_atomic(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| FormatError::Manifest {
            path: dir.join(MANIFEST_FILE),
            message: e.to_string(),
        })?;
        write_file_atomic(dir, MANIFEST_FILE, &json)
    }
}

/// Writes `dir/name` atomically (temp file in the same directory, fsync, rename, directory fsync).
pub fn write_file_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dest = dir.join(name);
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    sync_dir(dir)
}

/// Makes renames and removals inside `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Streams a file through sha256; returns the lowercase hex digest.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The current time as RFC 3339 UTC, seconds precision.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
