//! Admin API: user management, project settings (webhooks included) and the audit log. Every
//! change is recorded in the audit log by the handler that makes it.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::domain::{Aspect, Aspects, Password, ProjectName, Role, Username};
use crate::http::auth::{Admins, ApiUser};
use crate::http::error::AppError;
use crate::state::AppState;
use crate::store::accounts;
use crate::store::audit::{self, Action, Actor, Event};
use crate::store::projects::{self, SettingsChange};
use crate::store::webhooks::{self, WebhookChange, WebhookSecret, WebhookUrl};

/// Routes under `/api` (called from the API scope's configuration).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/users", web::get().to(list_users))
        .route("/admin/users", web::post().to(add_user))
        .route("/admin/users/{name}", web::patch().to(change_user))
        .route("/admin/projects/{id}", web::patch().to(change_project))
        .route(
            "/admin/projects/{id}/webhook",
            web::get().to(project_webhook),
        )
        .route("/admin/audit", web::get().to(audit_log));
}

async fn list_users(_: ApiUser<Admins>, pool: web::Data<PgPool>) -> Result<HttpResponse, AppError> {
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
    ApiUser { user: admin, .. }: ApiUser<Admins>,
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
    ApiUser { user: admin, .. }: ApiUser<Admins>,
    pool: web::Data<PgPool>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<UserChange>,
) -> Result<HttpResponse, AppError> {
    let name = Username::parse(&path.into_inner()).map_err(AppError::NotFound)?;
    if name.as_str() == admin.username && body.disabled {
        return Err(AppError::Validation("you cannot disable yourself".into()));
    }
    let user_id = accounts::set_disabled(&pool, &name, body.disabled).await?;
    if body.disabled {
        state.tokens.forget_user(user_id);
    }
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
    /// A new name (unique, like at creation).
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    guidelines: Option<String>,
    #[serde(default)]
    rationale_required: Option<bool>,
    /// Share of handed-out items drawn from the gold items, 0 to 1.
    #[serde(default)]
    gold_rate: Option<f64>,
    /// Archive (hidden from annotators) or bring back.
    #[serde(default)]
    archived: Option<bool>,
    /// Model pre-labels: `off`, `hidden` (shown after the annotator answers) or `shown`.
    #[serde(default)]
    prelabels: Option<crate::store::prelabels::PrelabelMode>,
    /// Rating projects: the whole new list, `[{"name", "guideline"}]` as at creation. Aspects
    /// may be added, reordered and their guidelines edited; one a response scored stays.
    #[serde(default)]
    aspects: Option<Vec<Aspect>>,
    /// Preference projects, before the first response: rank all answers instead of two.
    #[serde(default)]
    ranking: Option<bool>,
    /// Absent: unchanged; `null`: no webhook; a URL: send events there.
    #[serde(default, deserialize_with = "present")]
    webhook_url: Option<Option<String>>,
    /// A secret of your own (16-256 visible ASCII characters); absent keeps the stored one
    /// or, when there is none, the server makes one and shows it in this reply only.
    #[serde(default)]
    webhook_secret: Option<String>,
    /// Replace the stored secret with a new one made by the server.
    #[serde(default)]
    rotate_webhook_secret: bool,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`, by `default`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl ProjectChange {
    /// The webhook part, checked; `None` when the request does not touch the webhook.
    fn webhook(&mut self) -> Result<Option<WebhookChange>, AppError> {
        let secret = self
            .webhook_secret
            .take()
            .map(WebhookSecret::parse)
            .transpose()
            .map_err(AppError::Validation)?;
        let rotate = self.rotate_webhook_secret;
        if rotate && secret.is_some() {
            return Err(AppError::Validation(
                "send webhook_secret or rotate_webhook_secret, not both".into(),
            ));
        }
        Ok(match self.webhook_url.take() {
            Some(Some(url)) => Some(WebhookChange::Set {
                url: WebhookUrl::parse(&url).map_err(AppError::Validation)?,
                secret,
                rotate,
            }),
            Some(None) if secret.is_some() || rotate => {
                return Err(AppError::Validation(
                    "webhook_url null removes the webhook; leave out webhook_secret".into(),
                ));
            }
            Some(None) => Some(WebhookChange::Remove),
            None if secret.is_some() || rotate => Some(WebhookChange::Secret { secret, rotate }),
            None => None,
        })
    }
}

/// A project with its webhook (admins only: the URL may hold a token), and a secret the
/// server just made (this once).
#[derive(Debug, Serialize)]
struct ProjectSettings {
    #[serde(flatten)]
    project: projects::Project,
    webhook: Option<webhooks::WebhookInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_secret: Option<String>,
}

async fn change_project(
    ApiUser { user: admin, .. }: ApiUser<Admins>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    body: web::Json<ProjectChange>,
) -> Result<HttpResponse, AppError> {
    let mut body = body.into_inner();
    let hook = body.webhook()?;
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
    let name = body
        .name
        .as_deref()
        .map(|n| ProjectName::parse(n.trim()).map_err(AppError::Validation))
        .transpose()?;
    let change = SettingsChange {
        name,
        guidelines: body.guidelines,
        rationale_required: body.rationale_required,
        gold_rate: body.gold_rate,
        prelabels: body.prelabels.map(|m| m.stored()),
        aspects: body
            .aspects
            .take()
            .map(Aspects::parse)
            .transpose()
            .map_err(AppError::Validation)?,
        ranking: body.ranking,
    };
    // The settings, the webhook and their audit rows commit together.
    let mut tx = pool.begin().await?;
    let mut project = projects::update(&mut tx, path.into_inner(), &change).await?;
    let actor = Actor::user(&admin);
    if let Some(archived) = body.archived
        && archived != project.archived
    {
        project = projects::set_archived(&mut *tx, project.id, archived).await?;
        let action = if archived {
            Action::ProjectArchive
        } else {
            Action::ProjectUnarchive
        };
        let event = Event::new(action).project(project.id).target(&project.name);
        audit::record(&mut *tx, &actor, event).await?;
    }
    let mut generated = None;
    let touches_webhook = hook.is_some();
    if let Some(hook) = hook {
        let applied = webhooks::apply(&mut tx, project.id, hook).await?;
        generated = applied.generated_secret;
        let event = Event::new(Action::ProjectWebhook)
            .project(project.id)
            .target(&project.name)
            .details(applied.audit);
        audit::record(&mut *tx, &actor, event).await?;
    }
    let mut changed = serde_json::Map::new();
    if let Some(n) = &change.name {
        changed.insert("name".into(), n.as_str().into());
    }
    if let Some(g) = &change.guidelines {
        changed.insert("guidelines_bytes".into(), g.len().into());
    }
    if let Some(r) = change.rationale_required {
        changed.insert("rationale_required".into(), r.into());
    }
    if let Some(r) = change.gold_rate {
        changed.insert("gold_rate".into(), r.into());
    }
    if let Some(mode) = body.prelabels {
        changed.insert("prelabels".into(), serde_json::json!(mode));
    }
    if let Some(a) = &change.aspects {
        changed.insert("aspects".into(), serde_json::json!(a));
    }
    if let Some(r) = change.ranking {
        changed.insert("ranking".into(), r.into());
    }
    // A request that only sets the webhook or the archive has its own audit row above.
    if !changed.is_empty() || (!touches_webhook && body.archived.is_none()) {
        let event = Event::new(Action::ProjectUpdate)
            .project(project.id)
            .target(&project.name)
            .details(changed.into());
        audit::record(&mut *tx, &actor, event).await?;
    }
    tx.commit().await?;
    let webhook = webhooks::get(&pool, project.id).await?;
    Ok(HttpResponse::Ok().json(ProjectSettings {
        project,
        webhook,
        webhook_secret: generated.map(|s| s.expose().to_string()),
    }))
}

/// `GET /api/admin/projects/{id}/webhook`: the webhook (secret as a hint) and its newest
/// deliveries, to see whether events arrive.
async fn project_webhook(
    _: ApiUser<Admins>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let webhook = webhooks::get(&pool, id).await?;
    let recent = webhooks::recent(&pool, id, 50).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"webhook": webhook, "recent": recent})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    project: Option<i64>,
    before: Option<i64>,
    limit: Option<i64>,
}

async fn audit_log(
    _: ApiUser<Admins>,
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
