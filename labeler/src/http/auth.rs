//! Who is calling, and whether their role may: an API token (`Authorization: Bearer jlt_...`)
//! or a browser session (a signed, HttpOnly, SameSite=Strict cookie carrying a random session
//! id, live only while its `sessions` row is: see `store::sessions`). Session calls that
//! change state must carry the session's CSRF token: the `X-CSRF-Token` header for the API,
//! the `csrf_token` field for page forms, checked before any other field is read.
//!
//! One role check serves the API and the pages alike: [`ApiUser`], [`PageUser`] and
//! [`PageForm`] take the role a route needs as a type parameter ([`Anyone`], [`Reviewers`],
//! [`Admins`]) and refuse everyone else through [`authorize`], with the same 403 everywhere.

use std::marker::PhantomData;

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use rand::RngCore;
use serde::de::DeserializeOwned;
use sqlx::PgPool;

use crate::http::error::AppError;
use crate::state::AppState;
use crate::store::accounts::{self, User};
use crate::store::sessions::{self, SessionId, SessionPolicy};

pub const SESSION_USER: &str = "user_id";
pub const SESSION_CSRF: &str = "csrf";
/// The session id: the key of the session's `sessions` row.
pub const SESSION_ID: &str = "sid";
/// The CSRF token's field in page forms.
pub const CSRF_FIELD: &str = "csrf_token";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The role a route needs; a marker type per role.
pub trait Role: 'static {
    /// The 403 message for a signed-in user without the role.
    const REFUSAL: &'static str;
    fn allows(user: &User) -> bool;
}

/// Any signed-in, enabled user (annotators included).
#[derive(Debug, Clone, Copy)]
pub struct Anyone;

/// Reviewers and admins: they review responses and see dashboards.
#[derive(Debug, Clone, Copy)]
pub struct Reviewers;

/// Admins only.
#[derive(Debug, Clone, Copy)]
pub struct Admins;

impl Role for Anyone {
    const REFUSAL: &'static str = "signed-in users only";
    fn allows(_: &User) -> bool {
        true
    }
}

impl Role for Reviewers {
    const REFUSAL: &'static str = "reviewers and admins only";
    fn allows(user: &User) -> bool {
        user.can_review()
    }
}

impl Role for Admins {
    const REFUSAL: &'static str = "admins only";
    fn allows(user: &User) -> bool {
        user.is_admin()
    }
}

/// `user` if their role is `R`; 403 with `R`'s message otherwise.
pub fn authorize<R: Role>(user: User) -> Result<User, AppError> {
    if R::allows(&user) {
        Ok(user)
    } else {
        Err(AppError::Forbidden(R::REFUSAL.into()))
    }
}

/// The caller of an API route, with role `R`: by token, or by session (+ CSRF header for
/// unsafe methods). No credentials: 401; another role: 403.
#[derive(Debug, Clone)]
pub struct ApiUser<R = Anyone> {
    pub user: User,
    role: PhantomData<R>,
}

/// The user of a browser page, with role `R` (session only; no session: a redirect to
/// /login). `csrf` goes into the page for its forms and scripts.
#[derive(Debug, Clone)]
pub struct PageUser<R = Anyone> {
    pub user: User,
    pub csrf: String,
    role: PhantomData<R>,
}

/// A page form posted by a signed-in user with role `R`: the form's `csrf_token` is checked
/// against the session's before the role and before the other fields (a forged post, or one
/// without the token, is refused as forged whoever's session it rides on and whatever else
/// it lacks).
#[derive(Debug, Clone)]
pub struct PageForm<T, R = Anyone> {
    pub user: User,
    pub form: T,
    role: PhantomData<R>,
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

/// A posted form's fields (all text), with the CSRF token checked against `session_csrf`
/// first: a missing token is the same 403 as a wrong one, and only a genuine post hears
/// about its other fields (400 with the parser's message).
pub fn csrf_checked_form<T: DeserializeOwned>(
    session_csrf: &str,
    fields: Vec<(String, String)>,
) -> Result<T, AppError> {
    let sent = fields
        .iter()
        .find(|(name, _)| name == CSRF_FIELD)
        .map_or("", |(_, value)| value.as_str());
    check_csrf(session_csrf, sent)?;
    let object = fields
        .into_iter()
        .filter(|(name, _)| name != CSRF_FIELD)
        .map(|(name, value)| (name, serde_json::Value::String(value)))
        .collect::<serde_json::Map<_, _>>();
    serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| AppError::Validation(format!("bad form: {e}")))
}

/// The policy the server's sessions live by.
fn session_policy(req: &HttpRequest) -> Result<SessionPolicy, AppError> {
    req.app_data::<web::Data<AppState>>()
        .map(|s| s.sessions)
        .ok_or_else(|| AppError::unexpected(anyhow::anyhow!("no app state in app data")))
}

/// The cookie's session id, when it has one.
pub fn session_id(session: &Session) -> Option<SessionId> {
    session
        .get::<String>(SESSION_ID)
        .ok()
        .flatten()
        .map(SessionId::from_cookie)
}

/// The session's user and CSRF token, when the cookie names a live session of an enabled
/// user; otherwise the cookie is dropped.
async fn session_user(
    req: &HttpRequest,
    pool: &PgPool,
    session: &Session,
) -> Result<Option<(User, String)>, AppError> {
    let user_id = session.get::<i64>(SESSION_USER).ok().flatten();
    let csrf = session.get::<String>(SESSION_CSRF).ok().flatten();
    let (Some(user_id), Some(csrf), Some(id)) = (user_id, csrf, session_id(session)) else {
        return Ok(None);
    };
    match sessions::user(pool, session_policy(req)?, &id).await? {
        Some(user) if user.id == user_id => Ok(Some((user, csrf))),
        _ => {
            // Signed out, timed out, or the user disabled or given a new password since the
            // cookie was issued.
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
    let (user, csrf) = session_user(&req, &pool, &session)
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

impl<R: Role> FromRequest for ApiUser<R> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let user = authorize::<R>(api_user(req).await?)?;
            Ok(ApiUser {
                user,
                role: PhantomData,
            })
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

/// The session's user and CSRF token; [`SignInFirst`] without a live session.
async fn page_session(req: &HttpRequest) -> Result<(User, String), actix_web::Error> {
    let pool = pool(req)?;
    let session = req.get_session();
    match session_user(req, &pool, &session).await? {
        Some(found) => Ok(found),
        None => Err(SignInFirst.into()),
    }
}

impl<R: Role> FromRequest for PageUser<R> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let (user, csrf) = page_session(&req).await?;
            Ok(PageUser {
                user: authorize::<R>(user)?,
                csrf,
                role: PhantomData,
            })
        })
    }
}

impl<T, R> FromRequest for PageForm<T, R>
where
    T: DeserializeOwned + 'static,
    R: Role,
{
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        // The body is taken now (the payload is only lent to this call) and read below.
        let fields = web::Form::<Vec<(String, String)>>::from_request(&req, payload);
        Box::pin(async move {
            let (user, csrf) = page_session(&req).await?;
            let form = csrf_checked_form(&csrf, fields.await?.into_inner())?;
            Ok(PageForm {
                user: authorize::<R>(user)?,
                form,
                role: PhantomData,
            })
        })
    }
}
