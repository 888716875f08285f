//! Text normalization: Unicode NFC (or NFKC, which also folds full-width forms), broken
//! whitespace and control characters fixed, optional Traditional -> Simplified Chinese.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

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
/// removed; trailing spaces trimmed; at most one blank line in a row; no leading/trailing blank
/// lines.
pub fn normalize(text: &str, options: &NormalizeOptions) -> String {
    let unified: String = match options.unicode {
        UnicodeForm::Nfc => text.nfc().collect(),
        UnicodeForm::Nfkc => text.nfkc().collect(),
    };
    let converted = if options.traditional_to_simplified {
        zhconv::zhconv(&unified, zhconv::Variant::ZhHans)
    } else {
        unified
    };
    let mut out = String::with_capacity(converted.len());
    let mut blank_run = 0usize;
    let text = converted.replace("\r\n", "\n").replace('\r', "\n");
    for line in text.split('\n') {
        let mut clean = String::with_capacity(line.len());
        let mut space = false;
        for c in line.chars() {
            if is_invisible(c) || (c.is_control() && c != '\t') {
                continue;
            }
            if c.is_whitespace() && c != '\u{3000}' {
                space = true;
                continue;
            }
            if space && !clean.is_empty() {
                clean.push(' ');
            }
            space = false;
            clean.push(c);
        }
        if clean.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(&clean);
    }
    out
}
