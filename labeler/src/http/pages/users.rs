//! Users, roles and API tokens in the browser (admins): the same changes as `labeler user` /
//! `labeler token` and the admin API, through plain forms with the CSRF token. Each change is
//! in the audit log. Making a user or a token is guarded by a one-time form nonce, so a double
//! click makes one; a new token is shown once, in the reply to the post that made it.

use actix_web::{HttpResponse, web};
use minijinja::context;
use serde::Deserialize;
use sqlx::PgPool;

use super::templates::{Templates, html, redirect, user_ctx};
use crate::domain::{Password, Role, Username};
use crate::http::auth::{Admins, PageForm, PageUser, new_csrf_token};
use crate::http::error::AppError;
use crate::state::AppState;
use crate::store::accounts::{self, User};
use crate::store::audit::{self, Action, Actor, Event};
use crate::store::form_once;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/users", web::get().to(users_page))
        .route("/admin/users", web::post().to(add_user))
        .route("/admin/users/{name}/role", web::post().to(change_role))
        .route("/admin/users/{name}/disabled", web::post().to(set_disabled))
        .route("/admin/users/{name}/password", web::post().to(set_password))
        .route("/admin/users/{name}/tokens", web::post().to(create_token))
        .route("/admin/tokens/{id}/revoke", web::post().to(revoke_token));
}

#[derive(Debug, Deserialize)]
struct UsersQuery {
    #[serde(default)]
    done: Option<String>,
}

/// What a redirect back to the page says happened.
fn done_message(done: &str) -> Option<&'static str> {
    Some(match done {
        "added" => "User added.",
        "role" => "Role changed; it applies at once.",
        "disabled" => "User disabled: their sessions have ended and their tokens stop working.",
        "enabled" => "User enabled.",
        "password" => "Password set: the user's sessions have ended.",
        "revoked" => "Token revoked.",
        "again" => "That form was already sent; nothing more was done.",
        _ => return None,
    })
}

async fn render(
    templates: &Templates,
    pool: &PgPool,
    page: &PageUser<Admins>,
    message: Option<&str>,
    new_token: Option<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let users = accounts::list_users(pool).await?;
    let tokens = accounts::list_tokens(pool).await?;
    let body = templates.render(
        "users.html",
        context! {
            csrf => page.csrf, user => user_ctx(&page.user), users, tokens, message,
            roles => ["annotator", "reviewer", "admin"],
            nonce => new_csrf_token(),
            new_token => new_token.map(|(who, token)| context! { who, token }),
        },
    )?;
    Ok(html(body))
}

async fn users_page(
    page: PageUser<Admins>,
    pool: web::Data<PgPool>,
    templates: web::Data<Templates>,
    query: web::Query<UsersQuery>,
) -> Result<HttpResponse, AppError> {
    let message = query.done.as_deref().and_then(done_message);
    render(&templates, &pool, &page, message, None).await
}

fn username(name: &str) -> Result<Username, AppError> {
    Username::parse(name).map_err(AppError::NotFound)
}

#[derive(Debug, Deserialize)]
struct NewUserForm {
    username: String,
    role: String,
    password: String,
    nonce: String,
}

async fn add_user(
    PageForm {
        user: admin, form, ..
    }: PageForm<NewUserForm, Admins>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, AppError> {
    let name = Username::parse(form.username.trim()).map_err(AppError::Validation)?;
    let role = Role::parse(&form.role).map_err(AppError::Validation)?;
    let password = Password::parse(form.password).map_err(AppError::Validation)?;
    if !form_once::claim(&pool, admin.id, &form.nonce).await? {
        return Ok(redirect("/admin/users?done=again"));
    }
    accounts::add_user(&pool, &name, &password, role).await?;
    let event = Event::new(Action::UserAdd)
        .target(name.as_str())
        .details(serde_json::json!({"role": role.as_str()}));
    audit::record(pool.get_ref(), &Actor::user(&admin), event).await?;
    Ok(redirect("/admin/users?done=added"))
}

#[derive(Debug, Deserialize)]
struct RoleForm {
    role: String,
}

async fn change_role(
    PageForm {
        user: admin, form, ..
    }: PageForm<RoleForm, Admins>,
    pool: web::Data<PgPool>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let name = username(&path.into_inner())?;
    let role = Role::parse(&form.role).map_err(AppError::Validation)?;
    refuse_self(&admin, &name, "change your own role")?;
    let id = accounts::set_role(&pool, &name, role).await?;
    state.tokens.forget_user(id);
    let event = Event::new(Action::UserRole)
        .target(name.as_str())
        .details(serde_json::json!({"role": role.as_str()}));
    audit::record(pool.get_ref(), &Actor::user(&admin), event).await?;
    Ok(redirect("/admin/users?done=role"))
}

/// An admin may not lock themselves out (their own role, disabling themselves).
fn refuse_self(admin: &User, name: &Username, what: &str) -> Result<(), AppError> {
    if admin.username == name.as_str() {
        return Err(AppError::Validation(format!(
            "you cannot {what}: ask another admin"
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct DisabledForm {
    disabled: String,
}

async fn set_disabled(
    PageForm {
        user: admin, form, ..
    }: PageForm<DisabledForm, Admins>,
    pool: web::Data<PgPool>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let name = username(&path.into_inner())?;
    let disabled = match form.disabled.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(AppError::Validation(format!(
                "disabled must be true or false, not {other:?}"
            )));
        }
    };
    if disabled {
        refuse_self(&admin, &name, "disable yourself")?;
    }
    let id = accounts::set_disabled(&pool, &name, disabled).await?;
    state.tokens.forget_user(id);
    let (action, done) = if disabled {
        (Action::UserDisable, "disabled")
    } else {
        (Action::UserEnable, "enabled")
    };
    let event = Event::new(action).target(name.as_str());
    audit::record(pool.get_ref(), &Actor::user(&admin), event).await?;
    Ok(redirect(&format!("/admin/users?done={done}")))
}

#[derive(Debug, Deserialize)]
struct PasswordForm {
    password: String,
}

async fn set_password(
    PageForm {
        user: admin, form, ..
    }: PageForm<PasswordForm, Admins>,
    pool: web::Data<PgPool>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let name = username(&path.into_inner())?;
    let password = Password::parse(form.password).map_err(AppError::Validation)?;
    accounts::set_password(&pool, &name, &password).await?;
    let event = Event::new(Action::UserPassword).target(name.as_str());
    audit::record(pool.get_ref(), &Actor::user(&admin), event).await?;
    Ok(redirect("/admin/users?done=password"))
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    name: String,
    nonce: String,
}

/// Makes a token and shows it in this reply only (no redirect: it is never stored).
async fn create_token(
    page: PageUser<Admins>,
    PageForm {
        user: admin, form, ..
    }: PageForm<TokenForm, Admins>,
    pool: web::Data<PgPool>,
    templates: web::Data<Templates>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let name = username(&path.into_inner())?;
    let label = form.name.trim();
    if label.is_empty() || label.chars().count() > 100 {
        return Err(AppError::Validation(
            "a token needs a name of 1-100 characters (what it is for)".into(),
        ));
    }
    crate::domain::check_text(label).map_err(|e| AppError::Validation(format!("name: {e}")))?;
    if !form_once::claim(&pool, admin.id, &form.nonce).await? {
        return Ok(redirect("/admin/users?done=again"));
    }
    let token = accounts::create_token(&pool, &name, label).await?;
    let event = Event::new(Action::TokenCreate)
        .target(name.as_str())
        .details(serde_json::json!({"name": label}));
    audit::record(pool.get_ref(), &Actor::user(&admin), event).await?;
    let new_token = Some((name.as_str().to_string(), token));
    render(&templates, &pool, &page, None, new_token).await
}

async fn revoke_token(
    PageForm { user: admin, .. }: PageForm<serde_json::Value, Admins>,
    pool: web::Data<PgPool>,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let (user_id, username) = accounts::revoke_token(&pool, id).await?;
    state.tokens.forget_user(user_id);
    let event = Event::new(Action::TokenRevoke)
        .target(&username)
        .details(serde_json::json!({"token_id": id}));
    audit::record(pool.get_ref(), &Actor::user(&admin), event).await?;
    Ok(redirect("/admin/users?done=revoked"))
}
