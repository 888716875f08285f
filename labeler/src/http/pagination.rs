//! Page sizes of the API's cursor-paged lists (prompts for the trainer, responses for
//! reviewers): one default and one upper bound, checked in one place.

use crate::http::error::AppError;

/// Default and largest page of a paged list.
pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 1000;

/// Checks a page size from the query string.
pub fn page_limit(limit: Option<i64>) -> Result<i64, AppError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(AppError::Validation(format!(
            "limit {n} must be between 1 and {MAX_PAGE}"
        ))),
    }
}
