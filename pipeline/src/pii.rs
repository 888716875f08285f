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

/// Applies the enabled redactions; returns the text and how many spans were replaced.
pub fn redact(text: &str, options: &PiiOptions) -> (String, usize) {
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
    if options.email {
        apply(&EMAIL, &options.email_replacement, None);
    }
    if options.cn_id_card {
        apply(&CN_ID, &options.id_card_replacement, Some(valid_cn_id));
    }
    if options.cn_mobile {
        apply(&CN_MOBILE, &options.phone_replacement, None);
    }
    if options.ip {
        apply(&IPV4, &options.ip_replacement, Some(valid_ipv4));
        apply(&IPV6, &options.ip_replacement, None);
    }
    (current.into_owned(), count)
}
