//! The page as the scorer sees it, built in one pass over the tokens: a tree of block-level
//! elements (`Node`s, with their hints) and, in document order, the text blocks between block
//! boundaries (`Block`s: collapsed text, its weight, how much of it is link text). Inline
//! markup only shapes the text; `<br>` becomes a line break. Misnested markup is repaired the
//! way browsers mostly do (implied end tags for `p`, `li`, `td`, ...) and counted, never
//! logged.

use super::entities;
use super::hints::{HintAttrs, Hints, classify};
use super::tokenizer::{Token, Tokenizer, attributes};

/// A block-level element.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    /// Lower-case tag name (`"other"` for custom elements).
    pub tag: &'static str,
    pub parent: Option<u32>,
    pub hints: Hints,
    /// Inside a boilerplate container (by tag, role or class), this one included.
    pub in_boilerplate: bool,
    /// Inside a main-content container, this one included.
    pub in_main: bool,
    /// `class` and `id`, for `--explain`.
    pub class: &'a str,
    pub id: &'a str,
}

/// Text between two block boundaries.
#[derive(Debug, Clone)]
pub struct Block {
    /// The innermost block-level element holding it.
    pub node: u32,
    pub text: String,
    /// Characters, a CJK one counting [`CJK_WEIGHT`]: what a paragraph of it is worth.
    pub weight: u32,
    pub link_weight: u32,
    /// Commas, Latin and CJK: a sign of prose.
    pub commas: u32,
    pub heading: bool,
}

/// Page structure and counts.
#[derive(Debug, Default)]
pub struct Page<'a> {
    pub nodes: Vec<Node<'a>>,
    pub blocks: Vec<Block>,
    /// End tags with no open element and elements closed by a mismatched end tag.
    pub odd_markup: u32,
}

/// Open elements beyond this depth are ignored (their text is kept).
const MAX_DEPTH: usize = 256;

/// A CJK character carries about as much as a short Latin word.
pub const CJK_WEIGHT: u32 = 3;

pub fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xac00..=0xd7af | 0xf900..=0xfaff)
}

/// Known tags as `'static` names, with what the builder does with them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Block,
    Inline,
    Void,
    /// Content never shown as text (or not text): skipped with everything inside.
    Skip,
}

fn tag_of(name: &str) -> (&'static str, Role) {
    const TAGS: &[(&str, Role)] = &[
        ("a", Role::Inline),
        ("abbr", Role::Inline),
        ("address", Role::Block),
        ("area", Role::Void),
        ("article", Role::Block),
        ("aside", Role::Block),
        ("audio", Role::Skip),
        ("b", Role::Inline),
        ("base", Role::Void),
        ("blockquote", Role::Block),
        ("body", Role::Block),
        ("br", Role::Void),
        ("button", Role::Skip),
        ("canvas", Role::Skip),
        ("caption", Role::Block),
        ("center", Role::Block),
        ("col", Role::Void),
        ("dd", Role::Block),
        ("details", Role::Block),
        ("dialog", Role::Block),
        ("div", Role::Block),
        ("dl", Role::Block),
        ("dt", Role::Block),
        ("em", Role::Inline),
        ("embed", Role::Void),
        ("fieldset", Role::Block),
        ("figcaption", Role::Block),
        ("figure", Role::Block),
        ("footer", Role::Block),
        ("form", Role::Block),
        ("h1", Role::Block),
        ("h2", Role::Block),
        ("h3", Role::Block),
        ("h4", Role::Block),
        ("h5", Role::Block),
        ("h6", Role::Block),
        ("head", Role::Skip),
        ("header", Role::Block),
        ("hgroup", Role::Block),
        ("hr", Role::Void),
        ("html", Role::Block),
        ("i", Role::Inline),
        ("iframe", Role::Skip),
        ("img", Role::Void),
        ("input", Role::Void),
        ("legend", Role::Block),
        ("li", Role::Block),
        ("link", Role::Void),
        ("main", Role::Block),
        ("map", Role::Skip),
        ("math", Role::Skip),
        ("menu", Role::Block),
        ("meta", Role::Void),
        ("nav", Role::Block),
        ("noscript", Role::Skip),
        ("object", Role::Skip),
        ("ol", Role::Block),
        ("option", Role::Skip),
        ("p", Role::Block),
        ("param", Role::Void),
        ("pre", Role::Block),
        ("script", Role::Skip),
        ("section", Role::Block),
        ("select", Role::Skip),
        ("source", Role::Void),
        ("span", Role::Inline),
        ("strong", Role::Inline),
        ("style", Role::Skip),
        ("summary", Role::Block),
        ("svg", Role::Skip),
        ("table", Role::Block),
        ("tbody", Role::Block),
        ("td", Role::Block),
        ("template", Role::Skip),
        ("textarea", Role::Skip),
        ("tfoot", Role::Block),
        ("th", Role::Block),
        ("thead", Role::Block),
        ("title", Role::Skip),
        ("tr", Role::Block),
        ("track", Role::Void),
        ("ul", Role::Block),
        ("video", Role::Skip),
        ("wbr", Role::Void),
    ];
    let mut lower = [0u8; 12];
    if name.len() <= lower.len() {
        for (l, b) in lower.iter_mut().zip(name.bytes()) {
            *l = b.to_ascii_lowercase();
        }
        let lower = &lower[..name.len()];
        if let Ok(i) = TAGS.binary_search_by(|(t, _)| t.as_bytes().cmp(lower)) {
            return TAGS[i];
        }
    }
    ("other", Role::Inline)
}

/// `<a name=x />`, `<span/>`: browsers leave these open (a link would swallow the text after
/// it), pages mean them empty. In `<a href=/>` the `/` ends an unquoted value: that one is open.
fn empty(attrs: &str) -> bool {
    let last = attrs.bytes().last().unwrap_or(b' ');
    last.is_ascii_whitespace() || last == b'"' || last == b'\''
}

/// An element on the stack of open elements.
struct Open<'a> {
    name: &'a str,
    tag: &'static str,
    node: Option<u32>,
    link: bool,
    skip: bool,
}

/// Start tags that close an open `<p>` (HTML's list, less the rare ones).
fn closes_p(tag: &str) -> bool {
    matches!(
        tag,
        "address"
            | "article"
            | "aside"
            | "blockquote"
            | "details"
            | "div"
            | "dl"
            | "fieldset"
            | "figcaption"
            | "figure"
            | "footer"
            | "form"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "header"
            | "hgroup"
            | "hr"
            | "main"
            | "menu"
            | "nav"
            | "ol"
            | "p"
            | "pre"
            | "section"
            | "table"
            | "ul"
    )
}

struct Builder<'a> {
    page: Page<'a>,
    stack: Vec<Open<'a>>,
    text: String,
    weight: u32,
    link_weight: u32,
    commas: u32,
    /// A space is owed before the next visible character.
    space: bool,
    pre: u32,
}

impl<'a> Builder<'a> {
    fn current_node(&self) -> Option<u32> {
        self.stack.iter().rev().find_map(|o| o.node)
    }

    fn skipping(&self) -> bool {
        self.stack.last().is_some_and(|o| o.skip)
    }

    fn in_link(&self) -> bool {
        self.stack.last().is_some_and(|o| o.link)
    }

    fn flush(&mut self) {
        let trimmed_len = self.text.trim_end().len();
        self.text.truncate(trimmed_len);
        self.space = false;
        if self.text.is_empty() {
            return;
        }
        let Some(node) = self.current_node() else {
            self.text.clear();
            return;
        };
        let heading = matches!(
            self.page.nodes[node as usize].tag,
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6"
        );
        self.page.blocks.push(Block {
            node,
            text: std::mem::take(&mut self.text),
            weight: std::mem::take(&mut self.weight),
            link_weight: std::mem::take(&mut self.link_weight),
            commas: std::mem::take(&mut self.commas),
            heading,
        });
    }

    fn push_text(&mut self, raw: &str) {
        if self.skipping() {
            return;
        }
        let decoded = entities::decode(raw);
        let link = self.in_link();
        for c in decoded.chars() {
            if self.pre > 0 && matches!(c, ' ' | '\t' | '\n') {
                // Preformatted: whitespace as written, less what would start the block.
                if self.space {
                    self.text.push(' ');
                    self.space = false;
                }
                if !self.text.is_empty() {
                    self.text.push(c);
                }
                continue;
            }
            if c.is_whitespace() || c == '\u{200b}' || c == '\u{ad}' {
                if !self.text.is_empty() && !self.text.ends_with('\n') {
                    self.space = true;
                }
                continue;
            }
            if self.space {
                self.text.push(' ');
                self.space = false;
            }
            self.text.push(c);
            let w = if is_cjk(c) { CJK_WEIGHT } else { 1 };
            self.weight += w;
            if link {
                self.link_weight += w;
            }
            if matches!(c, ',' | '，' | '、' | '。') {
                self.commas += 1;
            }
        }
    }

    fn line_break(&mut self) {
        if self.skipping() {
            return;
        }
        let trimmed_len = self.text.trim_end_matches(' ').len();
        self.text.truncate(trimmed_len);
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
        }
        self.space = false;
    }

    /// Pops the stack down to and including index `i`, ending blocks on the way.
    fn pop_to(&mut self, i: usize) {
        while self.stack.len() > i {
            if self.stack.last().is_some_and(|o| o.node.is_some()) {
                self.flush();
            }
            if let Some(open) = self.stack.pop()
                && open.tag == "pre"
                && open.node.is_some()
            {
                self.pre = self.pre.saturating_sub(1);
            }
        }
    }

    /// The index of the nearest open element named `tag`, not looking past `stop` tags.
    fn find_open(&self, tag: &str, stop: &[&str]) -> Option<usize> {
        for (i, open) in self.stack.iter().enumerate().rev() {
            if open.tag == tag {
                return Some(i);
            }
            if stop.contains(&open.tag) {
                return None;
            }
        }
        None
    }

    fn implied_ends(&mut self, tag: &'static str) {
        // A start tag that does not belong in <head> ends an open one (pages without </head>).
        const IN_HEAD: &[&str] = &["head", "html", "title", "script", "style", "noscript"];
        if !IN_HEAD.contains(&tag)
            && let Some(head) = self.find_open("head", &[])
        {
            self.pop_to(head);
        }
        const SCOPE: &[&str] = &["table", "td", "th", "caption", "html", "button"];
        let closing = |b: &Self, t: &str, stop: &[&str]| b.find_open(t, stop);
        let mut close = None;
        if closes_p(tag) {
            close = closing(self, "p", SCOPE);
        }
        match tag {
            "li" => close = close.or_else(|| closing(self, "li", &["ul", "ol", "table", "td"])),
            "dt" | "dd" => {
                close = close
                    .or_else(|| closing(self, "dt", &["dl", "table"]))
                    .or_else(|| closing(self, "dd", &["dl", "table"]));
            }
            "tr" => {
                close = closing(self, "tr", &["table"]);
            }
            "td" | "th" => {
                close = closing(self, "td", &["tr", "table"])
                    .or_else(|| closing(self, "th", &["tr", "table"]));
            }
            "a" => close = closing(self, "a", &[]),
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                if let Some(top) = self.stack.last()
                    && matches!(top.tag, "h1" | "h2" | "h3" | "h4" | "h5" | "h6")
                {
                    close = Some(self.stack.len() - 1);
                }
            }
            _ => {}
        }
        if let Some(i) = close {
            self.pop_to(i);
        }
    }

    fn start(&mut self, name: &'a str, raw_attrs: &'a str, self_closing: bool) {
        let (tag, role) = tag_of(name);
        match role {
            Role::Void => {
                if tag == "br" {
                    self.line_break();
                } else if tag == "hr" {
                    self.flush();
                } else if tag == "img" && !self.text.ends_with(' ') {
                    self.space = !self.text.is_empty();
                }
                return;
            }
            _ if self_closing && (tag == "other" || (role == Role::Inline && empty(raw_attrs))) => {
                return;
            }
            _ => {}
        }
        if self.stack.len() >= MAX_DEPTH {
            // Runaway nesting (thousands of unclosed tags): deeper elements only shape text,
            // so that every walk up the tree stays short.
            self.page.odd_markup += 1;
            return;
        }
        self.implied_ends(tag);
        let parent_skip = self.skipping();
        let parent_link = self.in_link();
        let mut attrs = HintAttrs::default();
        let mut hidden = false;
        if !raw_attrs.is_empty() {
            for (key, value) in attributes(raw_attrs) {
                // Attribute names are short: lower-case them on the stack, skip long ones.
                let mut lower = [0u8; 12];
                if key.len() > lower.len() {
                    continue;
                }
                for (l, b) in lower.iter_mut().zip(key.bytes()) {
                    *l = b.to_ascii_lowercase();
                }
                match &lower[..key.len()] {
                    b"class" => attrs.class = value,
                    b"id" => attrs.id = value,
                    b"role" => attrs.role = value,
                    b"itemprop" => attrs.itemprop = value,
                    b"itemtype" => attrs.itemtype = value,
                    b"hidden" => hidden = true,
                    b"aria-hidden" => hidden |= value.eq_ignore_ascii_case("true"),
                    b"style" => {
                        let style = value.to_ascii_lowercase().replace(' ', "");
                        hidden |=
                            style.contains("display:none") || style.contains("visibility:hidden");
                    }
                    _ => {}
                }
            }
        }
        let skip = parent_skip || role == Role::Skip || hidden;
        let node = if role == Role::Block && !skip {
            self.flush();
            let parent = self.current_node();
            let hints = classify(tag, &attrs);
            let (parent_boiler, parent_main) = parent.map_or((false, false), |p| {
                let p = &self.page.nodes[p as usize];
                (p.in_boilerplate, p.in_main)
            });
            let index = self.page.nodes.len() as u32;
            self.page.nodes.push(Node {
                tag,
                parent,
                hints,
                in_boilerplate: parent_boiler || hints.boilerplate_tag || hints.boilerplate_class,
                in_main: parent_main || hints.main,
                class: attrs.class,
                id: attrs.id,
            });
            if tag == "pre" {
                self.pre += 1;
            }
            Some(index)
        } else {
            if matches!(tag, "td" | "th") {
                self.space = true;
            }
            None
        };
        self.stack.push(Open {
            name,
            tag,
            node,
            link: parent_link || tag == "a",
            skip,
        });
    }

    fn end(&mut self, name: &str) {
        let (tag, role) = tag_of(name);
        if tag == "br" {
            self.line_break();
            return;
        }
        if role == Role::Void {
            return;
        }
        let found = self
            .stack
            .iter()
            .rposition(|o| o.name.eq_ignore_ascii_case(name) || (tag != "other" && o.tag == tag));
        match found {
            Some(i) => {
                // Elements whose end tag may be left out: closing them here is not odd.
                const OPTIONAL: &[&str] = &[
                    "p", "li", "td", "th", "tr", "dt", "dd", "tbody", "thead", "option",
                ];
                if self.stack[i + 1..]
                    .iter()
                    .any(|o| o.node.is_some() && !OPTIONAL.contains(&o.tag))
                {
                    self.page.odd_markup += 1;
                }
                self.pop_to(i);
            }
            None if tag == "p" => self.flush(),
            None => self.page.odd_markup += 1,
        }
    }
}

/// Builds the page from its HTML.
pub fn build(html: &str) -> Page<'_> {
    let mut builder = Builder {
        page: Page::default(),
        stack: Vec::with_capacity(64),
        text: String::new(),
        weight: 0,
        link_weight: 0,
        commas: 0,
        space: false,
        pre: 0,
    };
    // A root node, so text outside any block (no <html>/<body>) still has a home.
    builder.page.nodes.push(Node {
        tag: "#root",
        parent: None,
        hints: Hints::default(),
        in_boilerplate: false,
        in_main: false,
        class: "",
        id: "",
    });
    builder.stack.push(Open {
        name: "#root",
        tag: "#root",
        node: Some(0),
        link: false,
        skip: false,
    });
    for token in Tokenizer::new(html) {
        match token {
            Token::Text(t) => builder.push_text(t),
            Token::Start {
                name,
                attrs,
                self_closing,
            } => builder.start(name, attrs, self_closing),
            Token::End { name } => builder.end(name),
        }
    }
    builder.pop_to(0);
    builder.page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_table_is_sorted() {
        assert_eq!(tag_of("DIV").0, "div");
        assert_eq!(tag_of("wbr").0, "wbr");
        assert_eq!(tag_of("my-widget").0, "other");
    }

    #[test]
    fn blocks_breaks_links_and_implied_ends() {
        let page = build(
            "<body><p>One <b>two</b>\n three<br>four<p>Five <a href=x>link</a><div class=x>Six</div><ul><li>a<li>b</ul><script>x</script><table><tr><td>c1<td>c2</table></body>",
        );
        let texts: Vec<_> = page.blocks.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "One two three\nfour",
                "Five link",
                "Six",
                "a",
                "b",
                "c1",
                "c2"
            ]
        );
        assert_eq!(page.blocks[1].link_weight, 4);
        assert_eq!(page.nodes[page.blocks[0].node as usize].tag, "p");
    }
}
