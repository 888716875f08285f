//! `ShardWriter`: appends rows, rolls to a new `shard-NNNNN.arrow` when a shard reaches its
//! token budget, and writes `manifest.json` only when `finish()` succeeds. Each shard is
//! written under a temporary name, fsynced and renamed, and the manifest comes last, so a
//! crash at any point leaves a directory without a manifest, never one naming a partial shard.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, ArrowPrimitiveType, DictionaryArray, ListArray, PrimitiveArray, RecordBatch,
    StringArray,
};
use arrow_buffer::{ArrowNativeType, OffsetBuffer, ScalarBuffer};
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_schema::SchemaRef;
use sha2::{Digest, Sha256};

use crate::error::{FormatError, Result, arrow_err, io_err};
use crate::manifest::{
    FORMAT_VERSION, MANIFEST_FILE, Manifest, ShardEntry, TokenizerInfo, Totals, now_rfc3339,
    sha256_file, sync_dir,
};
use crate::schema::{DatasetKind, TokenDtype, list_item};

/// The name the writer gives the tokenizer copy inside a dataset.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Shard file name for index `i`.
pub fn shard_file_name(i: usize) -> String {
    format!("shard-{i:05}.arrow")
}

/// A tokenized document for pretraining. `tokens` must end with the tokenizer's `eos` id.
#[derive(Debug, Clone, Copy)]
pub struct PretrainDoc<'a> {
    pub doc_id: &'a str,
    pub source: &'a str,
    pub tokens: &'a [u32],
}

/// A rendered chat example; `loss_mask[i]` is 1 where `input_ids[i]` is trained on.
#[derive(Debug, Clone, Copy)]
pub struct SftExample<'a> {
    pub example_id: &'a str,
    pub input_ids: &'a [u32],
    pub loss_mask: &'a [u8],
    pub source_record: &'a str,
}

/// A prompt with the preferred and the dispreferred continuation.
#[derive(Debug, Clone, Copy)]
pub struct PreferencePair<'a> {
    pub pair_id: &'a str,
    pub prompt_ids: &'a [u32],
    pub chosen_ids: &'a [u32],
    pub rejected_ids: &'a [u32],
    pub source_record: &'a str,
}

/// One row of any dataset kind.
#[derive(Debug, Clone, Copy)]
pub enum Row<'a> {
    Pretrain(PretrainDoc<'a>),
    Sft(SftExample<'a>),
    Preference(PreferencePair<'a>),
}

impl Row<'_> {
    fn kind(&self) -> DatasetKind {
        match self {
            Row::Pretrain(_) => DatasetKind::Pretrain,
            Row::Sft(_) => DatasetKind::Sft,
            Row::Preference(_) => DatasetKind::Preference,
        }
    }

    fn id(&self) -> &str {
        match self {
            Row::Pretrain(d) => d.doc_id,
            Row::Sft(e) => e.example_id,
            Row::Preference(p) => p.pair_id,
        }
    }
}

impl<'a> From<PretrainDoc<'a>> for Row<'a> {
    fn from(d: PretrainDoc<'a>) -> Self {
        Row::Pretrain(d)
    }
}
impl<'a> From<SftExample<'a>> for Row<'a> {
    fn from(e: SftExample<'a>) -> Self {
        Row::Sft(e)
    }
}
impl<'a> From<PreferencePair<'a>> for Row<'a> {
    fn from(p: PreferencePair<'a>) -> Self {
        Row::Preference(p)
    }
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

/// A list column being accumulated: flat values plus Arrow offsets.
#[derive(Debug)]
struct ListColumn<T> {
    values: Vec<T>,
    offsets: Vec<i32>,
}

impl<T: ArrowNativeType> Default for ListColumn<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            offsets: vec![0],
        }
    }
}

impl<T: ArrowNativeType> ListColumn<T> {
    fn push(&mut self, items: &[T]) {
        self.values.extend_from_slice(items);
        // The writer keeps shards under i32::MAX values (checked before push).
        self.offsets.push(self.values.len() as i32);
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn into_array<P>(self) -> ArrayRef
    where
        P: ArrowPrimitiveType<Native = T>,
    {
        let values = PrimitiveArray::<P>::new(ScalarBuffer::from(self.values), None);
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        Arc::new(ListArray::new(
            list_item(P::DATA_TYPE),
            offsets,
            Arc::new(values),
            None,
        ))
    }
}

/// Rows of the shard being built, column by column.
#[derive(Debug, Default)]
struct ShardBuffer {
    ids: Vec<String>,
    sources: Vec<String>,
    lists: [ListColumn<u32>; 3],
    /// Pretraining tokens of a u16 dataset, narrowed as they arrive: half the memory, and no
    /// second copy when the shard is written.
    narrow: Option<ListColumn<u16>>,
    mask: ListColumn<u8>,
    tokens: u64,
}

impl ShardBuffer {
    /// `expected_tokens`: the shard size, so the token buffer is allocated once instead of
    /// growing (and copying) by doubling; capped at 16Mi tokens.
    fn new(kind: DatasetKind, dtype: TokenDtype, expected_tokens: u64) -> Self {
        let capacity = expected_tokens.min(1 << 24) as usize;
        let mut buffer = Self::default();
        if kind == DatasetKind::Pretrain && dtype == TokenDtype::U16 {
            let mut narrow = ListColumn::default();
            narrow.values.reserve(capacity);
            buffer.narrow = Some(narrow);
        } else {
            buffer.lists[0].values.reserve(capacity);
        }
        buffer
    }

    fn rows(&self) -> usize {
        self.ids.len()
    }

    /// Largest list column length, which must stay within i32 offsets.
    fn max_values(&self) -> usize {
        let narrow = self.narrow.as_ref().map_or(0, ListColumn::len);
        self.lists
            .iter()
            .map(ListColumn::len)
            .max()
            .unwrap_or(0)
            .max(narrow)
    }

    fn push(&mut self, row: &Row<'_>) {
        self.ids.push(row.id().to_owned());
        match row {
            Row::Pretrain(d) => {
                self.sources.push(d.source.to_owned());
                match &mut self.narrow {
                    Some(narrow) => {
                        // Ids were checked against a vocab of at most 65536 entries.
                        narrow.values.extend(d.tokens.iter().map(|&t| t as u16));
                        narrow.offsets.push(narrow.values.len() as i32);
                    }
                    None => self.lists[0].push(d.tokens),
                }
                self.tokens += d.tokens.len() as u64;
            }
            Row::Sft(e) => {
                self.sources.push(e.source_record.to_owned());
                self.lists[0].push(e.input_ids);
                self.mask.push(e.loss_mask);
                self.tokens += e.input_ids.len() as u64;
            }
            Row::Preference(p) => {
                self.sources.push(p.source_record.to_owned());
                for (col, ids) in
                    self.lists
                        .iter_mut()
                        .zip([p.prompt_ids, p.chosen_ids, p.rejected_ids])
                {
                    col.push(ids);
                    self.tokens += ids.len() as u64;
                }
            }
        }
    }

    fn into_batch(
        self,
        kind: DatasetKind,
        dtype: TokenDtype,
        schema: &SchemaRef,
    ) -> Result<RecordBatch> {
        use arrow_array::types::{UInt8Type, UInt16Type, UInt32Type};
        let ids: ArrayRef = Arc::new(StringArray::from(self.ids));
        let [first, second, third] = self.lists;
        let columns: Vec<ArrayRef> = match kind {
            DatasetKind::Pretrain => {
                let sources: DictionaryArray<Int32Type> =
                    self.sources.iter().map(String::as_str).collect();
                let tokens = match (dtype, self.narrow) {
                    (TokenDtype::U16, Some(narrow)) => narrow.into_array::<UInt16Type>(),
                    (TokenDtype::U32, None) => first.into_array::<UInt32Type>(),
                    _ => {
                        return Err(FormatError::Misuse(format!(
                            "a {dtype:?} shard buffered in the other width"
                        )));
                    }
                };
                vec![ids, Arc::new(sources), tokens]
            }
            DatasetKind::Sft => vec![
                ids,
                first.into_array::<UInt32Type>(),
                self.mask.into_array::<UInt8Type>(),
                Arc::new(StringArray::from(self.sources)),
            ],
            DatasetKind::Preference => vec![
                ids,
                first.into_array::<UInt32Type>(),
                second.into_array::<UInt32Type>(),
                third.into_array::<UInt32Type>(),
                Arc::new(StringArray::from(self.sources)),
            ],
        };
        RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| FormatError::Misuse(format!("building a {kind} record batch: {e}")))
    }
}

/// Writes a dataset directory: shards, `tokenizer.json` and, on `finish()`, `manifest.json`.
#[derive(Debug)]
pub struct ShardWriter {
    dir: PathBuf,
    kind: DatasetKind,
    dtype: TokenDtype,
    schema: SchemaRef,
    eos: Option<u32>,
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

    /// Appends one row after checking it (kind, token range, EOS, mask shape). A rejected row
    /// leaves the writer usable.
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
        };
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
