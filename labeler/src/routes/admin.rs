//! Admin API: user management, project settings and the audit log. Every change is recorded
//! in the audit log by the handler that makes it.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use sqlx::PgPool;

use crate::accounts;
use crate::audit::{self, Action, Actor, Event};
use crate::auth::AdminUser;
use crate::domain::{Password, Role, Username};
use crate::error::AppError;
use crate::projects::{self, SettingsChange};

/// Routes under `/api` (called from the API scope's configuration).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/users", web::get().to(list_users))
        .route("/admin/users", web::post().to(add_user))
        .route("/admin/users/{name}", web::patch().to(change_user))
        .route("/admin/projects/{id}", web::patch().to(change_project))
        .route("/admin/audit", web::get().to(audit_log));
}

async fn list_users(_: AdminUser, pool: web::Data<PgPool>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(accounts::list_users(&pool).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
    role: String,
}

async fn add_user(
    AdminUser(admin): AdminUser,
    pool: web::Data<PgPool>,
    body: web::Json<NewUser>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let name = Username::parse(&body.username).map_err(AppError::Validation)?;
    let role = Role::parse(&body.role).map_err(AppError::Validation)?;
    let password = Password::parse(body.password).map_err(AppError::Validation)?;
    let id = accounts::add_user(&pool, &name, &password, role).await?;
    let event = Event::new(Action::UserAdd)
        .target(name.as_str())
        .details(serde_json::json!({"role": role.as_str()}));
    audit::record(pool.get_ref(), &Actor::user(&admin), event).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "id": id, "username": name.as_str(), "role": role.as_str(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    disabled: bool,
}

async fn change_user(
    AdminUser(admin): AdminUser,
    pool: web::Data<PgPool>,
    path: web::Path<String>,
    body: web::Json<UserChange>,
) -> Result<HttpResponse, AppError> {
    let name = Username::parse(&path.into_inner()).map_err(AppError::NotFound)?;
    if name.as_str() == admin.username && body.disabled {
        return Err(AppError::Validation("you cannot disable yourself".into()));
    }
    accounts::set_disabled(&pool, &name, body.disabled).await?;
    let action = if body.disabled {
        Action::UserDisable
    } else {
        Action::UserEnable
    };
    let event = Event::new(action).target(name.as_str());
    audit::record(pool.get_ref(), &Actor::user(&admin), event).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectChange {
    #[serde(default)]
    guidelines: Option<String>,
    #[serde(default)]
    rationale_required: Option<bool>,
    /// Share of handed-out items drawn from the gold items, 0 to 1.
    #[serde(default)]
    gold_rate: Option<f64>,
}

async fn change_project(
    AdminUser(admin): AdminUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    body: web::Json<ProjectChange>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    if let Some(g) = &body.guidelines {
        crate::domain::check_text(g)
            .map_err(|e| AppError::Validation(format!("guidelines: {e}")))?;
    }
    if let Some(rate) = body.gold_rate
        && !(0.0..=1.0).contains(&rate)
    {
        return Err(AppError::Validation(format!(
            "gold_rate {rate} must be between 0 and 1"
        )));
    }
    let change = SettingsChange {
        guidelines: body.guidelines,
        rationale_required: body.rationale_required,
        gold_rate: body.gold_rate,
    };
    let project = projects::update(&pool, path.into_inner(), &change).await?;
    let mut changed = serde_json::Map::new();
    if let Some(g) = &change.guidelines {
        changed.insert("guidelines_bytes".into(), g.len().into());
    }
    if let Some(r) = change.rationale_required {
        changed.insert("rationale_required".into(), r.into());
    }
    if let Some(r) = change.gold_rate {
        changed.insert("gold_rate".into(), r.into());
    }
    let event = Event::new(Action::ProjectUpdate)
        .project(project.id)
        .target(&project.name)
        .details(changed.into());
    audit::record(pool.get_ref(), &Actor::user(&admin), event).await?;
    Ok(HttpResponse::Ok().json(project))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    project: Option<i64>,
    before: Option<i64>,
    limit: Option<i64>,
}

async fn audit_log(
    _: AdminUser,
    pool: web::Data<PgPool>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::Validation(format!(
            "limit {limit} must be between 1 and 1000"
        )));
    }
    let entries = audit::list(&pool, query.project, query.before, limit).await?;
    Ok(HttpResponse::Ok().json(entries))
}
