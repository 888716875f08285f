//! What a store function can fail with: the caller's mistake (no such row, a conflict with
//! what is stored, an input the database side refuses, bad rows of an upload) or a failure
//! of the database or of the code itself. The HTTP layer maps each to a status code.

/// One rejected input row (1-based line number).
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct RowError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A submit of an item whose answer is already stored (another tab, or another submit
    /// with a different idempotency key): nothing of this one was stored.
    #[error(
        "already submitted in another tab: assignment {assignment_id} has its answer, \
         this one was not saved"
    )]
    AlreadySubmitted { assignment_id: i64 },
    /// An input that only the store can judge (a gold mark naming no item, a draft that is
    /// not an object, ...).
    #[error("{0}")]
    Invalid(String),
    /// A bad upload: every rejected row with its line number.
    #[error("{message}")]
    Rows {
        message: String,
        errors: Vec<RowError>,
    },
    /// Not a `#[source]`: the message already holds it, and a cause chain would repeat it.
    #[error("database: {0}")]
    Database(sqlx::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl StoreError {
    pub fn unexpected(e: impl Into<anyhow::Error>) -> Self {
        Self::Unexpected(e.into())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

/// Whether `e` is PostgreSQL's unique_violation (an INSERT met a row it may not repeat).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    has_sqlstate(e, "23505")
}

/// Whether `e` is a database error with SQLSTATE `code`.
pub(crate) fn has_sqlstate(e: &sqlx::Error, code: &str) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.code().as_deref() == Some(code))
}
