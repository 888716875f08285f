//! Who is calling: an API token (`Authorization: Bearer jlt_...`) or a browser session (a
//! signed, HttpOnly, SameSite=Strict cookie). Session calls that change state must carry the
//! session's CSRF token (header `X-CSRF-Token`, or the `csrf_token` form field for pages).
//! Also the login rate limiter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use rand::RngCore;
use sqlx::PgPool;

use crate::accounts::{self, User};
use crate::error::AppError;
use crate::startup::AppState;

pub const SESSION_USER: &str = "user_id";
pub const SESSION_CSRF: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The caller of an API route, by token or by session (+ CSRF header for unsafe methods).
#[derive(Debug, Clone)]
pub struct ApiUser(pub User);

/// An admin, by token or session; anyone else gets 403.
#[derive(Debug, Clone)]
pub struct AdminUser(pub User);

/// The user of a browser page (session only). Form handlers check CSRF themselves with
/// [`check_csrf`], since the token travels in the body.
#[derive(Debug, Clone)]
pub struct PageUser {
    pub user: User,
    pub csrf: String,
}

fn pool(req: &HttpRequest) -> Result<PgPool, AppError> {
    req.app_data::<web::Data<PgPool>>()
        .map(|p| p.get_ref().clone())
        .ok_or_else(|| AppError::unexpected(anyhow::anyhow!("no database pool in app data")))
}

/// A fresh random CSRF token for a new session.
pub fn new_csrf_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Constant-time comparison of the session's CSRF token with the one sent.
pub fn check_csrf(session_token: &str, sent: &str) -> Result<(), AppError> {
    let a = session_token.as_bytes();
    let b = sent.as_bytes();
    let same = a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
    if same && !a.is_empty() {
        Ok(())
    } else {
        Err(AppError::Forbidden("missing or wrong CSRF token".into()))
    }
}

async fn session_user(
    pool: &PgPool,
    session: &Session,
) -> Result<Option<(User, String)>, AppError> {
    let id = session.get::<i64>(SESSION_USER).ok().flatten();
    let csrf = session.get::<String>(SESSION_CSRF).ok().flatten();
    let (Some(id), Some(csrf)) = (id, csrf) else {
        return Ok(None);
    };
    match accounts::user_by_id(pool, id).await? {
        Some(user) => Ok(Some((user, csrf))),
        None => {
            // Disabled or deleted since the cookie was issued.
            session.purge();
            Ok(None)
        }
    }
}

/// The user of an API token: from the server's token cache when looked up a moment ago, else
/// from the database (and then remembered).
async fn token_user(req: &HttpRequest, pool: &PgPool, token: &str) -> Result<User, AppError> {
    if !token.starts_with(accounts::TOKEN_PREFIX) {
        return Err(AppError::Unauthorized);
    }
    let digest = accounts::token_digest(token);
    let cache = req.app_data::<web::Data<AppState>>().map(|s| &s.tokens);
    if let Some(user) = cache.and_then(|c| c.get(&digest)) {
        return Ok(user);
    }
    let user = accounts::user_by_token_digest(pool, &digest)
        .await?
        .ok_or(AppError::Unauthorized)?;
    if let Some(cache) = cache {
        cache.put(digest, user.clone());
    }
    Ok(user)
}

async fn api_user(req: HttpRequest) -> Result<User, AppError> {
    let pool = pool(&req)?;
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(AppError::Unauthorized)?;
        return token_user(&req, &pool, token.trim()).await;
    }
    let session = req.get_session();
    let (user, csrf) = session_user(&pool, &session)
        .await?
        .ok_or(AppError::Unauthorized)?;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        check_csrf(&csrf, sent)?;
    }
    Ok(user)
}

impl FromRequest for ApiUser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { api_user(req).await.map(ApiUser) })
    }
}

impl FromRequest for AdminUser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let user = api_user(req).await?;
            if user.is_admin() {
                Ok(AdminUser(user))
            } else {
                Err(AppError::Forbidden("admins only".into()))
            }
        })
    }
}

/// A reviewer or an admin, by token or session; anyone else gets 403.
#[derive(Debug, Clone)]
pub struct ReviewerUser(pub User);

impl FromRequest for ReviewerUser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let user = api_user(req).await?;
            if user.can_review() {
                Ok(ReviewerUser(user))
            } else {
                Err(AppError::Forbidden("reviewers and admins only".into()))
            }
        })
    }
}

/// Missing session on a page: the handler wrapper turns this into a redirect to /login.
#[derive(Debug, thiserror::Error)]
#[error("sign in first")]
pub struct SignInFirst;

impl actix_web::ResponseError for SignInFirst {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::SEE_OTHER
    }
    fn error_response(&self) -> actix_web::HttpResponse {
        actix_web::HttpResponse::SeeOther()
            .insert_header((actix_web::http::header::LOCATION, "/login"))
            .finish()
    }
}

impl FromRequest for PageUser {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let pool = pool(&req)?;
            let session = req.get_session();
            match session_user(&pool, &session).await? {
                Some((user, csrf)) => Ok(PageUser { user, csrf }),
                None => Err(SignInFirst.into()),
            }
        })
    }
}

/// Failed logins per key (user name, client address) in a sliding window; past the limit,
/// logins for that key are refused until the window passes.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any of `keys` has used up its failures.
    pub fn is_blocked(&self, keys: &[&str]) -> bool {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, since)| now.duration_since(*since) < self.window);
        keys.iter()
            .any(|k| map.get(*k).is_some_and(|(n, _)| *n >= self.max_failures))
    }

    pub fn record_failure(&self, keys: &[&str]) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for k in keys {
            map.entry((*k).to_string()).or_insert((0, now)).0 += 1;
        }
    }
}
