//! WARC and WET records. Written here rather than with the `warc` crate because real crawls
//! need what it lacks: resynchronising after a malformed record instead of giving up on the
//! file, reporting a clipped file with the record and byte offset, tolerating bare-LF and
//! ClueWeb-style headers, and streaming the record body with an exact length.

use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::Result;

use super::{HtmlHandling, ReadEvent, ReaderOptions, issue_at, source_label};
use crate::document::{Document, Location, RawHtml};
use crate::extract;

/// A record's WARC headers, names lower-cased.
#[derive(Debug, Default)]
pub struct WarcHeaders {
    pub version: String,
    pub fields: Vec<(String, String)>,
}

impl WarcHeaders {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Counts bytes taken from the decompressed stream, for offsets in error messages.
struct Counting<R> {
    inner: R,
    offset: u64,
}

impl<R: BufRead> Counting<R> {
    /// Reads a line including its terminator; empty at end of stream.
    fn line(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        buf.clear();
        let n = self.inner.read_until(b'\n', buf)?;
        self.offset += n as u64;
        Ok(n)
    }

    fn exact(&mut self, len: usize, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        buf.clear();
        let n = (&mut self.inner).take(len as u64).read_to_end(buf)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Reads every record of a WARC or WET file, `opened` being its decompressed bytes.
pub fn read(
    path: &Path,
    opened: std::io::Result<Box<dyn BufRead + Send>>,
    options: &ReaderOptions,
    emit: &mut dyn FnMut(ReadEvent),
) -> Result<()> {
    let source = source_label(path);
    let issue = |location: Location, message: String| issue_at(path, location, message);
    let reader = match opened {
        Ok(r) => r,
        Err(e) => {
            emit(issue(Location::File, format!("cannot open: {e}")));
            return Ok(());
        }
    };
    let mut input = Counting {
        inner: reader,
        offset: 0,
    };
    let mut line = Vec::new();
    let mut body = Vec::new();
    let mut index = 0u64;
    let mut resyncing = false;
    loop {
        let start = input.offset;
        let n = match input.line(&mut line) {
            Ok(n) => n,
            Err(e) => {
                emit(issue(
                    Location::Record {
                        index,
                        offset: start,
                    },
                    format!("stream is corrupt or truncated: {e}"),
                ));
                return Ok(());
            }
        };
        if n == 0 {
            return Ok(());
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        if !line.starts_with(b"WARC/") {
            if !resyncing {
                emit(issue(
                    Location::Record {
                        index,
                        offset: start,
                    },
                    "expected a `WARC/<version>` line; skipping to the next record".into(),
                ));
                resyncing = true;
            }
            continue;
        }
        resyncing = false;
        let location = Location::Record {
            index,
            offset: start,
        };
        index += 1;
        let mut headers = WarcHeaders {
            version: String::from_utf8_lossy(&line).trim().to_string(),
            fields: Vec::new(),
        };
        // Header lines until an empty line; continuation lines start with a space or tab.
        let complete = loop {
            match input.line(&mut line) {
                Ok(0) => break false,
                Ok(_) => {}
                Err(e) => {
                    emit(issue(location.clone(), format!("stream is corrupt: {e}")));
                    return Ok(());
                }
            }
            if line == b"\r\n" || line == b"\n" {
                break true;
            }
            let text = String::from_utf8_lossy(&line);
            if text.starts_with([' ', '\t']) {
                if let Some((_, v)) = headers.fields.last_mut() {
                    v.push(' ');
                    v.push_str(text.trim());
                }
                continue;
            }
            if let Some((name, value)) = text.split_once(':') {
                headers
                    .fields
                    .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        };
        if !complete {
            emit(issue(
                location,
                "file ends inside a record header (truncated file)".into(),
            ));
            return Ok(());
        }
        let Some(length) = headers
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        else {
            emit(issue(
                location,
                "missing or invalid Content-Length; skipping to the next record".into(),
            ));
            resyncing = true;
            continue;
        };
        let got = match input.exact(length, &mut body) {
            Ok(n) => n,
            Err(e) => {
                emit(issue(
                    location,
                    format!("truncated or corrupt record body (Content-Length {length}): {e}"),
                ));
                return Ok(());
            }
        };
        if got < length {
            emit(issue(
                location,
                format!(
                    "truncated record: Content-Length {length}, only {got} bytes left in the file"
                ),
            ));
            return Ok(());
        }
        emit(record_event(
            &headers, &body, &source, options, path, location,
        ));
    }
}

fn strip_angles(s: &str) -> &str {
    s.trim().trim_start_matches('<').trim_end_matches('>')
}

/// The page's main text, or as `options.html` asks, the decoded page or the raw one.
fn html_page(
    bytes: &[u8],
    charset: Option<&str>,
    url: Option<&str>,
    options: &ReaderOptions,
) -> Result<(extract::PageText, Option<RawHtml>), String> {
    match options.html {
        HtmlHandling::Extract => Ok((extract::html_to_text(bytes, charset, url)?, None)),
        HtmlHandling::Decode => {
            extract::check_not_binary(bytes)?;
            let encoding = extract::detect_encoding(bytes, charset, url);
            let text = encoding.decode(bytes).0.into_owned();
            Ok((
                extract::PageText {
                    text,
                    odd_markup: false,
                },
                None,
            ))
        }
        HtmlHandling::Defer => {
            extract::check_not_binary(bytes)?;
            let raw = RawHtml {
                bytes: bytes.to_vec(),
                charset: charset.map(str::to_string),
            };
            Ok((
                extract::PageText {
                    text: String::new(),
                    odd_markup: false,
                },
                Some(raw),
            ))
        }
    }
}

/// Turns one complete record into a document, a skip, or a problem.
fn record_event(
    headers: &WarcHeaders,
    body: &[u8],
    source: &str,
    options: &ReaderOptions,
    path: &Path,
    location: Location,
) -> ReadEvent {
    let issue = |message: String| issue_at(path, location.clone(), message);
    let kind = headers.get("warc-type").unwrap_or("").to_ascii_lowercase();
    let url = headers
        .get("warc-target-uri")
        .map(|u| strip_angles(u).to_string());
    let id = headers
        .get("warc-record-id")
        .map(|id| strip_angles(id).to_string())
        .unwrap_or_else(|| format!("{source}#{location}"));
    if body.len() > options.max_document_bytes {
        return issue(format!(
            "record body of {} bytes exceeds max_document_bytes {}",
            body.len(),
            options.max_document_bytes
        ));
    }
    let text = match kind.as_str() {
        // WET: already extracted, UTF-8 by contract (decode leniently anyway).
        "conversion" => (
            extract::PageText {
                text: String::from_utf8_lossy(body).into_owned(),
                odd_markup: false,
            },
            None,
        ),
        "response" => {
            let Some(http) = extract::HttpPayload::parse(body) else {
                return issue("response record without a parseable HTTP header block".into());
            };
            if !http.is_html() {
                return ReadEvent::Skipped;
            }
            match html_page(
                &http.body(),
                http.charset().as_deref(),
                url.as_deref(),
                options,
            ) {
                Ok(text) => text,
                Err(e) => return issue(e),
            }
        }
        "resource"
            if headers
                .get("content-type")
                .is_some_and(|t| t.contains("html")) =>
        {
            match html_page(body, None, url.as_deref(), options) {
                Ok(text) => text,
                Err(e) => return issue(e),
            }
        }
        _ => return ReadEvent::Skipped,
    };
    let (page, html) = text;
    ReadEvent::Document(Document {
        id,
        text: page.text,
        odd_markup: page.odd_markup,
        html,
        url,
        source: source.to_string(),
    })
}
