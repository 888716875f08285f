//! `ShardWriter`: appends rows, rolls to a new `shard-NNNNN.arrow` when a shard reaches its
//! token budget, and writes `manifest.json` only when `finish()` succeeds. Each shard is
//! written under a temporary name, fsynced and renamed, and the manifest comes last, so a
//! crash at any point leaves a directory without a manifest, never one naming a partial shard.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_schema::SchemaRef;
use sha2::{Digest, Sha256};

use crate::error::{FormatError, Result, arrow_err, io_err};
use crate::manifest::{
    FORMAT_VERSION, MANIFEST_FILE, Manifest, ShardEntry, TokenizerInfo, Totals, now_rfc3339,
    sha256_file, sync_dir,
};
use crate::rows::{Row, ShardBuffer};
use crate::schema::{DatasetKind, TokenDtype};

/// The name the writer gives the tokenizer copy inside a dataset.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Shard file name for index `i`.
pub fn shard_file_name(i: usize) -> String {
    format!("shard-{i:05}.arrow")
}

/// The tokenizer to record in the dataset: the file is copied in and hashed by the writer.
#[derive(Debug, Clone)]
pub struct TokenizerSpec {
    pub path: PathBuf,
    pub vocab_size: u32,
    pub special_tokens: std::collections::BTreeMap<String, u32>,
}

/// Settings of a [`ShardWriter`]; checked by [`ShardWriterBuilder::build`].
#[derive(Debug, Clone)]
pub struct ShardWriterBuilder {
    dir: PathBuf,
    kind: DatasetKind,
    tokenizer: TokenizerSpec,
    max_shard_tokens: u64,
    config: serde_json::Value,
    overwrite: bool,
}

impl ShardWriterBuilder {
    /// Default shard size: 64Mi tokens (128 MiB of `u16` ids).
    pub const DEFAULT_MAX_SHARD_TOKENS: u64 = 1 << 26;

    /// Roll to a new shard once the current one holds at least this many token ids.
    pub fn max_shard_tokens(mut self, tokens: u64) -> Self {
        self.max_shard_tokens = tokens;
        self
    }

    /// The resolved configuration of the producer, stored verbatim in the manifest.
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.config = config;
        self
    }

    /// Replace an existing dataset in `dir` (its manifest is removed first, so a crash while
    /// rewriting leaves no manifest rather than a stale one).
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
        self
    }

    pub fn build(self) -> Result<ShardWriter> {
        let misuse = |m: String| Err(FormatError::Misuse(m));
        if self.max_shard_tokens == 0 || self.max_shard_tokens > i32::MAX as u64 {
            return misuse(format!(
                "max_shard_tokens must be in 1..={} (Arrow list offsets are i32), got {}",
                i32::MAX,
                self.max_shard_tokens
            ));
        }
        if self.tokenizer.vocab_size == 0 {
            return misuse("tokenizer vocab_size must be > 0".into());
        }
        if let Some((name, id)) = self
            .tokenizer
            .special_tokens
            .iter()
            .find(|(_, id)| **id >= self.tokenizer.vocab_size)
        {
            return misuse(format!(
                "special token {name:?} has id {id}, outside vocab_size {}",
                self.tokenizer.vocab_size
            ));
        }
        let eos = self.tokenizer.special_tokens.get("eos").copied();
        if self.kind == DatasetKind::Pretrain && eos.is_none() {
            return misuse(
                "a pretrain dataset needs an `eos` special token: every document ends with it"
                    .into(),
            );
        }
        let bos = self.tokenizer.special_tokens.get("bos").copied();
        if bos.is_some() && bos == eos {
            return misuse("the `bos` special token must differ from `eos`".into());
        }
        prepare_dir(&self.dir, self.overwrite)?;

        let tokenizer_dest = self.dir.join(TOKENIZER_FILE);
        fs::copy(&self.tokenizer.path, &tokenizer_dest).map_err(io_err(&self.tokenizer.path))?;
        let tokenizer = TokenizerInfo {
            file: TOKENIZER_FILE.to_string(),
            sha256: sha256_file(&tokenizer_dest)?,
            vocab_size: self.tokenizer.vocab_size,
            special_tokens: self.tokenizer.special_tokens,
        };
        let dtype = self.kind.token_dtype(tokenizer.vocab_size);
        Ok(ShardWriter {
            schema: self.kind.schema(dtype),
            buffer: ShardBuffer::new(self.kind, dtype, self.max_shard_tokens),
            dir: self.dir,
            kind: self.kind,
            dtype,
            eos,
            bos,
            tokenizer,
            max_shard_tokens: self.max_shard_tokens,
            config: self.config,
            shards: Vec::new(),
            rows_written: 0,
        })
    }
}

/// Refuses to clobber a dataset unless asked; with `overwrite`, removes the old manifest
/// first, then the old shards.
fn prepare_dir(dir: &Path, overwrite: bool) -> Result<()> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut leftovers = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name == MANIFEST_FILE
            || name == TOKENIZER_FILE
            || (name.starts_with("shard-") && name.ends_with(".arrow"))
            || (name.starts_with('.') && name.ends_with(".tmp"));
        if ours {
            leftovers.push(name);
        }
    }
    if leftovers.is_empty() {
        return Ok(());
    }
    if !overwrite {
        return Err(FormatError::Misuse(format!(
            "{}: already holds a dataset or the remains of one ({}); choose another directory or overwrite it",
            dir.display(),
            leftovers.join(", ")
        )));
    }
    let manifest = dir.join(MANIFEST_FILE);
    if manifest.exists() {
        fs::remove_file(&manifest).map_err(io_err(&manifest))?;
        sync_dir(dir)?;
    }
    for name in leftovers.iter().filter(|n| *n != MANIFEST_FILE) {
        let path = dir.join(name);
        fs::remove_file(&path).map_err(io_err(&path))?;
    }
    sync_dir(dir)
}
/// Writes a dataset directory: shards, `tokenizer.json` and, on `finish()`, `manifest.json`.
#[derive(Debug)]
pub struct ShardWriter {
    dir: PathBuf,
    kind: DatasetKind,
    dtype: TokenDtype,
    schema: SchemaRef,
    eos: Option<u32>,
    /// When the tokenizer has one, every row starts with it.
    bos: Option<u32>,
    tokenizer: TokenizerInfo,
    max_shard_tokens: u64,
    config: serde_json::Value,
    buffer: ShardBuffer,
    shards: Vec<ShardEntry>,
    rows_written: u64,
}

impl ShardWriter {
    /// Starts a writer for a dataset of `kind` in `dir` (created if needed). See the builder
    /// for the settings.
    pub fn builder(
        dir: impl Into<PathBuf>,
        kind: DatasetKind,
        tokenizer: TokenizerSpec,
    ) -> ShardWriterBuilder {
        ShardWriterBuilder {
            dir: dir.into(),
            kind,
            tokenizer,
            max_shard_tokens: ShardWriterBuilder::DEFAULT_MAX_SHARD_TOKENS,
            config: serde_json::Value::Null,
            overwrite: false,
        }
    }

    pub fn kind(&self) -> DatasetKind {
        self.kind
    }

    pub fn token_dtype(&self) -> TokenDtype {
        self.dtype
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one row after checking it (kind, token range, BOS first and EOS last, mask
    /// shape). A rejected row leaves the writer usable.
    pub fn write<'a>(&mut self, row: impl Into<Row<'a>>) -> Result<()> {
        let row = row.into();
        if row.kind() != self.kind {
            return Err(FormatError::Misuse(format!(
                "a {} row cannot go into a {} dataset",
                row.kind(),
                self.kind
            )));
        }
        self.check_row(&row)?;
        self.buffer.push(&row);
        self.rows_written += 1;
        if self.buffer.tokens >= self.max_shard_tokens {
            self.flush_shard()?;
        }
        Ok(())
    }

    fn check_row(&self, row: &Row<'_>) -> Result<()> {
        let location = format!("row {} (id {:?})", self.rows_written, row.id());
        let invalid = |message: String| FormatError::InvalidRow {
            location: location.clone(),
            message,
        };
        let columns: Vec<(&str, &[u32])> = match row {
            Row::Pretrain(d) => {
                let eos = self.eos.unwrap_or(u32::MAX);
                if d.tokens.last() != Some(&eos) {
                    return Err(invalid(format!(
                        "document must end with the eos id {eos} (got {} tokens, last {:?})",
                        d.tokens.len(),
                        d.tokens.last()
                    )));
                }
                vec![("tokens", d.tokens)]
            }
            Row::Sft(e) => {
                if e.input_ids.len() != e.loss_mask.len() {
                    return Err(invalid(format!(
                        "input_ids has {} ids but loss_mask has {} entries",
                        e.input_ids.len(),
                        e.loss_mask.len()
                    )));
                }
                if let Some(pos) = e.loss_mask.iter().position(|&m| m > 1) {
                    return Err(invalid(format!(
                        "loss_mask[{pos}] is {}, expected 0 or 1",
                        e.loss_mask[pos]
                    )));
                }
                if !e.loss_mask.contains(&1) {
                    return Err(invalid(
                        "loss_mask has no supervised token; the example would train on nothing"
                            .into(),
                    ));
                }
                vec![("input_ids", e.input_ids)]
            }
            Row::Preference(p) => {
                if p.chosen_ids.is_empty() || p.rejected_ids.is_empty() {
                    return Err(invalid(
                        "chosen_ids and rejected_ids must not be empty".into(),
                    ));
                }
                vec![
                    ("prompt_ids", p.prompt_ids),
                    ("chosen_ids", p.chosen_ids),
                    ("rejected_ids", p.rejected_ids),
                ]
            }
            Row::Unpaired(u) => {
                if u.completion_ids.is_empty() {
                    return Err(invalid("completion_ids must not be empty".into()));
                }
                vec![
                    ("prompt_ids", u.prompt_ids),
                    ("completion_ids", u.completion_ids),
                ]
            }
        };
        if let Some(bos) = self.bos {
            // The first column is where a row starts: tokens, input_ids or prompt_ids.
            let (column, ids) = columns[0];
            if ids.first() != Some(&bos) {
                return Err(invalid(format!(
                    "{column} must start with the bos id {bos} (the tokenizer has a BOS token), got {:?}",
                    ids.first()
                )));
            }
        }
        for (column, ids) in columns {
            if let Some(&token) = ids.iter().find(|&&t| t >= self.tokenizer.vocab_size) {
                return Err(FormatError::TokenOutOfRange {
                    location,
                    column: column.into(),
                    token,
                    vocab_size: self.tokenizer.vocab_size,
                });
            }
            if self.buffer.max_values() + ids.len() > i32::MAX as usize {
                return Err(invalid(format!(
                    "{column} has {} ids, more than one shard can hold",
                    ids.len()
                )));
            }
        }
        Ok(())
    }

    /// Writes the buffered rows as the next shard: temp file, fsync, rename.
    fn flush_shard(&mut self) -> Result<()> {
        if self.buffer.rows() == 0 {
            return Ok(());
        }
        let next = ShardBuffer::new(self.kind, self.dtype, self.max_shard_tokens);
        let buffer = std::mem::replace(&mut self.buffer, next);
        let (rows, tokens) = (buffer.rows() as u64, buffer.tokens);
        let batch = buffer.into_batch(self.kind, self.dtype, &self.schema)?;
        let name = shard_file_name(self.shards.len());
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let dest = self.dir.join(&name);

        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let sink = BufWriter::with_capacity(1 << 20, HashingWriter::new(file));
        let options = IpcWriteOptions::default();
        let mut writer = FileWriter::try_new_with_options(sink, &self.schema, options)
            .map_err(arrow_err(&tmp))?;
        writer.write(&batch).map_err(arrow_err(&tmp))?;
        writer.finish().map_err(arrow_err(&tmp))?;
        let sink = writer.into_inner().map_err(arrow_err(&tmp))?;
        let hashing = sink.into_inner().map_err(|e| FormatError::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        let (file, bytes, sha256) = hashing.finish();
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        self.shards.push(ShardEntry {
            file: name,
            rows,
            tokens,
            bytes,
            sha256,
        });
        Ok(())
    }

    /// Flushes the last shard and writes `manifest.json` atomically. Only after this returns
    /// `Ok` is the directory a dataset.
    pub fn finish(mut self) -> Result<Manifest> {
        self.flush_shard()?;
        sync_dir(&self.dir)?;
        let totals = Totals::of(&self.shards);
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            kind: self.kind,
            tokenizer: self.tokenizer.clone(),
            token_dtype: self.dtype,
            shards: std::mem::take(&mut self.shards),
            totals,
            config: std::mem::take(&mut self.config),
            created_at: now_rfc3339(),
        };
        manifest.write_atomic(&self.dir)?;
        Ok(manifest)
    }
}

/// A `Write` adapter that hashes and counts what goes through it, so a shard's sha256 costs
/// no second read.
struct HashingWriter {
    inner: File,
    hasher: Sha256,
    bytes: u64,
}

impl HashingWriter {
    fn new(inner: File) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (File, u64, String) {
        (self.inner, self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
