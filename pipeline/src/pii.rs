//! PII redaction: e-mail and IP addresses by default; Chinese mobile numbers and resident ID
//! numbers (checksum-validated) as options.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PiiOptions {
    pub email: bool,
    pub ip: bool,
    pub cn_mobile: bool,
    pub cn_id_card: bool,
    pub email_replacement: String,
    pub ip_replacement: String,
    pub phone_replacement: String,
    pub id_card_replacement: String,
}

impl Default for PiiOptions {
    fn default() -> Self {
        Self {
            email: true,
            ip: true,
            cn_mobile: false,
            cn_id_card: false,
            email_replacement: "<EMAIL>".into(),
            ip_replacement: "<IP_ADDRESS>".into(),
            phone_replacement: "<PHONE>".into(),
            id_card_replacement: "<ID_NUMBER>".into(),
        }
    }
}

impl PiiOptions {
    /// Whether any redaction is on.
    pub fn any(&self) -> bool {
        self.email || self.ip || self.cn_mobile || self.cn_id_card
    }
}

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("static regex {pattern}: {e}"))
}

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)\b[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}\b"));
/// Dotted numbers; `valid_ipv4` keeps exactly four octets, so `1.2.3.4.5` is not an address.
static IPV4: LazyLock<Regex> = LazyLock::new(|| regex(r"\b\d{1,3}(?:\.\d{1,3}){3,}\b"));
static IPV6: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b"));
static CN_MOBILE: LazyLock<Regex> = LazyLock::new(|| regex(r"(?:\+?86[- ]?)?\b1[3-9]\d{9}\b"));
static CN_ID: LazyLock<Regex> = LazyLock::new(|| regex(r"\b\d{17}[\dXx]\b"));

fn valid_ipv4(candidate: &str) -> bool {
    let parts: Vec<&str> = candidate.split('.').collect();
    parts.len() == 4 && parts.iter().all(|p| p.parse::<u8>().is_ok())
}

/// GB 11643 checksum of an 18-character resident ID number.
fn valid_cn_id(id: &str) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let bytes = id.as_bytes();
    if bytes.len() != 18 {
        return false;
    }
    let sum: u32 = bytes[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    bytes[17].to_ascii_uppercase() == CHECK[(sum % 11) as usize]
}

/// What one pass over a text finds of the characters each pattern needs. A pattern whose
/// needs are missing cannot match, so its regex does not run: on text with a non-ASCII
/// character the regexes' Unicode `\b` falls back from the lazy DFA to a backtracking search
/// of the whole text, the larger part of redaction's time. The counts over-approximate what a
/// match needs (a digit is any numeric character, since `\d` is Unicode), so skipping never
/// changes the output.
#[derive(Debug, Default, PartialEq)]
struct Needs {
    at_sign: bool,
    colons: usize,
    /// Dots with a digit on both sides (an IPv4 match has three).
    digit_dots: usize,
    /// The longest run of digits (a mobile number has 11, an ID number 17 before its last
    /// character).
    digit_run: usize,
}

/// Whether `c` may be matched by `\d` (Unicode `Nd`, a subset of the numeric categories);
/// CJK ideographs answer without the Unicode tables.
fn maybe_digit(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else {
        !crate::filters::is_cjk_ideograph(c) && c.is_numeric()
    }
}

impl Needs {
    /// Needs that allow every pattern.
    fn everything() -> Self {
        Self {
            at_sign: true,
            colons: usize::MAX,
            digit_dots: usize::MAX,
            digit_run: usize::MAX,
        }
    }

    fn of(text: &str) -> Self {
        let mut needs = Self::default();
        let (mut run, mut before_dot) = (0usize, false);
        // `before_dot`: the previous character was a dot preceded by a digit.
        let mut previous_digit = false;
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            // ASCII other than digits, '.', ':' and '@' only resets the state: skipped a byte
            // at a time.
            if PLAIN_ASCII[usize::from(bytes[i])] {
                while i < bytes.len() && PLAIN_ASCII[usize::from(bytes[i])] {
                    i += 1;
                }
                (run, before_dot, previous_digit) = (0, false, false);
                continue;
            }
            let c = if bytes[i].is_ascii() {
                char::from(bytes[i])
            } else {
                text[i..].chars().next().unwrap_or_default()
            };
            i += c.len_utf8();
            let digit = maybe_digit(c);
            if digit {
                run += 1;
                needs.digit_run = needs.digit_run.max(run);
                if before_dot {
                    needs.digit_dots += 1;
                }
            } else {
                run = 0;
                match c {
                    '@' => needs.at_sign = true,
                    ':' => needs.colons += 1,
                    _ => {}
                }
            }
            before_dot = c == '.' && previous_digit;
            previous_digit = digit;
        }
        needs
    }
}

/// ASCII bytes that are not a digit, '.', ':' or '@'.
static PLAIN_ASCII: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 128 {
        table[b] = !matches!(b as u8, b'0'..=b'9' | b'.' | b':' | b'@');
        b += 1;
    }
    table
};

/// Applies the enabled redactions; returns the text and how many spans were replaced.
pub fn redact(text: &str, options: &PiiOptions) -> (String, usize) {
    let (redacted, count) = redact_borrowed(text, options);
    (redacted.into_owned(), count)
}

/// [`redact`], borrowing `text` back when nothing was replaced (most documents: no copy).
pub fn redact_borrowed<'t>(text: &'t str, options: &PiiOptions) -> (Cow<'t, str>, usize) {
    redact_with(text, options, Needs::of(text))
}

/// [`redact_borrowed`], running only the regexes `needs` allows.
fn redact_with<'t>(text: &'t str, options: &PiiOptions, needs: Needs) -> (Cow<'t, str>, usize) {
    let mut count = 0usize;
    let mut current: Cow<'_, str> = Cow::Borrowed(text);
    let mut apply = |re: &Regex, replacement: &str, check: Option<fn(&str) -> bool>| {
        let replaced = re.replace_all(&current, |caps: &regex::Captures<'_>| {
            let m = &caps[0];
            if check.is_none_or(|f| f(m)) {
                count += 1;
                replacement.to_string()
            } else {
                m.to_string()
            }
        });
        if let Cow::Owned(s) = replaced {
            current = Cow::Owned(s);
        }
    };
    // Each regex runs on the text the previous ones left. A replacement with at least one
    // character and no digit, dot, colon or `@` (the defaults) adds none of what the needs
    // count and joins no digits across it, so the needs of the input bound every later text;
    // with another replacement every enabled regex runs.
    let allows = |replacement: &str| {
        !replacement.is_empty()
            && !replacement
                .chars()
                .any(|c| maybe_digit(c) || matches!(c, '.' | ':' | '@'))
    };
    let exact = allows(&options.email_replacement)
        && allows(&options.ip_replacement)
        && allows(&options.phone_replacement)
        && allows(&options.id_card_replacement);
    let needs = if exact { needs } else { Needs::everything() };
    if options.email && needs.at_sign {
        apply(&EMAIL, &options.email_replacement, None);
    }
    if options.cn_id_card && needs.digit_run >= 17 {
        apply(&CN_ID, &options.id_card_replacement, Some(valid_cn_id));
    }
    if options.cn_mobile && needs.digit_run >= 11 {
        apply(&CN_MOBILE, &options.phone_replacement, None);
    }
    if options.ip {
        if needs.digit_dots >= 3 {
            apply(&IPV4, &options.ip_replacement, Some(valid_ipv4));
        }
        if needs.colons >= 7 {
            apply(&IPV6, &options.ip_replacement, None);
        }
    }
    (current, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Needs::of` as it was before plain ASCII was skipped a byte at a time.
    fn reference_needs(text: &str) -> Needs {
        let mut needs = Needs::default();
        let (mut run, mut before_dot) = (0usize, false);
        let mut previous_digit = false;
        for c in text.chars() {
            let digit = maybe_digit(c);
            if digit {
                run += 1;
                needs.digit_run = needs.digit_run.max(run);
                if before_dot {
                    needs.digit_dots += 1;
                }
            } else {
                run = 0;
                match c {
                    '@' => needs.at_sign = true,
                    ':' => needs.colons += 1,
                    _ => {}
                }
            }
            before_dot = c == '.' && previous_digit;
            previous_digit = digit;
        }
        needs
    }

    #[test]
    fn needs_equal_the_char_at_a_time_count() {
        let pieces = [
            "1", "2", "9", ".", ":", "@", "a", " ", "x.", "中", "１", "٣", "\n", "Ⅻ", "é",
        ];
        let mut rng = crate::test_rng::TestRng::new(0x2545_f491_4f6c_dd1d);
        for round in 0..3000 {
            let count = [0, 1, 4, 15, 60][round % 5];
            let text = rng.text(&pieces, count);
            assert_eq!(Needs::of(&text), reference_needs(&text), "{text:?}");
        }
    }

    #[test]
    fn skipping_regexes_by_the_characters_they_need_changes_no_output() {
        let all = PiiOptions {
            cn_mobile: true,
            cn_id_card: true,
            ..PiiOptions::default()
        };
        let texts = [
            "mail a.b@example.com or 192.168.0.1, 2001:db8:0:0:0:0:2:1",
            "电话13812345678，邮箱张三@例子.中国 与 x@y.cn；身份证110105194912310021。",
            "近似 1.2.3 和 1.2.3.4.5 与 10.0.0.256，时间 12:30:45:1:2:3:4",
            // Digits the Unicode `\d` matches beside ASCII ones: full-width and Arabic-Indic.
            "１３８１２３４５６７８ and ١٩٢.١٦٨.٠.١ and 1.2.３.4",
            "no candidates here at all, only words.",
            "",
        ];
        for options in [PiiOptions::default(), all] {
            for text in texts {
                assert_eq!(
                    redact_borrowed(text, &options),
                    redact_with(text, &options, Needs::everything()),
                    "{text}"
                );
                assert_eq!(redact(text, &options).0, redact_borrowed(text, &options).0);
            }
        }
        // The texts do exercise the regexes: something is replaced.
        assert_eq!(redact(texts[0], &PiiOptions::default()).1, 3);
        let custom = PiiOptions {
            ip_replacement: "0.0.0.0".into(),
            ..PiiOptions::default()
        };
        assert_eq!(
            redact_borrowed(texts[0], &custom),
            redact_with(texts[0], &custom, Needs::everything())
        );
        // Nothing replaced: the text is borrowed back, not copied.
        assert!(matches!(
            redact_borrowed(texts[4], &PiiOptions::default()),
            (Cow::Borrowed(_), 0)
        ));
    }
}
