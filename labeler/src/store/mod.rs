//! The database side: one module per group of tables, each a set of functions over a
//! `PgPool` or a transaction. They return [`StoreError`], never an HTTP type: the HTTP layer
//! (`http::error`) and the command line decide what a missing row or a conflict means to
//! their caller.

pub mod accounts;
pub mod annotator;
pub mod audit;
mod error;
pub mod export;
pub mod form_once;
pub mod import;
pub mod import_preview;
pub mod model_loop;
pub mod prelabels;
pub mod progress;
pub mod projects;
pub mod quality;
pub mod queue;
pub mod responses;
pub mod review;
pub mod sessions;
pub mod sso;
pub mod webhooks;

pub use error::{RowError, StoreError};
pub(crate) use error::{has_sqlstate, is_unique_violation};
