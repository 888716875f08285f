//! HTML to text: the page's main content, as a person reading it would copy it out.
//!
//! One streaming pass tokenizes the page (`tokenizer`, `entities`) into a tree of block-level
//! elements with the text blocks between them (`page`); `hints` reads what tags, classes and
//! microdata say; `select` scores candidate containers and keeps the main one, with a cascade
//! of looser passes so that a page with paragraphs never comes out empty. `http` undoes the
//! HTTP layer and finds the charset. `pipeline extract FILE --explain` prints
//! [`Extraction::explain`]: every block with its verdict.

mod entities;
mod hints;
mod http;
mod page;
mod select;
mod tokenizer;

use std::fmt::Write as _;

pub use http::{HttpPayload, detect_encoding};
pub use select::{Pass, Verdict};

/// What extraction made of one page.
#[derive(Debug)]
pub struct Extraction<'a> {
    page: page::Page<'a>,
    selection: select::Selection,
}

impl<'a> Extraction<'a> {
    /// Extracts the main content of an already decoded page.
    pub fn of(html: &'a str) -> Self {
        let page = page::build(html);
        let selection = select::select(&page);
        Self { page, selection }
    }

    /// The kept blocks, paragraphs separated by blank lines, `<br>` as line breaks.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for block in self.kept() {
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(&block.text);
        }
        out
    }

    fn kept(&self) -> impl Iterator<Item = &page::Block> {
        self.page
            .blocks
            .iter()
            .zip(&self.selection.verdicts)
            .filter(|(_, v)| **v == Verdict::Kept)
            .map(|(b, _)| b)
    }

    /// Text blocks on the page, kept or not.
    pub fn blocks(&self) -> usize {
        self.page.blocks.len()
    }

    /// End tags that closed nothing or closed elements out of order: markup a browser repairs.
    pub fn odd_markup(&self) -> u32 {
        self.page.odd_markup
    }

    /// The pass of the cascade that chose the content.
    pub fn pass(&self) -> Pass {
        self.selection.pass
    }

    fn label(&self, node: u32) -> String {
        let node = &self.page.nodes[node as usize];
        let mut label = node.tag.to_string();
        if !node.id.is_empty() {
            let _ = write!(label, "#{}", node.id.trim());
        }
        for class in node.class.split_whitespace().take(3) {
            let _ = write!(label, ".{class}");
        }
        label
    }

    /// Every block with its verdict and why, then the totals: what `--explain` prints.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "pass: {}", self.selection.pass.describe());
        match self.selection.top {
            Some(top) => {
                let _ = writeln!(out, "main content: {}", self.label(top));
            }
            None => {
                let _ = writeln!(out, "main content: none found");
            }
        }
        for (block, verdict) in self.page.blocks.iter().zip(&self.selection.verdicts) {
            let why = match verdict {
                Verdict::Kept => "kept".to_string(),
                Verdict::Boilerplate(node) => {
                    format!("dropped: inside boilerplate {}", self.label(*node))
                }
                Verdict::OutsideMainContent => "dropped: outside the main content".to_string(),
                Verdict::LinkText(d) => format!("dropped: link text ({:.0}% of it)", d * 100.0),
                Verdict::Clutter(node) => {
                    format!("dropped: clutter in the content, {}", self.label(*node))
                }
            };
            let preview: String = block
                .text
                .chars()
                .take(70)
                .collect::<String>()
                .replace('\n', " / ");
            let _ = writeln!(
                out,
                "{why:<48} <{}> {} chars: {preview}",
                self.label(block.node),
                block.text.chars().count()
            );
        }
        let kept = self.kept().count();
        let _ = writeln!(
            out,
            "{kept} of {} blocks kept, {} characters (CJK weighted){}",
            self.page.blocks.len(),
            self.selection.kept_weight,
            if kept == 0 {
                ": nothing on this page reads as main content"
            } else {
                ""
            }
        );
        out
    }
}

/// An error for bytes that are binary (NUL bytes, no HTML) where a page was expected.
pub fn check_not_binary(bytes: &[u8]) -> Result<(), String> {
    if bytes.contains(&0) && !http::looks_like_html(bytes) {
        return Err("binary content (NUL bytes) where HTML was expected".into());
    }
    Ok(())
}

/// The main text of a page and whether its markup needed repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageText {
    pub text: String,
    pub odd_markup: bool,
}

/// Decodes `bytes` and extracts the main text, paragraphs separated by blank lines.
pub fn html_to_text(
    bytes: &[u8],
    http_charset: Option<&str>,
    url: Option<&str>,
) -> Result<PageText, String> {
    check_not_binary(bytes)?;
    let encoding = detect_encoding(bytes, http_charset, url);
    let (html, _, _) = encoding.decode(bytes);
    let extraction = Extraction::of(&html);
    Ok(PageText {
        text: extraction.text(),
        odd_markup: extraction.odd_markup() > 0,
    })
}
