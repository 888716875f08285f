//! `Dataset::open` and `Shard`: check a dataset directory against its manifest and read its
//! shards through a memory map. Opening touches only the manifest, file metadata and each
//! shard's Arrow footer, so a 10 GB dataset opens without reading 10 GB; token columns are
//! handed out as slices that point into the map.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt8Type, UInt16Type, UInt32Type};
use arrow_array::{Array, BooleanArray, ListArray, RecordBatch, StringArray};
use arrow_buffer::Buffer;
use arrow_ipc::convert::try_fb_to_schema;
use arrow_ipc::reader::{FileDecoder, read_footer_length};
use arrow_schema::{DataType, SchemaRef};
use memmap2::Mmap;

use crate::error::{FormatError, Result, arrow_err, io_err};
use crate::manifest::{Manifest, ShardEntry, sha256_file};
use crate::schema::{DatasetKind, TokenDtype};

/// An opened dataset directory whose manifest and shard files have been checked.
#[derive(Debug, Clone)]
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
}

impl Dataset {
    /// Opens `dir`: reads and checks the manifest, checks the tokenizer file against its
    /// sha256 (a few MB at most: ids are meaningless with another tokenizer), then checks that
    /// every shard it names exists with the recorded size. Reads no shard data.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = Manifest::load(&dir)?;
        let dataset = Self { dir, manifest };
        let tokenizer = dataset.tokenizer_path();
        let actual = sha256_file(&tokenizer)?;
        if actual != dataset.manifest.tokenizer.sha256 {
            return Err(FormatError::ChecksumMismatch {
                path: tokenizer,
                expected: dataset.manifest.tokenizer.sha256.clone(),
                actual,
            });
        }
        for entry in &dataset.manifest.shards {
            let path = dataset.dir.join(&entry.file);
            let meta = match fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(FormatError::MissingShard { path });
                }
                Err(e) => return Err(FormatError::Io { path, source: e }),
            };
            if meta.len() != entry.bytes {
                return Err(FormatError::SizeMismatch {
                    path,
                    expected: entry.bytes,
                    actual: meta.len(),
                });
            }
        }
        Ok(dataset)
    }

    /// Like [`Dataset::open`], and fails unless the dataset is of `kind`.
    pub fn open_kind(dir: impl AsRef<Path>, kind: DatasetKind) -> Result<Self> {
        let dataset = Self::open(dir)?;
        if dataset.kind() != kind {
            return Err(FormatError::KindMismatch {
                path: dataset.dir.join(crate::manifest::MANIFEST_FILE),
                expected: kind.to_string(),
                found: dataset.kind().to_string(),
            });
        }
        Ok(dataset)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn kind(&self) -> DatasetKind {
        self.manifest.kind
    }

    pub fn token_dtype(&self) -> TokenDtype {
        self.manifest.token_dtype
    }

    pub fn num_shards(&self) -> usize {
        self.manifest.shards.len()
    }

    /// Path of the tokenizer file recorded in the manifest.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.tokenizer.file)
    }

    /// Memory-maps shard `index` and checks its schema and row/token counts.
    pub fn shard(&self, index: usize) -> Result<Shard> {
        let entry = self.manifest.shards.get(index).ok_or_else(|| {
            FormatError::Misuse(format!(
                "{}: shard index {index} out of range ({} shards)",
                self.dir.display(),
                self.num_shards()
            ))
        })?;
        Shard::open(&self.dir, entry, self.kind(), self.token_dtype())
    }

    /// Hashes every shard and the tokenizer file and compares with the manifest.
    pub fn verify_checksums(&self) -> Result<()> {
        let files = self
            .manifest
            .shards
            .iter()
            .map(|s| (s.file.as_str(), s.sha256.as_str()))
            .chain([(
                self.manifest.tokenizer.file.as_str(),
                self.manifest.tokenizer.sha256.as_str(),
            )]);
        for (file, expected) in files {
            let path = self.dir.join(file);
            let actual = sha256_file(&path)?;
            if actual != expected {
                return Err(FormatError::ChecksumMismatch {
                    path,
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Reads every token column of every shard and checks each id against the vocabulary,
    /// and, when the tokenizer has a BOS token, that every row starts with it.
    pub fn verify_tokens(&self) -> Result<()> {
        let vocab_size = self.manifest.tokenizer.vocab_size;
        let bos = self.manifest.tokenizer.bos();
        for index in 0..self.num_shards() {
            let shard = self.shard(index)?;
            for (b, batch) in shard.batches().iter().enumerate() {
                if let Some(bos) = bos {
                    let column = self.kind().token_columns()[0];
                    let tokens = batch.tokens(column)?;
                    if let Some(row) = (0..tokens.len()).find(|&i| tokens.first(i) != Some(bos)) {
                        return Err(FormatError::InvalidRow {
                            location: format!(
                                "{} (record batch {b}, row {row})",
                                shard.path().display()
                            ),
                            message: format!(
                                "{column} does not start with the bos id {bos} the manifest's tokenizer records"
                            ),
                        });
                    }
                }
                for &column in self.kind().token_columns() {
                    let max = match batch.tokens(column)? {
                        Tokens::U16(list) => list.values().iter().copied().map(u32::from).max(),
                        Tokens::U32(list) => list.values().iter().copied().max(),
                    };
                    if let Some(token) = max.filter(|&t| t >= vocab_size) {
                        return Err(FormatError::TokenOutOfRange {
                            location: format!("{} (record batch {b})", shard.path().display()),
                            column: column.into(),
                            token,
                            vocab_size,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// A memory-mapped shard. Its record batches borrow their buffers from the map.
#[derive(Debug)]
pub struct Shard {
    path: PathBuf,
    map: Arc<Mmap>,
    schema: SchemaRef,
    batches: Vec<ShardBatch>,
}

impl Shard {
    fn open(dir: &Path, entry: &ShardEntry, kind: DatasetKind, dtype: TokenDtype) -> Result<Self> {
        let path = dir.join(&entry.file);
        let file = File::open(&path).map_err(io_err(&path))?;
        // SAFETY: shards are written once and renamed into place; nothing in jielong writes to
        // a shard after its manifest exists. Another process truncating the file under us is
        // outside the contract (as for every memory-mapped reader).
        let map = unsafe { Mmap::map(&file) }.map_err(io_err(&path))?;
        let map = Arc::new(map);
        let (schema, batches) = decode_ipc_file(&path, &map)?;

        let expected = kind.schema(dtype);
        let mismatch = |message: String| FormatError::SchemaMismatch {
            path: path.clone(),
            kind: kind.to_string(),
            message,
        };
        if schema.fields().len() != expected.fields().len() {
            let names = |s: &SchemaRef| {
                s.fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(mismatch(format!(
                "columns [{}], expected [{}]",
                names(&schema),
                names(&expected)
            )));
        }
        for (found, want) in schema.fields().iter().zip(expected.fields()) {
            if found.name() != want.name() || found.data_type() != want.data_type() {
                return Err(mismatch(format!(
                    "column `{}: {}` where `{}: {}` was expected",
                    found.name(),
                    found.data_type(),
                    want.name(),
                    want.data_type()
                )));
            }
        }

        let batches: Vec<ShardBatch> = batches
            .into_iter()
            .map(|batch| ShardBatch { batch, kind })
            .collect();
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let mut tokens = 0u64;
        for batch in &batches {
            for &column in kind.token_columns() {
                tokens += batch.tokens(column)?.values_len() as u64;
            }
        }
        if rows != entry.rows || tokens != entry.tokens {
            return Err(FormatError::CountMismatch {
                path,
                rows: entry.rows,
                tokens: entry.tokens,
                actual_rows: rows,
                actual_tokens: tokens,
            });
        }
        Ok(Self {
            path,
            map,
            schema,
            batches,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The whole mapped file; token slices handed out by this shard point inside it.
    pub fn mapped_bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn batches(&self) -> &[ShardBatch] {
        &self.batches
    }

    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(ShardBatch::num_rows).sum()
    }
}

/// Decodes an Arrow IPC file held in `map` without copying its buffers.
fn decode_ipc_file(path: &Path, map: &Arc<Mmap>) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let truncated = |what: &str| FormatError::Arrow {
        path: path.to_path_buf(),
        source: arrow_schema::ArrowError::IpcError(format!(
            "{what}: the file is truncated or not an Arrow IPC file"
        )),
    };
    let len = map.len();
    if len < 10 + 8 || &map[..6] != b"ARROW1" {
        return Err(truncated("missing the ARROW1 header"));
    }
    let mut trailer = [0u8; 10];
    trailer.copy_from_slice(&map[len - 10..]);
    let footer_len = read_footer_length(trailer).map_err(|_| truncated("missing the footer"))?;
    if footer_len + 10 > len {
        return Err(truncated("footer length exceeds the file"));
    }
    // SAFETY: the pointer and length describe the live map, which the buffer keeps alive
    // through its `Arc<Mmap>` owner.
    let buffer = unsafe {
        let ptr = NonNull::new(map.as_ptr() as *mut u8).ok_or_else(|| truncated("empty map"))?;
        Buffer::from_custom_allocation(ptr, len, map.clone())
    };
    let footer_start = len - 10 - footer_len;
    let footer = arrow_ipc::root_as_footer(&buffer[footer_start..len - 10])
        .map_err(|e| truncated(&format!("unreadable footer ({e})")))?;
    let fb_schema = footer
        .schema()
        .ok_or_else(|| truncated("footer without schema"))?;
    let schema = Arc::new(try_fb_to_schema(fb_schema).map_err(arrow_err(path))?);
    let mut decoder =
        FileDecoder::new(schema.clone(), footer.version()).with_require_alignment(true);

    let block_slice = |block: &arrow_ipc::Block| -> Result<Buffer> {
        let start =
            usize::try_from(block.offset()).map_err(|_| truncated("negative block offset"))?;
        let size = block.metaDataLength() as usize + block.bodyLength() as usize;
        if start + size > footer_start {
            return Err(truncated("record batch runs past the footer"));
        }
        Ok(buffer.slice_with_length(start, size))
    };
    for block in footer.dictionaries().iter().flatten() {
        decoder
            .read_dictionary(block, &block_slice(block)?)
            .map_err(arrow_err(path))?;
    }
    let mut batches = Vec::new();
    for block in footer.recordBatches().iter().flatten() {
        if let Some(batch) = decoder
            .read_record_batch(block, &block_slice(block)?)
            .map_err(arrow_err(path))?
        {
            batches.push(batch);
        }
    }
    Ok((schema, batches))
}

/// One record batch of a shard with typed, zero-copy column access.
#[derive(Debug)]
pub struct ShardBatch {
    batch: RecordBatch,
    kind: DatasetKind,
}

impl ShardBatch {
    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn record_batch(&self) -> &RecordBatch {
        &self.batch
    }

    fn column(&self, name: &str) -> Result<&dyn Array> {
        self.batch
            .column_by_name(name)
            .map(|c| c.as_ref())
            .ok_or_else(|| {
                FormatError::Misuse(format!("a {} shard has no column `{name}`", self.kind))
            })
    }

    fn list(&self, name: &str) -> Result<&ListArray> {
        self.column(name)?
            .as_list_opt::<i32>()
            .ok_or_else(|| FormatError::Misuse(format!("column `{name}` is not a list")))
    }

    /// A string column (`doc_id`, `example_id`, `pair_id`, `source_record`) as `&str`s.
    /// For pretrain shards, `source` is a dictionary: use [`ShardBatch::sources`].
    pub fn strings(&self, name: &str) -> Result<&StringArray> {
        self.column(name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| FormatError::Misuse(format!("column `{name}` is not Utf8")))
    }

    /// The `source` of pretrain row `i`, resolved through its dictionary.
    pub fn source(&self, i: usize) -> Result<&str> {
        let dict = self
            .column("source")?
            .as_dictionary_opt::<arrow_array::types::Int32Type>()
            .ok_or_else(|| FormatError::Misuse("column `source` is not a dictionary".into()))?;
        let values = dict
            .values()
            .as_string_opt::<i32>()
            .ok_or_else(|| FormatError::Misuse("`source` dictionary is not Utf8".into()))?;
        let key = dict.keys().value(i);
        Ok(values.value(key as usize))
    }

    /// A token-id list column, `u16` or `u32` as stored.
    pub fn tokens(&self, name: &str) -> Result<Tokens<'_>> {
        let list = self.list(name)?;
        let offsets: &[i32] = list.value_offsets();
        let values = list.values();
        match values.data_type() {
            DataType::UInt16 => Ok(Tokens::U16(ListView {
                offsets,
                values: values.as_primitive::<UInt16Type>().values(),
            })),
            DataType::UInt32 => Ok(Tokens::U32(ListView {
                offsets,
                values: values.as_primitive::<UInt32Type>().values(),
            })),
            other => Err(FormatError::Misuse(format!(
                "column `{name}` holds {other}, not token ids"
            ))),
        }
    }

    /// A `u32` list column (`input_ids`, `prompt_ids`, ...).
    pub fn u32_lists(&self, name: &str) -> Result<ListView<'_, u32>> {
        match self.tokens(name)? {
            Tokens::U32(view) => Ok(view),
            Tokens::U16(_) => Err(FormatError::Misuse(format!(
                "column `{name}` holds u16 ids; use tokens()"
            ))),
        }
    }

    /// The unpaired `label` column (true: thumbs up).
    pub fn labels(&self) -> Result<&BooleanArray> {
        self.column("label")?
            .as_boolean_opt()
            .ok_or_else(|| FormatError::Misuse("`label` is not Boolean".into()))
    }

    /// The SFT `loss_mask` column.
    pub fn loss_mask(&self) -> Result<ListView<'_, u8>> {
        let list = self.list("loss_mask")?;
        let values = list
            .values()
            .as_primitive_opt::<UInt8Type>()
            .ok_or_else(|| FormatError::Misuse("`loss_mask` is not UInt8".into()))?;
        Ok(ListView {
            offsets: list.value_offsets(),
            values: values.values(),
        })
    }
}

/// A list column seen as one flat value slice plus Arrow offsets: row `i` is
/// `values[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, Copy)]
pub struct ListView<'a, T> {
    offsets: &'a [i32],
    values: &'a [T],
}

impl<'a, T> ListView<'a, T> {
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`'s values.
    pub fn get(&self, i: usize) -> &'a [T] {
        &self.values[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// The offsets (length `len() + 1`).
    pub fn offsets(&self) -> &'a [i32] {
        self.offsets
    }

    /// Every row's values back to back, as stored in the file.
    pub fn values(&self) -> &'a [T] {
        let start = self.offsets.first().copied().unwrap_or(0) as usize;
        let end = self.offsets.last().copied().unwrap_or(0) as usize;
        &self.values[start..end]
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [T]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// Token ids at their stored width.
#[derive(Debug, Clone, Copy)]
pub enum Tokens<'a> {
    U16(ListView<'a, u16>),
    U32(ListView<'a, u32>),
}

impl Tokens<'_> {
    pub fn len(&self) -> usize {
        match self {
            Tokens::U16(v) => v.len(),
            Tokens::U32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of token ids in the column.
    pub fn values_len(&self) -> usize {
        match self {
            Tokens::U16(v) => v.values().len(),
            Tokens::U32(v) => v.values().len(),
        }
    }

    /// The first id of row `i`, if the row is not empty.
    pub fn first(&self, i: usize) -> Option<u32> {
        match self {
            Tokens::U16(v) => v.get(i).first().map(|&t| u32::from(t)),
            Tokens::U32(v) => v.get(i).first().copied(),
        }
    }

    /// Row `i` widened to `u32` (copies; use the variants for zero-copy access).
    pub fn row_u32(&self, i: usize) -> Vec<u32> {
        match self {
            Tokens::U16(v) => v.get(i).iter().copied().map(u32::from).collect(),
            Tokens::U32(v) => v.get(i).to_vec(),
        }
    }
}
