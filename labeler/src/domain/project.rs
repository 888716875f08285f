//! Projects: name, kind, overlap.

use super::account::is_name;

/// 1-64 characters of `[A-Za-z0-9_.-]`; it appears in export ids and file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectName(String);

impl ProjectName {
    pub fn parse(s: &str) -> Result<Self, String> {
        if is_name(s) {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "project name {s:?} must be 1-64 characters of letters, digits, '_', '.', '-'"
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What annotators do in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectKind {
    /// Write the assistant's answer (supervised fine-tuning data).
    Sft,
    /// Compare two candidate answers (preference data).
    Preference,
    /// Judge one answer: thumbs up or down, optional 1-5 scores per aspect, a comment
    /// (unpaired feedback, as KTO takes it).
    Rating,
}

impl ProjectKind {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "sft" => Ok(Self::Sft),
            "preference" => Ok(Self::Preference),
            "rating" => Ok(Self::Rating),
            _ => Err(format!(
                "project kind {s:?} is not one of: sft, preference, rating"
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sft => "sft",
            Self::Preference => "preference",
            Self::Rating => "rating",
        }
    }
}

/// How many distinct annotators answer each item: 1 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlap(i32);

impl Overlap {
    pub fn parse(n: i64) -> Result<Self, String> {
        if (1..=100).contains(&n) {
            Ok(Self(n as i32))
        } else {
            Err(format!("overlap {n} must be between 1 and 100"))
        }
    }
    pub fn get(self) -> i32 {
        self.0
    }
}
