//! Errors of the data contract. Every variant carries what locates the problem (the file,
//! the row, the field) so a user can go straight to it.

use std::path::PathBuf;

/// Anything that can go wrong writing or reading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid Arrow IPC file: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error("{path}: invalid manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error(
        "{path}: unknown format_version {found}; this build reads format_version {supported} (upgrade jielong or rewrite the dataset)"
    )]
    UnknownVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path}: dataset kind is {found}, expected {expected}")]
    KindMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{path}: manifest names this shard but the file is missing")]
    MissingShard { path: PathBuf },
    #[error(
        "{path}: shard is truncated or was rewritten: {actual} bytes on disk, manifest says {expected}"
    )]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error(
        "{path}: sha256 mismatch: file has {actual}, manifest says {expected} (corrupted shard)"
    )]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{path}: schema mismatch for a {kind} dataset: {message}")]
    SchemaMismatch {
        path: PathBuf,
        kind: String,
        message: String,
    },
    #[error(
        "{path}: shard holds {actual_rows} rows and {actual_tokens} tokens, manifest says {rows} and {tokens}"
    )]
    CountMismatch {
        path: PathBuf,
        rows: u64,
        tokens: u64,
        actual_rows: u64,
        actual_tokens: u64,
    },
    #[error(
        "{location}: token id {token} in column `{column}` is out of range for vocab_size {vocab_size}"
    )]
    TokenOutOfRange {
        location: String,
        column: String,
        token: u32,
        vocab_size: u32,
    },
    #[error("{location}: {message}")]
    InvalidRow { location: String, message: String },
    #[error("chat template: {0}")]
    Chat(String),
    #[error("{0}")]
    Misuse(String),
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// Attaches a path to an `io::Error`.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> FormatError {
    let path = path.into();
    move |source| FormatError::Io { path, source }
}

/// Attaches a path to an `ArrowError`.
pub(crate) fn arrow_err(
    path: impl Into<PathBuf>,
) -> impl FnOnce(arrow_schema::ArrowError) -> FormatError {
    let path = path.into();
    move |source| FormatError::Arrow { path, source }
}
