//! A streaming HTML tokenizer for extraction: start tags (name + raw attribute text), end tags
//! and text, borrowed from the input, with `memchr` to jump between `<`s. It builds no tree
//! and never allocates per token; script/style/textarea/title contents are skipped as raw
//! text, comments and doctypes dropped. It is lenient where browsers are (a `<` that opens no
//! tag is text; an unterminated tag ends the document) and does not decode entities: text
//! goes through [`super::entities`].

use memchr::memchr;

/// One token, borrowing from the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// `<name attrs>`: `attrs` is the raw text between the name and `>`.
    Start {
        name: &'a str,
        attrs: &'a str,
        self_closing: bool,
    },
    End {
        name: &'a str,
    },
    /// Character data, entities not yet decoded.
    Text(&'a str),
}

/// Elements whose content is not markup (HTML's raw text and escapable raw text elements).
fn raw_text_element(name: &str) -> bool {
    const RAW: &[&str] = &[
        "script",
        "style",
        "textarea",
        "title",
        "xmp",
        "iframe",
        "noembed",
        "noframes",
        "noscript",
        "plaintext",
    ];
    RAW.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Iterates over the tokens of `html`. The contents of raw text elements are skipped (their
/// start and end tags are still reported, so a caller can see a `<title>`).
pub struct Tokenizer<'a> {
    html: &'a str,
    pos: usize,
    /// Set after a raw text element's start tag: its end tag comes next.
    pending_raw_end: Option<&'a str>,
}

impl<'a> Tokenizer<'a> {
    pub fn new(html: &'a str) -> Self {
        Self {
            html,
            pos: 0,
            pending_raw_end: None,
        }
    }

    /// Skips to the end of a raw text element named `name`, returning its end tag.
    fn skip_raw(&mut self, name: &'a str) -> Option<Token<'a>> {
        let bytes = self.html.as_bytes();
        let mut at = self.pos;
        while let Some(i) = memchr(b'<', &bytes[at..]) {
            let lt = at + i;
            let rest = &bytes[lt + 1..];
            if rest.first() == Some(&b'/')
                && rest.len() > name.len()
                && rest[1..=name.len()].eq_ignore_ascii_case(name.as_bytes())
                && matches!(
                    rest.get(name.len() + 1),
                    None | Some(b'>' | b' ' | b'\t' | b'\n' | b'\r' | b'/' | b'\x0c')
                )
            {
                let end = memchr(b'>', &bytes[lt..]).map_or(bytes.len(), |j| lt + j + 1);
                self.pos = end;
                return Some(Token::End { name });
            }
            at = lt + 1;
        }
        self.pos = bytes.len();
        None
    }
}

fn is_name_char(b: u8) -> bool {
    !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'/' | b'>')
}

/// The end of a tag starting at `from` (just after its name): the index of its `>`, skipping
/// quoted attribute values.
fn tag_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    let mut quote: Option<u8> = None;
    // Quotes only open at the start of an attribute value (after `=`), as in browsers.
    let mut after_eq = false;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == q {
                    quote = None;
                }
            }
            None => match b {
                b'>' => return Some(i),
                b'"' | b'\'' if after_eq => quote = Some(b),
                _ => {}
            },
        }
        if quote.is_none() {
            after_eq = b == b'=' || (after_eq && b.is_ascii_whitespace());
        }
        i += 1;
    }
    None
}

impl<'a> Iterator for Tokenizer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        if let Some(name) = self.pending_raw_end.take()
            && let Some(end) = self.skip_raw(name)
        {
            return Some(end);
        }
        let html = self.html;
        let bytes = html.as_bytes();
        loop {
            if self.pos >= bytes.len() {
                return None;
            }
            let start = self.pos;
            let Some(i) = memchr(b'<', &bytes[start..]) else {
                self.pos = bytes.len();
                return Some(Token::Text(&html[start..]));
            };
            let lt = start + i;
            let next = bytes.get(lt + 1).copied();
            let opens_markup = match next {
                Some(b'!' | b'?') => true,
                Some(b'/') => bytes.get(lt + 2).is_some_and(u8::is_ascii_alphabetic),
                Some(b) => b.is_ascii_alphabetic(),
                None => false,
            };
            if !opens_markup {
                // A `<` that starts no tag: text up to and including it.
                let mut end = lt + 1;
                if let Some(j) = memchr(b'<', &bytes[end..]) {
                    end += j;
                } else {
                    end = bytes.len();
                }
                self.pos = end;
                return Some(Token::Text(&html[start..end]));
            }
            if lt > start {
                self.pos = lt;
                return Some(Token::Text(&html[start..lt]));
            }
            // At a `<` that opens markup.
            match next {
                Some(b'!') if bytes[lt..].starts_with(b"<!--") => {
                    self.pos = memchr::memmem::find(&bytes[lt + 4..], b"-->")
                        .map_or(bytes.len(), |j| lt + 4 + j + 3);
                }
                Some(b'!' | b'?') => {
                    self.pos = memchr(b'>', &bytes[lt..]).map_or(bytes.len(), |j| lt + j + 1);
                }
                Some(b'/') => {
                    let name_start = lt + 2;
                    let mut name_end = name_start;
                    while name_end < bytes.len() && is_name_char(bytes[name_end]) {
                        name_end += 1;
                    }
                    self.pos =
                        memchr(b'>', &bytes[name_end..]).map_or(bytes.len(), |j| name_end + j + 1);
                    return Some(Token::End {
                        name: &html[name_start..name_end],
                    });
                }
                _ => {
                    let name_start = lt + 1;
                    let mut name_end = name_start;
                    while name_end < bytes.len() && is_name_char(bytes[name_end]) {
                        name_end += 1;
                    }
                    let Some(gt) = tag_end(bytes, name_end) else {
                        self.pos = bytes.len();
                        return None;
                    };
                    self.pos = gt + 1;
                    let name = &html[name_start..name_end];
                    let mut attrs = &html[name_end..gt];
                    let self_closing = attrs.ends_with('/');
                    if self_closing {
                        attrs = &attrs[..attrs.len() - 1];
                    }
                    if raw_text_element(name) && !self_closing {
                        self.pending_raw_end = Some(name);
                    }
                    return Some(Token::Start {
                        name,
                        attrs,
                        self_closing,
                    });
                }
            }
        }
    }
}

/// The attributes of a start tag as (lower-case-insensitive name, raw value) pairs; values
/// still hold entities.
pub fn attributes(raw: &str) -> impl Iterator<Item = (&str, &str)> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        loop {
            while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
                i += 1;
            }
            if i >= bytes.len() {
                return None;
            }
            let name_start = i;
            while i < bytes.len()
                && !bytes[i].is_ascii_whitespace()
                && bytes[i] != b'='
                && bytes[i] != b'/'
            {
                i += 1;
            }
            let name = &raw[name_start..i];
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if bytes.get(i) != Some(&b'=') {
                if name.is_empty() {
                    i += 1;
                    continue;
                }
                return Some((name, ""));
            }
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let value = match bytes.get(i) {
                Some(&q @ (b'"' | b'\'')) => {
                    let from = i + 1;
                    let to = memchr(q, &bytes[from..]).map_or(bytes.len(), |j| from + j);
                    i = (to + 1).min(bytes.len());
                    &raw[from..to]
                }
                _ => {
                    let from = i;
                    while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                        i += 1;
                    }
                    &raw[from..i]
                }
            };
            return Some((name, value));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_text_comments_and_raw_text() {
        let html = "<p class=\"a>b\" id=x>Hi &amp; <b>you</b><!-- c --><script>if (a<b) x='</p>'</script>a < b</P>";
        let tokens: Vec<_> = Tokenizer::new(html).collect();
        assert_eq!(
            tokens,
            vec![
                Token::Start {
                    name: "p",
                    attrs: " class=\"a>b\" id=x",
                    self_closing: false
                },
                Token::Text("Hi &amp; "),
                Token::Start {
                    name: "b",
                    attrs: "",
                    self_closing: false
                },
                Token::Text("you"),
                Token::End { name: "b" },
                Token::Start {
                    name: "script",
                    attrs: "",
                    self_closing: false
                },
                Token::End { name: "script" },
                Token::Text("a < b"),
                Token::End { name: "P" },
            ]
        );
        let attrs: Vec<_> = attributes(" class=\"a>b\" id=x hidden data-y='1 2'").collect();
        assert_eq!(
            attrs,
            vec![
                ("class", "a>b"),
                ("id", "x"),
                ("hidden", ""),
                ("data-y", "1 2")
            ]
        );
    }
}
