//! Accounts: user names, roles, passwords.

use std::fmt;

/// 1-64 characters of `[A-Za-z0-9_.-]` (the database checks the same pattern).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Self, String> {
        if is_name(s) {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "user name {s:?} must be 1-64 characters of letters, digits, '_', '.', '-'"
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    /// Reviews submitted responses (accept, reject, edit) and sees the dashboards.
    Reviewer,
    Annotator,
}

impl Role {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Self::Admin),
            "reviewer" => Ok(Self::Reviewer),
            "annotator" => Ok(Self::Annotator),
            _ => Err(format!(
                "role {s:?} is not one of: admin, reviewer, annotator"
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Reviewer => "reviewer",
            Self::Annotator => "annotator",
        }
    }
}

/// A password as typed: 8 to 1024 characters. Never logged (no Display; Debug is redacted).
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(s: String) -> Result<Self, String> {
        let n = s.chars().count();
        if n < 8 {
            return Err("password must be at least 8 characters".into());
        }
        if n > 1024 {
            return Err("password must be at most 1024 characters".into());
        }
        Ok(Self(s))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}
