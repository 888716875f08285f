//! The audit log: who changed what (user management, project settings and webhooks, imports,
//! gold items, exports, reviews), append-only. The database refuses UPDATE, DELETE and TRUNCATE on
//! `audit_log` (a trigger, which binds the table owner too), so a row once written stays.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgExecutor, PgPool};

use crate::store::StoreError;
use crate::store::accounts::User;
use crate::store::projects::Project;

/// Who acted: a signed-in user or token, or the command line.
#[derive(Debug, Clone)]
pub struct Actor {
    id: Option<i64>,
    name: String,
}

impl Actor {
    pub fn user(user: &User) -> Self {
        Self {
            id: Some(user.id),
            name: user.username.clone(),
        }
    }

    /// `labeler user add` and friends: whoever can reach the database; the OS user is kept
    /// when known.
    pub fn cli() -> Self {
        let who = std::env::var("USER").unwrap_or_default();
        let name = if who.is_empty() {
            "cli".to_string()
        } else {
            format!("cli:{who}")
        };
        Self { id: None, name }
    }

    /// The server itself, on behalf of `who` (`oidc:<issuer>` for a single sign-on).
    pub fn system(who: String) -> Self {
        Self {
            id: None,
            name: who,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What was done. The string form (`user.add`, `review.accept`, ...) is what the table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    UserAdd,
    UserDisable,
    UserEnable,
    UserPassword,
    UserRole,
    TokenCreate,
    TokenRevoke,
    ProjectCreate,
    ProjectUpdate,
    ProjectWebhook,
    ProjectImport,
    ProjectCandidates,
    ProjectGold,
    ProjectPrelabels,
    ProjectExport,
    ProjectArchive,
    ProjectUnarchive,
    ProjectDelete,
    ReviewAccept,
    ReviewReject,
    ReviewEdit,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserAdd => "user.add",
            Self::UserDisable => "user.disable",
            Self::UserEnable => "user.enable",
            Self::UserPassword => "user.password",
            Self::UserRole => "user.role",
            Self::TokenCreate => "token.create",
            Self::TokenRevoke => "token.revoke",
            Self::ProjectCreate => "project.create",
            Self::ProjectUpdate => "project.update",
            Self::ProjectWebhook => "project.webhook",
            Self::ProjectImport => "project.import",
            Self::ProjectCandidates => "project.candidates",
            Self::ProjectGold => "project.gold",
            Self::ProjectPrelabels => "project.prelabels",
            Self::ProjectExport => "project.export",
            Self::ProjectArchive => "project.archive",
            Self::ProjectUnarchive => "project.unarchive",
            Self::ProjectDelete => "project.delete",
            Self::ReviewAccept => "review.accept",
            Self::ReviewReject => "review.reject",
            Self::ReviewEdit => "review.edit",
        }
    }
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub action: Action,
    pub project_id: Option<i64>,
    /// What was acted on, readably: a user name, `response 17`, ...
    pub target: Option<&'a str>,
    pub details: Value,
}

impl<'a> Event<'a> {
    pub fn new(action: Action) -> Self {
        Self {
            action,
            project_id: None,
            target: None,
            details: Value::Object(Default::default()),
        }
    }
    pub fn project(mut self, id: i64) -> Self {
        self.project_id = Some(id);
        self
    }
    pub fn target(mut self, target: &'a str) -> Self {
        self.target = Some(target);
        self
    }
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// A project made through the API or the page (the two record the same details).
    pub fn project_create(project: &'a Project) -> Self {
        Self::new(Action::ProjectCreate)
            .project(project.id)
            .target(&project.name)
            .details(serde_json::json!({
                "kind": project.kind.as_str(), "overlap": project.overlap,
                "rationale_required": project.rationale_required,
                "ranking": project.ranking, "aspects": project.aspects,
            }))
    }
}

/// Appends one row; pass a transaction to record in the same commit as the change.
pub async fn record<'e>(
    exec: impl PgExecutor<'e>,
    actor: &Actor,
    event: Event<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (actor_id, actor, action, project_id, target, details) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(actor.id)
    .bind(&actor.name)
    .bind(event.action.as_str())
    .bind(event.project_id)
    .bind(event.target)
    .bind(&event.details)
    .execute(exec)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub project_id: Option<i64>,
    pub target: Option<String>,
    pub details: Value,
}

/// The newest entries first, optionally of one project, before the id `before` (paging).
pub async fn list(
    pool: &PgPool,
    project_id: Option<i64>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>, StoreError> {
    Ok(sqlx::query_as::<_, AuditEntry>(
        "SELECT id, at, actor_id, actor, action, project_id, target, details FROM audit_log \
         WHERE ($1::bigint IS NULL OR project_id = $1) AND ($2::bigint IS NULL OR id < $2) \
         ORDER BY id DESC LIMIT $3",
    )
    .bind(project_id)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
