//! Streaming readers for the corpora people have: WARC/WET (plain, gzip, multi-member gzip),
//! JSONL (plain, .gz, .zst), Parquet (polars, read in slices), plain text, and directories and
//! globs of them. A reader hands documents and problems to a callback one at a time, so no
//! corpus is ever held in memory; one bad record never stops the file.

mod jsonl;
mod parquet;
mod text;
pub mod warc;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::document::{Document, Location, ReadIssue};

/// What a reader produces, in input order.
#[derive(Debug)]
pub enum ReadEvent {
    Document(Document),
    Issue(ReadIssue),
    /// A record that is fine but holds no text to process (a WARC request, an image).
    Skipped,
}

/// The `[input]` table of a config: what to read and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Files, directories or globs (relative to the working directory).
    pub paths: Vec<String>,
    #[serde(flatten)]
    pub reader: ReaderOptions,
}

/// Input format; `auto` decides from the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    #[default]
    Auto,
    Warc,
    Wet,
    Jsonl,
    Parquet,
    Text,
}

impl InputFormat {
    /// The format a file name implies, or `None` for a file to ignore.
    pub fn detect(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        let base = name
            .strip_suffix(".gz")
            .or_else(|| name.strip_suffix(".zst"))
            .unwrap_or(&name);
        if base.ends_with(".wet") {
            Some(Self::Wet)
        } else if base.ends_with(".warc") || base.ends_with(".arc") {
            Some(Self::Warc)
        } else if base.ends_with(".jsonl") || base.ends_with(".ndjson") || base.ends_with(".json") {
            Some(Self::Jsonl)
        } else if base.ends_with(".parquet") {
            Some(Self::Parquet)
        } else if base.ends_with(".txt") || base.ends_with(".md") || base.ends_with(".text") {
            Some(Self::Text)
        } else {
            None
        }
    }
}

/// How to read the inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReaderOptions {
    pub format: InputFormat,
    /// JSONL / Parquet: the field holding the text.
    pub text_field: String,
    /// JSONL / Parquet: the field holding a document id (the line or row number otherwise).
    pub id_field: Option<String>,
    /// JSONL / Parquet: the field holding the URL, if any.
    pub url_field: Option<String>,
    /// Skip (and report) documents larger than this many bytes.
    pub max_document_bytes: usize,
    /// WARC: what to do with HTML responses. Not a config setting.
    #[serde(skip)]
    pub html: HtmlHandling,
}

/// What a reader does with an HTML page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HtmlHandling {
    /// Extract the main text as the page is read.
    #[default]
    Extract,
    /// Hand out the raw page (`Document::html`): `clean` extracts on its worker pool.
    Defer,
    /// Hand out the decoded page as the text (`pipeline extract` runs the extractor itself,
    /// to explain it).
    Decode,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            format: InputFormat::Auto,
            text_field: "text".into(),
            id_field: Some("id".into()),
            url_field: Some("url".into()),
            max_document_bytes: 16 << 20,
            html: HtmlHandling::Extract,
        }
    }
}

/// Expands paths, directories and globs into a de-duplicated list of input files: in the
/// order the patterns are given, each directory or glob's matches sorted by path. The order
/// fixes the `docs-NNNNN` numbering, so it must not depend on where the files live.
pub fn expand_inputs(patterns: &[String], format: InputFormat) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let remote: Vec<String> = patterns
        .iter()
        .filter(|p| crate::storage::is_remote(p))
        .cloned()
        .collect();
    let mut resolved = if remote.is_empty() {
        Vec::new()
    } else {
        let keep = |key: &str| {
            format != InputFormat::Auto || InputFormat::detect(Path::new(key)).is_some()
        };
        crate::storage::expand_remote_all(&remote, keep)?
    }
    .into_iter();
    for pattern in patterns {
        let path = Path::new(pattern);
        if crate::storage::is_remote(pattern) {
            let found = resolved.next().unwrap_or_default();
            if found.is_empty() {
                bail!("input {pattern:?} matches no object");
            }
            files.extend(found.into_iter().map(PathBuf::from));
        } else if path.is_dir() {
            collect_dir(path, format, &mut files)?;
        } else if path.is_file() {
            files.push(path.to_path_buf());
        } else {
            let mut matches: Vec<PathBuf> = glob::glob(pattern)
                .with_context(|| format!("input pattern {pattern:?} is not a valid glob"))?
                .filter_map(std::result::Result::ok)
                .collect();
            if matches.is_empty() {
                bail!("input {pattern:?} matches no file");
            }
            matches.sort();
            for m in matches {
                if m.is_dir() {
                    collect_dir(&m, format, &mut files)?;
                } else {
                    files.push(m);
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.clone()));
    Ok(files)
}

fn collect_dir(dir: &Path, format: InputFormat, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_dir(&path, format, out)?;
        } else if format != InputFormat::Auto || InputFormat::detect(&path).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

/// Opens a file, transparently decompressing `.gz` (all gzip members) and `.zst`.
pub fn open_decompressed(path: &Path) -> std::io::Result<Box<dyn BufRead + Send>> {
    decompressed(path, Box::new(File::open(path)?))
}

/// The bytes of `raw`, decompressed as `path`'s name says (`.gz`, `.zst` or neither).
fn decompressed(
    path: &Path,
    raw: Box<dyn Read + Send>,
) -> std::io::Result<Box<dyn BufRead + Send>> {
    let name = path.to_string_lossy();
    let reader: Box<dyn Read + Send> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            raw,
        )))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(raw)?)
    } else {
        raw
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, reader)))
}

/// Whether a reader of `options` can take `path` as a stream, read once from start to end
/// (every format but Parquet, whose footer comes first).
pub fn streamable(path: &Path, options: &ReaderOptions) -> bool {
    !matches!(format_of(path, options), Some(InputFormat::Parquet) | None)
}

/// The format `options` read `path` as: the configured one, else the name's.
fn format_of(path: &Path, options: &ReaderOptions) -> Option<InputFormat> {
    match options.format {
        InputFormat::Auto => InputFormat::detect(path),
        f => Some(f),
    }
}

/// Reads one input file, calling `emit` for every document, skipped record and problem.
pub fn read_file(
    path: &Path,
    options: &ReaderOptions,
    emit: &mut dyn FnMut(ReadEvent),
) -> Result<()> {
    read_source(path, None, options, emit)
}

/// [`read_file`] of the file at `path`, or with `stream` of the bytes of a file named `path`
/// as they arrive (see [`streamable`]).
fn read_source(
    path: &Path,
    stream: Option<Box<dyn Read + Send>>,
    options: &ReaderOptions,
    emit: &mut dyn FnMut(ReadEvent),
) -> Result<()> {
    let format = format_of(path, options);
    let streamed = stream.is_some();
    let opened = || match stream {
        Some(raw) => decompressed(path, raw),
        None => open_decompressed(path),
    };
    match format {
        Some(InputFormat::Warc | InputFormat::Wet) => warc::read(path, opened(), options, emit),
        Some(InputFormat::Jsonl) => jsonl::read(path, opened(), options, emit),
        Some(InputFormat::Parquet) if streamed => {
            bail!(
                "{}: a Parquet file cannot be read as a stream",
                path.display()
            )
        }
        Some(InputFormat::Parquet) => parquet::read(path, options, emit),
        Some(InputFormat::Text) => text::read(path, opened(), options, emit),
        // An unreadable file is one more bad input: reported, and the run goes on.
        Some(InputFormat::Auto) | None => {
            emit(issue_at(
                path,
                Location::File,
                "cannot tell the format from the name; set input.format".into(),
            ));
            Ok(())
        }
    }
}

/// What `read_in_batches` saw besides documents.
#[derive(Debug, Default)]
pub struct FileRead {
    pub issues: Vec<ReadIssue>,
    pub skipped: u64,
}

/// Reads `path` and hands its documents to `handle` in batches of at most `batch_size`, in
/// input order. Problems are logged and returned; the first error of `handle` stops the read
/// and is returned.
pub fn read_in_batches(
    path: &Path,
    options: &ReaderOptions,
    batch_size: usize,
    handle: &mut dyn FnMut(Vec<Document>) -> Result<()>,
) -> Result<FileRead> {
    read_source_in_batches(path, None, options, batch_size, handle)
}

/// [`read_in_batches`] of the bytes of a file named `path` as `stream` hands them over
/// (a remote object read as it arrives; see [`streamable`]).
pub fn read_stream_in_batches(
    path: &Path,
    stream: Box<dyn Read + Send>,
    options: &ReaderOptions,
    batch_size: usize,
    handle: &mut dyn FnMut(Vec<Document>) -> Result<()>,
) -> Result<FileRead> {
    read_source_in_batches(path, Some(stream), options, batch_size, handle)
}

fn read_source_in_batches(
    path: &Path,
    stream: Option<Box<dyn Read + Send>>,
    options: &ReaderOptions,
    batch_size: usize,
    handle: &mut dyn FnMut(Vec<Document>) -> Result<()>,
) -> Result<FileRead> {
    let mut batch = Vec::with_capacity(batch_size);
    let mut seen = FileRead::default();
    let mut failure = None;
    read_source(path, stream, options, &mut |event| {
        if failure.is_some() {
            return;
        }
        match event {
            ReadEvent::Document(doc) => {
                batch.push(doc);
                if batch.len() >= batch_size
                    && let Err(e) = handle(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(batch_size),
                    ))
                {
                    failure = Some(e);
                }
            }
            ReadEvent::Issue(issue) => {
                tracing::warn!("{issue}");
                seen.issues.push(issue);
            }
            ReadEvent::Skipped => seen.skipped += 1,
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    if !batch.is_empty() {
        handle(batch)?;
    }
    Ok(seen)
}

/// A problem with the input at `path`, as the event readers hand out.
pub(crate) fn issue_at(path: &Path, location: Location, message: String) -> ReadEvent {
    ReadEvent::Issue(ReadIssue {
        path: path.to_path_buf(),
        location,
        message,
    })
}

/// The source label of documents from `path`: its file name.
pub(crate) fn source_label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
