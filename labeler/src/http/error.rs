//! Handler errors: the caller's mistake (4xx with a clear message) versus a bug or an outage
//! (an opaque 500 whose full cause chain goes to the log, never to the client).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::store::{RowError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Validation(String),
    /// A bad import: every rejected row with its line number.
    #[error("{message}")]
    Rows {
        message: String,
        errors: Vec<RowError>,
    },
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// 409 that the annotation page recognises by its `code`: the item was answered
    /// elsewhere, so the page keeps the typed text and moves on.
    #[error("{0}")]
    AlreadySubmitted(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("too many attempts; try again later")]
    TooManyRequests,
    #[error("internal error")]
    Unexpected(#[from] anyhow::Error),
}

impl AppError {
    pub fn unexpected(e: impl Into<anyhow::Error>) -> Self {
        Self::Unexpected(e.into())
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unexpected(e.into())
    }
}

/// The store's errors answer as they always have: a missing row 404, a conflict 409, a
/// refused input 400 (bad upload rows listed), a database failure an opaque 500.
impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => Self::NotFound(m),
            StoreError::Conflict(m) => Self::Conflict(m),
            e @ StoreError::AlreadySubmitted { .. } => Self::AlreadySubmitted(e.to_string()),
            StoreError::Invalid(m) => Self::Validation(m),
            StoreError::Rows { message, errors } => Self::Rows { message, errors },
            StoreError::Database(e) => Self::Unexpected(e.into()),
            StoreError::Unexpected(e) => Self::Unexpected(e),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::Rows { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::AlreadySubmitted(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            Self::Unexpected(e) => {
                tracing::error!(error = ?e, "request failed");
                serde_json::json!({"error": "internal error"})
            }
            Self::Rows { message, errors } => {
                serde_json::json!({"error": message, "rows": errors})
            }
            Self::AlreadySubmitted(message) => {
                serde_json::json!({"error": message, "code": "already_submitted"})
            }
            other => serde_json::json!({"error": other.to_string()}),
        };
        HttpResponse::build(self.status_code()).json(body)
    }
}

/// Maps actix's extractor failures (bad JSON, wrong types, oversized bodies, bad paths) to
/// a 4xx with the parser's message.
pub fn json_error(err: actix_web::error::JsonPayloadError) -> AppError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::OverflowKnownLength { .. } | E::Overflow { .. } => {
            AppError::PayloadTooLarge("request body is too large".into())
        }
        E::ContentType => AppError::Validation("expected Content-Type: application/json".into()),
        other => AppError::Validation(format!("invalid JSON body: {other}")),
    }
}
