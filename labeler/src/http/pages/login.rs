//! Signing in and out, with a password or through OpenID Connect (`crate::oidc`, when
//! configured). The login form needs a CSRF token before there is a user, so the session
//! gets one on first sight; a successful sign-in renews the session (no fixation), starts its
//! server-side record, and failed passwords count towards the login limiter. Signing out ends
//! the record, so the cookie is worthless afterwards even if someone kept a copy.
//!
//! Single sign-on keeps its state, nonce and PKCE verifier in the session between
//! `/login/oidc` and the callback, for one use. The session cookie is `SameSite=Strict`, so
//! a browser coming back from a provider on another site does not send it; the callback then
//! answers with a page that reloads the same callback from this site, which does.

use actix_session::Session;
use actix_web::{HttpRequest, HttpResponse, web};
use minijinja::context;
use serde::Deserialize;
use sqlx::PgPool;

use super::templates::{Templates, html, redirect};
use crate::http::auth::{self, PageForm, SESSION_CSRF, SESSION_ID, SESSION_USER};
use crate::http::error::AppError;
use crate::state::AppState;
use crate::store::sessions::{self, SessionId};
use crate::store::{accounts, sso};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(login_page))
        .route("/login", web::post().to(login))
        .route("/login/oidc", web::get().to(sso_start))
        .route("/login/oidc/callback", web::get().to(sso_callback))
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

/// The single sign-on button's words, when it is configured.
fn sso_label(state: &AppState) -> Option<String> {
    state.oidc.as_ref().map(|c| c.label().to_string())
}

async fn login_page(
    session: Session,
    state: web::Data<AppState>,
    templates: web::Data<Templates>,
) -> Result<HttpResponse, AppError> {
    let csrf = ensure_csrf(&session)?;
    let body = templates.render(
        "login.html",
        context! { csrf, username => "", sso_label => sso_label(&state) },
    )?;
    Ok(html(body))
}

/// The login page again, with `error` and `status`.
fn login_failed(
    templates: &Templates,
    state: &AppState,
    csrf: String,
    username: &str,
    error: &str,
    status: actix_web::http::StatusCode,
) -> Result<HttpResponse, AppError> {
    let body = templates.render(
        "login.html",
        context! { csrf, username, error, sso_label => sso_label(state) },
    )?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .body(body))
}

/// Starts a session for `user` (ending the one this browser had): a new id and CSRF token.
async fn begin_session(
    session: &Session,
    pool: &PgPool,
    state: &AppState,
    user: &accounts::User,
) -> Result<(), AppError> {
    if let Some(old) = auth::session_id(session) {
        sessions::end(pool, &old).await?;
    }
    let id = SessionId::generate();
    sessions::start(pool, state.sessions, user.id, &id).await?;
    session.renew();
    session
        .insert(SESSION_USER, user.id)
        .and_then(|_| session.insert(SESSION_ID, id.as_str()))
        .and_then(|_| session.insert(SESSION_CSRF, auth::new_csrf_token()))
        .map_err(|e| AppError::unexpected(anyhow::anyhow!("session: {e}")))?;
    tracing::info!(user = %user.username, "signed in");
    Ok(())
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
    let failed = |message: &str, status| {
        login_failed(
            &templates,
            &state,
            csrf.clone(),
            &form.username,
            message,
            status,
        )
    };
    if state.login_limiter.is_blocked(&keys) {
        return failed(
            "Too many failed sign-ins. Wait a few minutes and try again.",
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
        );
    }
    match accounts::authenticate(&pool, &form.username, &form.password).await? {
        Some(user) => {
            // A new session (id and CSRF token) at sign-in: no fixation.
            begin_session(&session, &pool, &state, &user).await?;
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

/// Where a single sign-on under way keeps its state, nonce and verifier.
const SESSION_OIDC: &str = "oidc_pending";

/// `GET /login/oidc`: off to the provider.
async fn sso_start(
    session: Session,
    state: web::Data<AppState>,
    templates: web::Data<Templates>,
) -> Result<HttpResponse, AppError> {
    let Some(client) = &state.oidc else {
        return Err(AppError::NotFound(
            "single sign-on is not configured here".into(),
        ));
    };
    let csrf = ensure_csrf(&session)?;
    match client.start().await {
        Ok((url, pending)) => {
            session
                .insert(SESSION_OIDC, &pending)
                .map_err(|e| AppError::unexpected(anyhow::anyhow!("session: {e}")))?;
            Ok(redirect(&url))
        }
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on could not start");
            let message = format!("Sign-in with {} is not available: {e}", client.label());
            let status = actix_web::http::StatusCode::BAD_GATEWAY;
            login_failed(&templates, &state, csrf, "", &message, status)
        }
    }
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
    /// Set by the page that reloads the callback from this site (see the module).
    #[serde(default)]
    bounced: Option<String>,
}

/// `GET /login/oidc/callback`: the provider's answer.
async fn sso_callback(
    session: Session,
    pool: web::Data<PgPool>,
    state: web::Data<AppState>,
    templates: web::Data<Templates>,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, AppError> {
    use actix_web::http::StatusCode;
    let Some(client) = &state.oidc else {
        return Err(AppError::NotFound(
            "single sign-on is not configured here".into(),
        ));
    };
    let pending = session
        .get::<crate::oidc::Pending>(SESSION_OIDC)
        .ok()
        .flatten();
    let query = query.into_inner();
    if pending.is_none() && query.bounced.is_none() && query.state.is_some() {
        // The cookie stayed behind (a cross-site return): reload from this site.
        return bounce(&templates, &query);
    }
    session.remove(SESSION_OIDC);
    let csrf = ensure_csrf(&session)?;
    let fail = |message: String, status| {
        let message = format!("Sign-in with {} failed: {message}", client.label());
        login_failed(&templates, &state, csrf.clone(), "", &message, status)
    };
    if let Some(error) = &query.error {
        let why = query.error_description.as_deref().unwrap_or(error);
        return fail(why.to_string(), StatusCode::UNAUTHORIZED);
    }
    let Some(pending) = pending else {
        return fail(
            "this sign-in was not started here, or has already been used; try again".into(),
            StatusCode::BAD_REQUEST,
        );
    };
    let sent = query.state.as_deref().unwrap_or_default();
    if !crate::oidc::constant_time_eq(sent.as_bytes(), pending.state.as_bytes()) {
        return fail(
            "the answer does not belong to this sign-in (state); try again".into(),
            StatusCode::BAD_REQUEST,
        );
    }
    let Some(code) = query.code.as_deref() else {
        return fail("the provider sent no code".into(), StatusCode::BAD_REQUEST);
    };
    let identity = match client.finish(code, &pending).await {
        Ok(identity) => identity,
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on refused");
            let status = match e {
                crate::oidc::OidcError::Provider(_) => StatusCode::BAD_GATEWAY,
                crate::oidc::OidcError::Refused(_) => StatusCode::UNAUTHORIZED,
            };
            return fail(e.to_string(), status);
        }
    };
    if let Some(iss) = &query.iss
        && *iss != identity.issuer
    {
        return fail(
            "the answer names another issuer".into(),
            StatusCode::UNAUTHORIZED,
        );
    }
    let signed = sso::sign_in(
        &pool,
        &identity.issuer,
        &identity.subject,
        &identity.username,
        identity.role,
    )
    .await?;
    match signed {
        Ok(user) => {
            begin_session(&session, &pool, &state, &user).await?;
            Ok(redirect("/"))
        }
        Err(refusal) => fail(refusal.to_string(), StatusCode::FORBIDDEN),
    }
}

/// A page that loads the callback again from this site, so the session cookie comes along.
fn bounce(templates: &Templates, query: &CallbackQuery) -> Result<HttpResponse, AppError> {
    let mut params: Vec<(&str, &str)> = Vec::new();
    for (name, value) in [
        ("code", &query.code),
        ("state", &query.state),
        ("iss", &query.iss),
    ] {
        if let Some(value) = value {
            params.push((name, value.as_str()));
        }
    }
    params.push(("bounced", "1"));
    let url = reqwest::Url::parse_with_params("http://localhost/login/oidc/callback", &params)
        .map_err(AppError::unexpected)?;
    let again = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let body = templates.render("sso_bounce.html", context! { again })?;
    Ok(html(body))
}
