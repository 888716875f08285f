//! HTML to text: decode with the right charset (HTTP header, then `<meta>`, then detection,
//! so gb2312/gbk/big5/windows-1251 pages come out as Unicode, not mojibake), keep the main
//! content, drop script/style/navigation/boilerplate, keep paragraph breaks.

use std::borrow::Cow;
use std::io::Read;

use encoding_rs::Encoding;
use regex::bytes::Regex;
use scraper::{Html, Node};
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

fn looks_like_html(body: &[u8]) -> bool {
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

/// Elements whose text is never content.
const SKIP_TAGS: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "embed",
    "head", "nav", "header", "footer", "aside", "form", "button", "select", "option", "input",
    "textarea", "menu", "dialog",
];

/// Elements that end a paragraph.
const BLOCK_TAGS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "main",
    "blockquote",
    "pre",
    "dd",
    "dt",
    "dl",
    "figcaption",
    "hr",
    "td",
    "th",
    "address",
    "center",
];

/// `class`/`id` words that mark navigation and boilerplate containers.
const BOILERPLATE_MARKERS: &[&str] = &[
    "nav",
    "navbar",
    "menu",
    "footer",
    "header",
    "sidebar",
    "breadcrumb",
    "cookie",
    "banner",
    "share",
    "social",
    "advert",
    "ads",
    "popup",
    "modal",
    "related",
    "comment",
    "subscribe",
    "newsletter",
    "pagination",
    "copyright",
    "skip-link",
];

fn is_boilerplate(element: &scraper::node::Element) -> bool {
    if element.attr("hidden").is_some()
        || element.attr("aria-hidden") == Some("true")
        || element
            .attr("role")
            .is_some_and(|r| matches!(r, "navigation" | "banner" | "contentinfo" | "complementary"))
    {
        return true;
    }
    let mut names = element.classes().chain(element.id());
    names.any(|name| {
        let name = name.to_ascii_lowercase();
        name.split(['-', '_', ' '])
            .any(|word| BOILERPLATE_MARKERS.contains(&word))
    })
}

/// A paragraph being collected, with how much of it is link text.
#[derive(Default)]
struct Block {
    text: String,
    link_chars: usize,
}

struct Collector {
    paragraphs: Vec<String>,
    current: Block,
}

impl Collector {
    fn end_block(&mut self) {
        let block = std::mem::take(&mut self.current);
        let text = block.text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            return;
        }
        let chars = text.chars().count();
        // Menus and link lists: mostly link text and short.
        let link_density = block.link_chars as f64 / chars as f64;
        if link_density > 0.5 && chars < 300 {
            return;
        }
        self.paragraphs.push(text);
    }

    fn walk(&mut self, node: ego_tree::NodeRef<'_, Node>, in_link: bool) {
        match node.value() {
            Node::Text(t) => {
                self.current.text.push_str(t);
                if in_link {
                    self.current.link_chars += t.trim().chars().count();
                }
            }
            Node::Element(e) => {
                let tag = e.name();
                if SKIP_TAGS.contains(&tag) || is_boilerplate(e) {
                    return;
                }
                let block = BLOCK_TAGS.contains(&tag);
                if block {
                    self.end_block();
                }
                let link = in_link || tag == "a";
                for child in node.children() {
                    self.walk(child, link);
                }
                if block {
                    self.end_block();
                } else if matches!(tag, "td" | "th" | "span" | "a" | "img") {
                    self.current.text.push(' ');
                }
            }
            Node::Document | Node::Fragment => {
                for child in node.children() {
                    self.walk(child, in_link);
                }
            }
            _ => {}
        }
    }
}

/// Decodes `bytes` and extracts the main text, paragraphs separated by blank lines.
pub fn html_to_text(
    bytes: &[u8],
    http_charset: Option<&str>,
    url: Option<&str>,
) -> Result<String, String> {
    if bytes.contains(&0) && !looks_like_html(bytes) {
        return Err("binary content (NUL bytes) where HTML was expected".into());
    }
    let encoding = detect_encoding(bytes, http_charset, url);
    let (html, _, _) = encoding.decode(bytes);
    let document = Html::parse_document(&html);
    let mut collector = Collector {
        paragraphs: Vec::new(),
        current: Block::default(),
    };
    let root = document
        .tree
        .root()
        .children()
        .find(|n| n.value().as_element().is_some_and(|e| e.name() == "html"))
        .and_then(|html| {
            html.children()
                .find(|n| n.value().as_element().is_some_and(|e| e.name() == "body"))
        })
        .unwrap_or_else(|| document.tree.root());
    collector.walk(root, false);
    collector.end_block();
    Ok(collector.paragraphs.join("\n\n"))
}
