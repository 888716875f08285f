//! JSON lines: one object per line with a configurable text field.

use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::Result;

use super::{ReadEvent, ReaderOptions, issue_at, source_label};
use crate::document::{Document, Location};

/// Reads every line of a JSONL file, `opened` being its decompressed bytes.
pub fn read(
    path: &Path,
    opened: std::io::Result<Box<dyn BufRead + Send>>,
    options: &ReaderOptions,
    emit: &mut dyn FnMut(ReadEvent),
) -> Result<()> {
    let source = source_label(path);
    let issue = |location: Location, message: String| issue_at(path, location, message);
    let mut reader = match opened {
        Ok(r) => r,
        Err(e) => {
            emit(issue(Location::File, format!("cannot open: {e}")));
            return Ok(());
        }
    };
    let mut buf = Vec::new();
    let mut number = 0u64;
    loop {
        buf.clear();
        number += 1;
        // Read at most one byte past the limit so a 50 MB line is refused without holding it.
        let limit = options.max_document_bytes as u64 * 2 + 1;
        let n = match (&mut reader).take(limit).read_until(b'\n', &mut buf) {
            Ok(n) => n,
            Err(e) => {
                emit(issue(
                    Location::Line(number),
                    format!("stream is corrupt or truncated: {e}"),
                ));
                return Ok(());
            }
        };
        if n == 0 {
            return Ok(());
        }
        if !buf.ends_with(b"\n") && n as u64 == limit {
            emit(issue(
                Location::Line(number),
                format!("line longer than {limit} bytes; skipped"),
            ));
            // Drain the rest of the oversized line.
            loop {
                buf.clear();
                match (&mut reader).take(1 << 20).read_until(b'\n', &mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(_) if buf.ends_with(b"\n") => break,
                    Ok(_) => continue,
                    Err(_) => return Ok(()),
                }
            }
            continue;
        }
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let value: serde_json::Value = match parse_line(line) {
            Ok(v) => v,
            Err(e) => {
                emit(issue(Location::Line(number), format!("invalid JSON: {e}")));
                continue;
            }
        };
        match document_from_json(value, options, &source, number) {
            Ok(doc) => emit(ReadEvent::Document(doc)),
            Err(message) => emit(issue(Location::Line(number), message)),
        }
    }
}

/// Parses one JSON line: its UTF-8 checked once with SIMD, then parsed as a `str`, whose
/// strings are not checked again (`from_slice` checks each with the standard library: 22 ->
/// 16 ms over the 18 MB bench corpus). A line that is not UTF-8 goes to `from_slice` for its
/// error message.
fn parse_line(line: &[u8]) -> serde_json::Result<serde_json::Value> {
    match simdutf8::basic::from_utf8(line) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(line),
    }
}

/// Builds a document from a JSON object using the configured field names. The text is
/// taken out of the object, not copied (the id and URL are read first, in case a config
/// names the same field twice).
pub(crate) fn document_from_json(
    value: serde_json::Value,
    options: &ReaderOptions,
    source: &str,
    number: u64,
) -> Result<Document, String> {
    let serde_json::Value::Object(mut object) = value else {
        return Err("expected a JSON object".to_string());
    };
    let field = |name: &Option<String>| {
        name.as_ref()
            .and_then(|n| object.get(n))
            .and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    };
    let (id, url) = (field(&options.id_field), field(&options.url_field));
    let text = match object.remove(&options.text_field) {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => {
            return Err(format!(
                "field `{}` is {}, expected a string",
                options.text_field,
                json_type(&other)
            ));
        }
        None => return Err(format!("missing text field `{}`", options.text_field)),
    };
    if text.len() > options.max_document_bytes {
        return Err(format!(
            "text of {} bytes exceeds max_document_bytes {}",
            text.len(),
            options.max_document_bytes
        ));
    }
    Ok(Document {
        id: id.unwrap_or_else(|| format!("{source}:{number}")),
        url,
        text,
        source: source.to_string(),
        odd_markup: false,
        html: None,
    })
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::parse_line;

    /// The same values and the same errors as parsing the bytes directly, for valid lines,
    /// broken JSON and bytes that are not UTF-8 (inside and outside strings).
    #[test]
    fn lines_parse_as_from_slice_does() {
        let lines: [&[u8]; 7] = [
            br#"{"id": 1, "text": "plain"}"#,
            "{\"text\": \"中文 \\n escaped \\u00e9 \\ud83d\\ude00\", \"url\": null}".as_bytes(),
            br#"{"text": "unterminated}"#,
            br#"{"text": "bad escape \q"}"#,
            b"{\"text\": \"bad \xff byte\"}",
            b"\xfe{\"text\": \"x\"}",
            br#"[1, 2, 3]"#,
        ];
        for line in lines {
            let expected = serde_json::from_slice::<serde_json::Value>(line);
            match (parse_line(line), expected) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("{a:?} against {b:?} for {line:?}"),
            }
        }
    }
}
