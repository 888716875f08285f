//! Signing in and out. The login form needs a CSRF token before there is a user, so the
//! session gets one on first sight; a successful sign-in renews the session (no fixation),
//! starts its server-side record, and failures count towards the login limiter. Signing out
//! ends the record, so the cookie is worthless afterwards even if someone kept a copy.

use actix_session::Session;
use actix_web::{HttpRequest, HttpResponse, web};
use minijinja::context;
use serde::Deserialize;
use sqlx::PgPool;

use super::templates::{Templates, html, redirect};
use crate::http::auth::{self, PageForm, SESSION_CSRF, SESSION_ID, SESSION_USER};
use crate::http::error::AppError;
use crate::state::AppState;
use crate::store::accounts;
use crate::store::sessions::{self, SessionId};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(login_page))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout));
}

/// The session's CSRF token, made on first use (the login form needs one before sign-in).
fn ensure_csrf(session: &Session) -> Result<String, AppError> {
    if let Ok(Some(token)) = session.get::<String>(SESSION_CSRF) {
        return Ok(token);
    }
    let token = auth::new_csrf_token();
    session
        .insert(SESSION_CSRF, &token)
        .map_err(|e| AppError::unexpected(anyhow::anyhow!("session: {e}")))?;
    Ok(token)
}

async fn login_page(
    session: Session,
    templates: web::Data<Templates>,
) -> Result<HttpResponse, AppError> {
    let csrf = ensure_csrf(&session)?;
    let body = templates.render("login.html", context! { csrf, username => "" })?;
    Ok(html(body))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

async fn login(
    req: HttpRequest,
    session: Session,
    pool: web::Data<PgPool>,
    state: web::Data<AppState>,
    templates: web::Data<Templates>,
    fields: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let csrf = ensure_csrf(&session)?;
    let form: LoginForm = auth::csrf_checked_form(&csrf, fields.into_inner())?;
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let user_key = format!("user:{}", form.username);
    let ip_key = format!("ip:{peer}");
    let keys = [user_key.as_str(), ip_key.as_str()];
    let failed = |message: &str, status: actix_web::http::StatusCode| {
        templates
            .render(
                "login.html",
                context! { csrf => csrf.clone(), username => form.username.clone(), error => message },
            )
            .map(|body| {
                HttpResponse::build(status)
                    .content_type("text/html; charset=utf-8")
                    .body(body)
            })
    };
    if state.login_limiter.is_blocked(&keys) {
        return failed(
            "Too many failed sign-ins. Wait a few minutes and try again.",
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
        );
    }
    match accounts::authenticate(&pool, &form.username, &form.password).await? {
        Some(user) => {
            // Signing in again ends the session this browser had.
            if let Some(old) = auth::session_id(&session) {
                sessions::end(&pool, &old).await?;
            }
            // A new session (id and CSRF token) at sign-in: no fixation.
            let id = SessionId::generate();
            sessions::start(&pool, state.sessions, user.id, &id).await?;
            session.renew();
            session
                .insert(SESSION_USER, user.id)
                .and_then(|_| session.insert(SESSION_ID, id.as_str()))
                .and_then(|_| session.insert(SESSION_CSRF, auth::new_csrf_token()))
                .map_err(|e| AppError::unexpected(anyhow::anyhow!("session: {e}")))?;
            tracing::info!(user = %user.username, "signed in");
            Ok(redirect("/"))
        }
        None => {
            state.login_limiter.record_failure(&keys);
            failed(
                "Wrong user name or password.",
                actix_web::http::StatusCode::UNAUTHORIZED,
            )
        }
    }
}

/// The sign-out form: its CSRF token only.
#[derive(Debug, Deserialize)]
struct SignOutForm {}

async fn logout(
    _: PageForm<SignOutForm>,
    session: Session,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, AppError> {
    if let Some(id) = auth::session_id(&session) {
        sessions::end(&pool, &id).await?;
    }
    session.purge();
    Ok(redirect("/login"))
}
