//! The HTTP layer: who is calling (`auth`), what an error answers (`error`; pages get
//! `middleware`'s HTML error page), the JSON API (`api`) and the server-rendered pages
//! (`pages`). Handlers parse their input into checked types, call the store, and turn its
//! errors into answers through `From<StoreError>`.

pub mod api;
pub mod auth;
pub mod error;
pub mod login_limiter;
pub mod middleware;
pub mod pages;
pub mod pagination;
pub mod token_cache;
