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

/// Shard file name for shard `i` of part `part` of a dataset written in parts
/// ([`ShardWriterBuilder::part`]).
pub fn part_shard_file_name(part: usize, i: usize) -> String {
    format!("shard-{part:05}-{i:05}.arrow")
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
    part: Option<usize>,
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

    /// Writes only part `part` of a dataset whose parts are written apart, by other writers
    /// (on other machines, at other times): its shards are `shard-PPPPP-IIIII.arrow`
    /// ([`part_shard_file_name`]); the remains of an earlier attempt at the same part are
    /// removed first (a writer killed mid-part is simply run again), and nothing else in the
    /// directory is touched: no tokenizer copy and no manifest. [`ShardWriter::finish_part`]
    /// returns the part's shard entries, and [`write_parts_manifest`] writes the manifest
    /// over every part's once all are done. A caller rewriting a dataset removes its old
    /// manifest before the parts start (it names shards a part is about to replace).
    pub fn part(mut self, part: usize) -> Self {
        self.part = Some(part);
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
        let tokenizer = match self.part {
            Some(part) => {
                prepare_part(&self.dir, part)?;
                tokenizer_info(self.tokenizer, &self.dir, false)?
            }
            None => {
                prepare_dataset_dir(&self.dir, self.overwrite)?;
                tokenizer_info(self.tokenizer, &self.dir, true)?
            }
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
            part: self.part,
        })
    }
}

/// The tokenizer as a manifest records it, copied into `dir` when `copy` (a part writer
/// leaves that to [`write_parts_manifest`]; the digest is the same either way).
fn tokenizer_info(spec: TokenizerSpec, dir: &Path, copy: bool) -> Result<TokenizerInfo> {
    let hashed = if copy {
        let dest = dir.join(TOKENIZER_FILE);
        fs::copy(&spec.path, &dest).map_err(io_err(&spec.path))?;
        dest
    } else {
        spec.path.clone()
    };
    Ok(TokenizerInfo {
        file: TOKENIZER_FILE.to_string(),
        sha256: sha256_file(&hashed)?,
        vocab_size: spec.vocab_size,
        special_tokens: spec.special_tokens,
    })
}

/// Removes what an earlier attempt at part `part` left in `dir` (its shards and temp files).
fn prepare_part(dir: &Path, part: usize) -> Result<()> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let prefix = format!("shard-{part:05}-");
    let mut removed = false;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let shard = name.strip_prefix('.').unwrap_or(&name);
        if shard.starts_with(&prefix) && (name.ends_with(".arrow") || name.ends_with(".tmp")) {
            fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Writes `dir/manifest.json` for a dataset written in parts ([`ShardWriterBuilder::part`]):
/// `shards` are every part's entries, in the order readers are to see them; the tokenizer is
/// copied in. Like [`ShardWriter::finish`], only after this returns `Ok` is the directory a
/// dataset. The shards themselves are not read again (they may be in object storage by
/// now); their entries carry their sizes and digests, which readers check.
pub fn write_parts_manifest(
    dir: &Path,
    kind: DatasetKind,
    tokenizer: TokenizerSpec,
    config: serde_json::Value,
    shards: Vec<ShardEntry>,
) -> Result<Manifest> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = shards.iter().find(|s| !seen.insert(s.file.as_str())) {
        return Err(FormatError::Misuse(format!(
            "shard {} is listed twice: two parts wrote it",
            twice.file
        )));
    }
    let tokenizer = tokenizer_info(tokenizer, dir, true)?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        kind,
        token_dtype: kind.token_dtype(tokenizer.vocab_size),
        tokenizer,
        totals: Totals::of(&shards),
        shards,
        config,
        created_at: now_rfc3339(),
    };
    manifest.check().map_err(|message| FormatError::Manifest {
        path: dir.join(MANIFEST_FILE),
        message,
    })?;
    manifest.write_atomic(dir)?;
    Ok(manifest)
}

/// Refuses to clobber a dataset unless asked; with `overwrite`, removes the old manifest
/// first, then the old shards. What a writer of a whole dataset does first; a dataset
/// written in parts calls it once, before its parts start.
pub fn prepare_dataset_dir(dir: &Path, overwrite: bool) -> Result<()> {
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
    /// The part this writer writes, for a dataset written in parts.
    part: Option<usize>,
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
            part: None,
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
        let name = match self.part {
            Some(part) => part_shard_file_name(part, self.shards.len()),
            None => shard_file_name(self.shards.len()),
        };
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
        if let Some(part) = self.part {
            return Err(FormatError::Misuse(format!(
                "part {part} of a dataset written in parts ends with finish_part; write_parts_manifest writes the manifest"
            )));
        }
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

impl ShardWriter {
    /// Flushes the last shard of a part ([`ShardWriterBuilder::part`]) and returns its
    /// shards' entries, for [`write_parts_manifest`]. Every shard is in place (renamed,
    /// synced) when this returns.
    pub fn finish_part(mut self) -> Result<Vec<ShardEntry>> {
        if self.part.is_none() {
            return Err(FormatError::Misuse(
                "finish_part is for a writer of one part (ShardWriterBuilder::part); this one ends with finish".into(),
            ));
        }
        self.flush_shard()?;
        sync_dir(&self.dir)?;
        Ok(std::mem::take(&mut self.shards))
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
