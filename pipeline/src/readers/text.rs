//! Plain text files: one document per file, decoded with charset detection.

use std::io::Read;
use std::path::Path;

use anyhow::Result;

use super::{ReadEvent, ReaderOptions, issue_at, source_label};
use crate::document::{Document, Location};
use crate::extract::detect_encoding;

/// Reads a text file as one document, `opened` being its decompressed bytes.
pub fn read(
    path: &Path,
    opened: std::io::Result<Box<dyn std::io::BufRead + Send>>,
    options: &ReaderOptions,
    emit: &mut dyn FnMut(ReadEvent),
) -> Result<()> {
    let issue = |message: String| issue_at(path, Location::File, message);
    let mut bytes = Vec::new();
    let limit = options.max_document_bytes as u64;
    let read = opened.and_then(|r| r.take(limit + 1).read_to_end(&mut bytes));
    if let Err(e) = read {
        emit(issue(format!("cannot read: {e}")));
        return Ok(());
    }
    if bytes.len() as u64 > limit {
        emit(issue(format!(
            "larger than max_document_bytes {limit}; skipped"
        )));
        return Ok(());
    }
    if bytes.is_empty() {
        emit(issue("empty file".into()));
        return Ok(());
    }
    if bytes.iter().take(8192).any(|&b| b == 0) {
        emit(issue("binary file (NUL bytes); skipped".into()));
        return Ok(());
    }
    let encoding = detect_encoding(&bytes, None, None);
    let (text, _, _) = encoding.decode(&bytes);
    let source = source_label(path);
    emit(ReadEvent::Document(Document {
        id: path.display().to_string(),
        text: text.into_owned(),
        url: None,
        source,
        odd_markup: false,
        html: None,
    }));
    Ok(())
}
