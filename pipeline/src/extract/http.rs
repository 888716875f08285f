//! The bytes of a page: the HTTP part of a WARC response (headers, chunked transfer, gzip)
//! and the charset (HTTP header, then `<meta>`, then detection, so gb2312/gbk/big5/
//! windows-1251 pages come out as Unicode, not mojibake).

use std::borrow::Cow;
use std::io::Read;

use encoding_rs::Encoding;
use regex::bytes::Regex;
use std::sync::LazyLock;

/// The HTTP part of a WARC response record.
#[derive(Debug)]
pub struct HttpPayload<'a> {
    headers: Vec<(String, String)>,
    raw_body: &'a [u8],
}

impl<'a> HttpPayload<'a> {
    /// Splits status line + headers from the body; `None` when there is no header block.
    pub fn parse(record: &'a [u8]) -> Option<Self> {
        let (head_end, sep) = find(record, b"\r\n\r\n")
            .map(|i| (i, 4))
            .or_else(|| find(record, b"\n\n").map(|i| (i, 2)))?;
        let head = String::from_utf8_lossy(&record[..head_end]);
        let mut lines = head.lines();
        let status = lines.next()?;
        if !status.starts_with("HTTP/") {
            return None;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Some(Self {
            headers,
            raw_body: &record[head_end + sep..],
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// HTML (or unlabelled) content: everything else (images, PDFs, JSON) is skipped.
    pub fn is_html(&self) -> bool {
        match self.header("content-type") {
            Some(t) => {
                let t = t.to_ascii_lowercase();
                t.contains("html") || t.contains("xml+xhtml")
            }
            None => looks_like_html(self.raw_body),
        }
    }

    /// The charset named in `Content-Type`, if any.
    pub fn charset(&self) -> Option<String> {
        charset_param(self.header("content-type")?)
    }

    /// The body with chunked transfer and gzip/deflate content encoding undone when present.
    pub fn body(&self) -> Cow<'a, [u8]> {
        let mut body: Cow<'a, [u8]> = Cow::Borrowed(self.raw_body);
        if self
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
            && let Some(joined) = dechunk(&body)
        {
            body = Cow::Owned(joined);
        }
        if body.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            if flate2::read::MultiGzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .is_ok()
            {
                body = Cow::Owned(out);
            }
        }
        body
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn looks_like_html(body: &[u8]) -> bool {
    let head = &body[..body.len().min(1024)];
    let lower = head.to_ascii_lowercase();
    find(&lower, b"<html").is_some() || find(&lower, b"<!doctype html").is_some()
}

fn charset_param(content_type: &str) -> Option<String> {
    content_type
        .split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches(['"', '\'']).to_string())
        .filter(|v| !v.is_empty())
}

/// Undoes HTTP chunked transfer encoding; `None` if the body is not validly chunked.
fn dechunk(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    loop {
        let line_end = find(rest, b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if rest.len() < size {
            return None;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

static META_CHARSET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_\-:.]+)"#)
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});

/// Picks the encoding: a valid HTTP charset, then a `<meta>` charset in the first 4 KiB, then
/// chardetng's guess (with the URL's top-level domain as a hint).
pub fn detect_encoding(
    bytes: &[u8],
    http_charset: Option<&str>,
    url: Option<&str>,
) -> &'static Encoding {
    let labelled = |label: &str| Encoding::for_label(label.trim().as_bytes());
    if let Some(enc) = http_charset.and_then(labelled) {
        return enc;
    }
    let head = &bytes[..bytes.len().min(4096)];
    if let Some(enc) = META_CHARSET
        .captures(head)
        .and_then(|c| c.get(1))
        .and_then(|m| std::str::from_utf8(m.as_bytes()).ok())
        .and_then(labelled)
    {
        return enc;
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(bytes, true);
    let tld = url
        .and_then(|u| u.split("://").nth(1))
        .and_then(|rest| rest.split(['/', ':', '?']).next())
        .and_then(|host| host.rsplit('.').next())
        .map(str::as_bytes);
    detector.guess(tld, chardetng::Utf8Detection::Allow)
}
