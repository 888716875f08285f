//! Text normalization: Unicode NFC (or NFKC, which also folds full-width forms), broken
//! whitespace and control characters fixed, terminal escape sequences (ANSI colours) removed,
//! optional Traditional -> Simplified Chinese.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick, is_nfkc_quick};

/// Unicode normalization form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnicodeForm {
    Nfc,
    /// Also folds compatibility forms: full-width Ａ１ -> A1, ligatures, ...
    Nfkc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizeOptions {
    pub unicode: UnicodeForm,
    /// Convert Traditional Chinese characters to Simplified.
    pub traditional_to_simplified: bool,
}

impl Default for NormalizeOptions {
    fn default() -> Self {
        Self {
            unicode: UnicodeForm::Nfc,
            traditional_to_simplified: false,
        }
    }
}

/// Characters that are never content: zero-width and bidi controls, BOM, soft hyphen.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}')
}

/// Normalizes `text`: the chosen Unicode form; CRLF/CR to LF; other whitespace (NBSP, ideographic
/// space in Latin text is kept as is only under NFC) to a single space; control characters
/// and whole terminal escape sequences (`ESC [ 33 m`, not only the ESC) removed; trailing
/// spaces trimmed; at most one blank line in a row; no leading/trailing blank
/// lines.
pub fn normalize(text: &str, options: &NormalizeOptions) -> String {
    // Most web text is already in the chosen form: the quick check (a table lookup per
    // character, nothing for ASCII) spares decomposing and recomposing every character.
    let unified: Cow<'_, str> = match options.unicode {
        UnicodeForm::Nfc
            if text.is_ascii()
                || text.chars().all(nfc_stable)
                || is_nfc_quick(text.chars()) == IsNormalized::Yes =>
        {
            Cow::Borrowed(text)
        }
        UnicodeForm::Nfkc
            if text.is_ascii() || is_nfkc_quick(text.chars()) == IsNormalized::Yes =>
        {
            Cow::Borrowed(text)
        }
        UnicodeForm::Nfc => Cow::Owned(text.nfc().collect()),
        UnicodeForm::Nfkc => Cow::Owned(text.nfkc().collect()),
    };
    let converted = if options.traditional_to_simplified {
        Cow::Owned(zhconv::zhconv(&unified, zhconv::Variant::ZhHans))
    } else {
        unified
    };
    clean_lines(&converted)
}

/// Whitespace and line structure in one pass over the text, written straight into the output
/// (no copy per line); runs of ordinary characters are copied whole.
fn clean_lines(text: &str) -> String {
    let mut out = Lines {
        text: String::with_capacity(text.len()),
        blank_run: 0,
        content: false,
        space: false,
    };
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // A run of characters that are copied as they are, with the single spaces between
        // them (what a space followed by content writes); ASCII a byte at a time.
        let start = i;
        let mut special = None;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_graphic() {
                i += 1;
            } else if b == b' ' && i > start && bytes.get(i + 1).is_some_and(u8::is_ascii_graphic) {
                i += 2;
            } else if b.is_ascii() {
                special = Some(char::from(b));
                break;
            } else {
                let c = text[i..].chars().next().unwrap_or_default();
                if !is_plain(c) {
                    special = Some(c);
                    break;
                }
                i += c.len_utf8();
            }
        }
        if i > start {
            out.push_content(&text[start..i]);
        }
        let Some(c) = special else {
            break;
        };
        i += c.len_utf8();
        if c == '\n' || c == '\r' {
            if c == '\r' && bytes.get(i) == Some(&b'\n') {
                i += 1;
            }
            out.end_line();
        } else if c == '\u{1B}' {
            i += escape_sequence_len(&bytes[i..]);
        } else if is_invisible(c) || (c.is_control() && c != '\t') {
            continue;
        } else if c.is_whitespace() && c != '\u{3000}' {
            out.space = true;
        } else {
            out.push_content(c.encode_utf8(&mut [0u8; 4]));
        }
    }
    out.text
}

/// Bytes after an ESC that belong to its escape sequence (ECMA-48): a CSI `[` with parameter,
/// intermediate and final bytes (colours: `ESC[1;33m`), an OSC `]` up to BEL or `ESC \`
/// (window titles, hyperlinks), or a single byte of `@`..`_`. Anything else: the ESC alone.
fn escape_sequence_len(rest: &[u8]) -> usize {
    match rest.first() {
        Some(b'[') => {
            let body = rest[1..]
                .iter()
                .take_while(|b| (0x20..=0x3F).contains(*b))
                .count();
            match rest.get(1 + body) {
                Some(0x40..=0x7E) => body + 2,
                _ => 0,
            }
        }
        Some(b']') => {
            let mut j = 1;
            while j < rest.len() {
                match rest[j] {
                    0x07 => return j + 1,
                    0x1B if rest.get(j + 1) == Some(&b'\\') => return j + 2,
                    b'\n' => return 0,
                    _ => j += 1,
                }
            }
            0
        }
        Some(0x40..=0x5F) => 1,
        _ => 0,
    }
}

/// Characters that NFC leaves alone whatever surrounds them (quick check Yes, combining
/// class 0), found without the Unicode tables: ASCII, CJK symbols and punctuation (but the
/// ideographic tone marks U+302A..U+302F, which combine), CJK unified ideographs, full-width
/// and half-width forms. Most of an English/Chinese corpus.
fn nfc_stable(c: char) -> bool {
    c.is_ascii()
        || matches!(c, '\u{3000}'..='\u{3029}' | '\u{3030}'..='\u{303F}' | '\u{4E00}'..='\u{9FFF}' | '\u{FF00}'..='\u{FFEF}')
}

/// Characters kept as they are: printable ASCII, and other characters that are neither
/// whitespace (the ideographic space is content), control nor invisible.
fn is_plain(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_graphic()
    } else if ('\u{4E00}'..='\u{9FFF}').contains(&c) {
        // CJK unified ideographs: the common case in Chinese text, without table lookups.
        true
    } else {
        !(is_invisible(c) || c.is_control() || (c.is_whitespace() && c != '\u{3000}'))
    }
}

/// The output of [`clean_lines`] and where it stands in the current line.
struct Lines {
    text: String,
    /// Blank lines since the last line with content.
    blank_run: usize,
    /// Whether the current line has content, and whether whitespace is pending in it.
    content: bool,
    space: bool,
}

impl Lines {
    /// Content characters: a line break before the first of a line (two after blank lines),
    /// one space for any run of whitespace inside a line.
    fn push_content(&mut self, s: &str) {
        if !self.content {
            if !self.text.is_empty() {
                self.text
                    .push_str(if self.blank_run > 0 { "\n\n" } else { "\n" });
            }
            (self.blank_run, self.content, self.space) = (0, true, false);
        } else if self.space {
            self.text.push(' ');
            self.space = false;
        }
        self.text.push_str(s);
    }

    fn end_line(&mut self) {
        if !self.content {
            self.blank_run += 1;
        }
        (self.content, self.space) = (false, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `clean_lines` as it was before runs were scanned a byte at a time.
    fn reference_clean_lines(text: &str) -> String {
        let mut out = Lines {
            text: String::with_capacity(text.len()),
            blank_run: 0,
            content: false,
            space: false,
        };
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let start = i;
            let mut special = None;
            for c in text[i..].chars() {
                if !is_plain(c) {
                    special = Some(c);
                    break;
                }
                i += c.len_utf8();
            }
            if i > start {
                out.push_content(&text[start..i]);
            }
            let Some(c) = special else {
                break;
            };
            i += c.len_utf8();
            if c == '\n' || c == '\r' {
                if c == '\r' && bytes.get(i) == Some(&b'\n') {
                    i += 1;
                }
                out.end_line();
            } else if c == '\u{1B}' {
                i += escape_sequence_len(&bytes[i..]);
            } else if is_invisible(c) || (c.is_control() && c != '\t') {
                continue;
            } else if c.is_whitespace() && c != '\u{3000}' {
                out.space = true;
            } else {
                out.push_content(c.encode_utf8(&mut [0u8; 4]));
            }
        }
        out.text
    }

    #[test]
    fn clean_lines_equals_the_char_at_a_time_version() {
        let pieces = [
            "a",
            "Bc",
            " ",
            " ",
            "  ",
            "\t",
            "\n",
            "\n\n",
            "\r\n",
            "\r",
            "\u{0B}",
            "\u{1B}[1;33m",
            "\u{1B}]0;t\u{7}",
            "\u{1B}",
            "中文",
            "\u{3000}",
            "\u{a0}",
            "\u{200B}",
            "\u{AD}",
            "é",
            "\u{85}",
            "~",
            "!",
            "\u{7F}",
            "\u{1}",
            "😀",
            "\u{2028}",
        ];
        let mut rng = crate::test_rng::TestRng::new(0x9e37_79b9_7f4a_7c15);
        for round in 0..3000 {
            let count = [0, 1, 2, 3, 8, 40, 200][round % 7];
            let text = rng.text(&pieces, count);
            assert_eq!(clean_lines(&text), reference_clean_lines(&text), "{text:?}");
        }
    }
}
