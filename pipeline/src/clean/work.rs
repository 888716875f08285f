//! The per-input intermediate files of a run, under `OUT/work/`:
//! - `input-NNNNN.rows.jsonl.zst`: one row per input document (scores, drop reason)
//! - `input-NNNNN.kept.jsonl`: the documents that passed the filters, with text (not
//!   compressed: it is read once, right after; compressing and decompressing it took close
//!   to a tenth of a filter-only run's CPU time in perf); without dedup they go straight to
//!   `kept/part-NNNNN.jsonl.zst` instead (see `run`)
//! - `input-NNNNN.keys.bin`: dedup keys of the kept documents, in the same order
//! - `input-NNNNN.done.json`: written last; its presence means the input is finished
//!
//! A killed run resumes by skipping inputs whose done marker matches the config.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The layout of the work files (the per-input files above, a split run's packs and dedup
/// files): bumped whenever one changes, so that a one-process run resumed by a build that
/// writes another layout redoes its inputs (it is in their done records' fingerprint) and a
/// split run's stage refuses the markers of the stage before (they record it) instead of
/// misreading its files. 2: kept documents uncompressed; 3: split keys of 12 bytes, the
/// similarity check's sectioned files, the kept work file's digest.
pub const WORK_FORMAT: u32 = 3;

/// What the docs table records about one input document (dedup columns are added later).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocRow {
    pub id: String,
    pub url: Option<String>,
    pub source: String,
    pub lang: Option<String>,
    pub lang_score: Option<f64>,
    /// Aligned with `filters::score_names()`; `None` where a filter did not run.
    pub scores: Vec<Option<f64>>,
    pub dropped_by: Option<String>,
    pub drop_reason: Option<String>,
    /// Characters after extraction and normalization.
    pub chars: u64,
    pub pii_redactions: u64,
}

/// A document that passed the filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptDoc {
    pub id: String,
    pub url: Option<String>,
    pub source: String,
    pub lang: Option<String>,
    pub text: String,
}

/// Dedup keys of one kept document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocKeys {
    pub exact: u64,
    pub bands: Vec<u64>,
    /// The MinHash check signature, 16 bits a hash (empty without MinHash).
    pub signature: Vec<u16>,
}

/// The done marker of one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputDone {
    pub input: String,
    pub input_bytes: u64,
    pub fingerprint: String,
    pub docs: u64,
    pub kept: u64,
    pub skipped_records: u64,
    /// HTML pages whose markup the extractor repaired (counted here, not logged).
    #[serde(default)]
    pub odd_markup_pages: u64,
    pub issues: Vec<String>,
    pub text_bytes_in: u64,
    pub text_bytes_kept: u64,
    /// xxh3 of the kept documents' work file (its lines, uncompressed, in hex): stage 3
    /// copies the surviving lines without parsing them, and checks this instead (absent in
    /// records of earlier builds).
    #[serde(default)]
    pub kept_digest: Option<String>,
    pub seconds: f64,
    /// Seconds spent in each stage, summed over threads (CPU time on an otherwise idle
    /// machine; more when threads wait for a core): the document stages
    /// (`process::STAGES`), `read` (reading and decoding the input) and `write_work`
    /// (serializing and compressing the work files).
    #[serde(default)]
    pub stage_seconds: std::collections::BTreeMap<String, f64>,
}

/// Paths of input `index`'s files.
#[derive(Debug, Clone)]
pub struct WorkFiles {
    pub rows: PathBuf,
    pub kept: PathBuf,
    pub keys: PathBuf,
    pub done: PathBuf,
}

impl WorkFiles {
    pub fn new(work: &Path, index: usize) -> Self {
        let stem = work.join(format!("input-{index:05}"));
        let with = |ext: &str| PathBuf::from(format!("{}.{ext}", stem.display()));
        Self {
            rows: with("rows.jsonl.zst"),
            kept: with("kept.jsonl"),
            keys: with("keys.bin"),
            done: with("done.json"),
        }
    }

    /// The done marker, if it exists and was made with this fingerprint for this input (read
    /// at `input`, of `size()` bytes: asked only when there is a marker).
    pub fn finished(
        &self,
        input: &Path,
        size: impl FnOnce() -> Result<Option<u64>>,
        fingerprint: &str,
    ) -> Result<Option<InputDone>> {
        let Ok(text) = std::fs::read_to_string(&self.done) else {
            return Ok(None);
        };
        let Ok(done) = serde_json::from_str::<InputDone>(&text) else {
            return Ok(None);
        };
        if done.fingerprint != fingerprint || done.input != input.display().to_string() {
            return Ok(None);
        }
        Ok((size()? == Some(done.input_bytes)).then_some(done))
    }
}

/// A JSON-lines writer: zstd-compressed when the path ends in `.zst`, plain otherwise.
pub struct JsonlWriter {
    path: PathBuf,
    sink: Sink,
    /// The line being serialized: a line goes to the sink in one write, not in the many
    /// small ones of the serializer, each a call into zstd.
    line: Vec<u8>,
    /// xxh3 of the lines written (uncompressed), when made by [`JsonlWriter::create_hashed`].
    digest: Option<xxhash_rust::xxh3::Xxh3>,
}

enum Sink {
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
    Plain(BufWriter<File>),
}

impl Sink {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Zstd(w) => w,
            Sink::Plain(w) => w,
        }
    }
}

impl std::fmt::Debug for JsonlWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlWriter")
            .field("path", &self.path)
            .finish()
    }
}

impl JsonlWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let file = BufWriter::with_capacity(1 << 20, file);
        let sink = if path.extension().is_some_and(|e| e == "zst") {
            // Level 1, zstd's fastest regular level: compression is a large share of a
            // run's CPU time, and the size gained by level 3 is small.
            Sink::Zstd(zstd::stream::write::Encoder::new(file, 1)?)
        } else {
            Sink::Plain(file)
        };
        Ok(Self {
            path: path.to_path_buf(),
            sink,
            line: Vec::new(),
            digest: None,
        })
    }

    /// Like [`JsonlWriter::create`], also hashing the lines for [`JsonlWriter::finish`].
    pub fn create_hashed(path: &Path) -> Result<Self> {
        let mut writer = Self::create(path)?;
        writer.digest = Some(xxhash_rust::xxh3::Xxh3::new());
        Ok(writer)
    }

    pub fn write<T: Serialize>(&mut self, value: &T) -> Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                self.line.push(b'\n');
                if let Some(d) = &mut self.digest {
                    d.update(&self.line);
                }
                Ok(self.sink.writer().write_all(&self.line)?)
            })
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Writes lines that are already JSON, each ending in a newline.
    pub fn write_lines(&mut self, lines: &[u8]) -> Result<()> {
        if let Some(d) = &mut self.digest {
            d.update(lines);
        }
        self.sink
            .writer()
            .write_all(lines)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Flushes and syncs the file; returns, when made by [`JsonlWriter::create_hashed`], the
    /// xxh3 of the lines written (as a reader of the file's lines sees them, before
    /// compression).
    pub fn finish(self) -> Result<Option<u64>> {
        let digest = self.digest.as_ref().map(|d| d.digest());
        let mut out = match self.sink {
            Sink::Zstd(w) => w.finish()?,
            Sink::Plain(w) => w,
        };
        out.flush()
            .with_context(|| format!("writing {}", self.path.display()))?;
        out.get_ref().sync_all()?;
        Ok(digest)
    }
}

/// Iterates a zstd JSON-lines file.
pub fn read_jsonl_zst<T: for<'de> Deserialize<'de>>(
    path: &Path,
) -> Result<impl Iterator<Item = Result<T>>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = BufReader::new(zstd::stream::read::Decoder::new(file)?);
    let path = path.to_path_buf();
    Ok(reader.lines().map(move |line| {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&line).with_context(|| format!("parsing a line of {}", path.display()))
    }))
}

/// A reader of a JSON-lines file (zstd-compressed when its name ends in `.zst`), for its
/// lines unparsed.
pub fn open_lines(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(if path.extension().is_some_and(|e| e == "zst") {
        Box::new(BufReader::new(zstd::stream::read::Decoder::new(file)?))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, file))
    })
}

/// Writes dedup keys: exact key, band count, band keys, signature length, signature
/// (little-endian).
pub fn write_keys(out: &mut impl Write, keys: &DocKeys) -> Result<()> {
    out.write_all(&keys.exact.to_le_bytes())?;
    out.write_all(&(keys.bands.len() as u32).to_le_bytes())?;
    for band in &keys.bands {
        out.write_all(&band.to_le_bytes())?;
    }
    out.write_all(&(keys.signature.len() as u32).to_le_bytes())?;
    for v in &keys.signature {
        out.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

/// Reads every key record of a keys file.
pub fn read_keys(path: &Path) -> Result<Vec<DocKeys>> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    let mut keys = Vec::new();
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<&[u8]> {
        let slice = bytes
            .get(*at..*at + n)
            .with_context(|| format!("{} is truncated at byte {at}", path.display()))?;
        *at += n;
        Ok(slice)
    };
    while at < bytes.len() {
        let exact = u64::from_le_bytes(take(&mut at, 8)?.try_into()?);
        let n = u32::from_le_bytes(take(&mut at, 4)?.try_into()?) as usize;
        let mut bands = Vec::with_capacity(n);
        for _ in 0..n {
            bands.push(u64::from_le_bytes(take(&mut at, 8)?.try_into()?));
        }
        let n = u32::from_le_bytes(take(&mut at, 4)?.try_into()?) as usize;
        let mut signature = Vec::with_capacity(n);
        for _ in 0..n {
            signature.push(u16::from_le_bytes(take(&mut at, 2)?.try_into()?));
        }
        keys.push(DocKeys {
            exact,
            bands,
            signature,
        });
    }
    Ok(keys)
}

/// Writes `value` as pretty JSON atomically.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let json = serde_json::to_vec_pretty(value)?;
    format::write_file_atomic(dir, &name, &json)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::{JsonlWriter, KeptDoc};

    /// A line serialized whole and written at once, or many lines at once, compress to the
    /// same bytes as the serializer's many small writes straight into the encoder did (zstd
    /// gathers its input into blocks), and a plain file holds the same lines.
    #[test]
    fn whole_lines_write_the_bytes_of_small_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docs: Vec<KeptDoc> = (0..3000)
            .map(|i| KeptDoc {
                id: format!("doc-{i}"),
                url: (i % 3 == 0).then(|| format!("https://example.com/{i}?q=\"x\"")),
                source: "corpus.jsonl".into(),
                lang: Some("eng".into()),
                text: format!(
                    "line one of {i}\nline \"two\"\t\\ {}\u{1}é中",
                    "word ".repeat(i % 97)
                ),
            })
            .collect();
        for name in ["a.jsonl.zst", "a.jsonl"] {
            let path = dir.path().join(name);
            let mut writer = JsonlWriter::create(&path).expect("create");
            for doc in &docs {
                writer.write(doc).expect("write");
            }
            writer.finish().expect("finish");
            // Stage 3's copy: many whole lines in one write.
            let copied = dir.path().join(format!("copied-{name}"));
            let mut writer = JsonlWriter::create(&copied).expect("create");
            for chunk in docs.chunks(700) {
                let mut lines = Vec::new();
                for doc in chunk {
                    serde_json::to_writer(&mut lines, doc).expect("serialize");
                    lines.push(b'\n');
                }
                writer.write_lines(&lines).expect("write");
            }
            writer.finish().expect("finish");
            let mut old: Vec<u8> = Vec::new();
            if name.ends_with(".zst") {
                let mut encoder = zstd::stream::write::Encoder::new(&mut old, 1).expect("encoder");
                for doc in &docs {
                    serde_json::to_writer(&mut encoder, doc).expect("serialize");
                    encoder.write_all(b"\n").expect("write");
                }
                encoder.finish().expect("finish");
            } else {
                for doc in &docs {
                    serde_json::to_writer(&mut old, doc).expect("serialize");
                    old.write_all(b"\n").expect("write");
                }
            }
            assert_eq!(std::fs::read(&path).expect("read"), old, "{name}");
            assert_eq!(std::fs::read(&copied).expect("read"), old, "{name}");
        }
    }
}
