//! A document as it moves through the pipeline, and the problems a reader can report.

use std::fmt;
use std::path::PathBuf;

/// One input document. `id` is stable across runs (from the record/line, or the input's own id).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    pub id: String,
    pub text: String,
    pub url: Option<String>,
    /// The input file (or configured source label) it came from.
    pub source: String,
    /// HTML whose markup the extractor had to repair (end tags that close nothing or close
    /// out of order): counted in the run summary, never logged page by page.
    pub odd_markup: bool,
    /// An HTML page whose main text is still to be extracted: `clean` defers extraction to
    /// its parallel pass (`text` is empty until then).
    pub html: Option<RawHtml>,
}

/// A page's body as it came (chunking and gzip undone), with the charset its HTTP header named.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawHtml {
    pub bytes: Vec<u8>,
    pub charset: Option<String>,
}

/// Where in an input something happened: a record number, a line, a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Record { index: u64, offset: u64 },
    Line(u64),
    Row(u64),
    File,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Record { index, offset } => {
                write!(
                    f,
                    "record {index} (byte {offset} of the decompressed stream)"
                )
            }
            Location::Line(n) => write!(f, "line {n}"),
            Location::Row(n) => write!(f, "row {n}"),
            Location::File => f.write_str("file"),
        }
    }
}

/// A bad record, line or file: reported, counted, skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadIssue {
    pub path: PathBuf,
    pub location: Location,
    pub message: String,
}

impl fmt::Display for ReadIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.path.display(),
            self.location,
            self.message
        )
    }
}
