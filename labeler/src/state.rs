//! `AppState`: the shared, read-mostly state of the running app (lease and session policies,
//! login limiter, token cache). Its own module so the request extractors and the handlers can read it
//! without importing the start-up code that builds it.

use crate::http::login_limiter::LoginLimiter;
use crate::http::token_cache::TokenCache;
use crate::store::queue::LeasePolicy;
use crate::store::sessions::SessionPolicy;

/// Shared, read-mostly state of the running app.
#[derive(Debug)]
pub struct AppState {
    pub lease: LeasePolicy,
    /// Idle and absolute timeouts of browser sessions.
    pub sessions: SessionPolicy,
    pub login_limiter: LoginLimiter,
    /// API-token lookups of the last `token_cache_seconds`.
    pub tokens: TokenCache,
    /// The dashboard flags annotators whose median seconds per item are below this.
    pub fast_annotator_seconds: f64,
    /// OpenID Connect sign-in, when configured.
    pub oidc: Option<crate::oidc::OidcClient>,
}
