//! Server-rendered pages (minijinja, auto-escaping every value: templates end in `.html`)
//! and their static files, embedded in the binary. Pages use the session; every form
//! carries the session's CSRF token, and the scripts send it as `X-CSRF-Token`.

use actix_session::Session;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::Result;
use minijinja::context;
use serde::Deserialize;
use sqlx::PgPool;

use crate::accounts::{self, User};
use crate::auth::{self, PageUser, SESSION_CSRF, SESSION_USER};
use crate::domain::{Overlap, ProjectKind, ProjectName};
use crate::error::AppError;
use crate::projects::{self, NewProject};
use crate::queue;
use crate::startup::AppState;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("index.html", include_str!("../templates/index.html")),
    ("annotate.html", include_str!("../templates/annotate.html")),
    (
        "guidelines.html",
        include_str!("../templates/guidelines.html"),
    ),
    ("review.html", include_str!("../templates/review.html")),
    (
        "dashboard.html",
        include_str!("../templates/dashboard.html"),
    ),
];

const STATIC_FILES: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../static/app.css"),
    ),
    (
        "annotate.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/annotate.js"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/admin.js"),
    ),
    (
        "review.css",
        "text/css; charset=utf-8",
        include_str!("../static/review.css"),
    ),
];

/// The page templates, compiled once at start-up.
#[derive(Debug)]
pub struct Templates {
    env: minijinja::Environment<'static>,
}

impl Templates {
    pub fn new() -> Result<Self> {
        let mut env = minijinja::Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Self { env })
    }

    pub fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, AppError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| AppError::unexpected(anyhow::anyhow!("rendering {name}: {e:#}")))
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/login", web::get().to(login_page))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/projects", web::post().to(create_project))
        .route("/projects/{id}/annotate", web::get().to(annotate))
        .route("/projects/{id}/guidelines", web::get().to(guidelines))
        .route("/static/{file}", web::get().to(static_file))
        .configure(crate::review_pages::configure)
        .configure(crate::dashboard::configure);
}

pub(crate) fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

pub(crate) fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

pub(crate) fn user_ctx(user: &User) -> minijinja::Value {
    context! { username => user.username.clone(), role => user.role.as_str() }
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

async fn static_file(path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let name = path.into_inner();
    let (_, mime, body) = STATIC_FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| AppError::NotFound(format!("no static file {name:?}")))?;
    Ok(HttpResponse::Ok()
        .content_type(*mime)
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(*body))
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
    csrf_token: String,
}

async fn login(
    req: HttpRequest,
    session: Session,
    pool: web::Data<PgPool>,
    state: web::Data<AppState>,
    templates: web::Data<Templates>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let csrf = ensure_csrf(&session)?;
    auth::check_csrf(&csrf, &form.csrf_token)?;
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
            // A new session (and CSRF token) at sign-in: no fixation.
            session.renew();
            session
                .insert(SESSION_USER, user.id)
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

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf_token: String,
}

async fn logout(
    page: PageUser,
    session: Session,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    auth::check_csrf(&page.csrf, &form.csrf_token)?;
    session.purge();
    Ok(redirect("/login"))
}

async fn index(
    page: PageUser,
    pool: web::Data<PgPool>,
    templates: web::Data<Templates>,
) -> Result<HttpResponse, AppError> {
    let projects = projects::list_with_progress(&pool).await?;
    let body = templates.render(
        "index.html",
        context! { csrf => page.csrf, user => user_ctx(&page.user), projects },
    )?;
    Ok(html(body))
}

#[derive(Debug, Deserialize)]
struct ProjectForm {
    csrf_token: String,
    name: String,
    kind: String,
    overlap: String,
    #[serde(default)]
    guidelines: String,
    #[serde(default)]
    rationale_required: Option<String>,
}

async fn create_project(
    page: PageUser,
    pool: web::Data<PgPool>,
    form: web::Form<ProjectForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    auth::check_csrf(&page.csrf, &form.csrf_token)?;
    if !page.user.is_admin() {
        return Err(AppError::Forbidden("admins only".into()));
    }
    let overlap: i64 = form
        .overlap
        .trim()
        .parse()
        .map_err(|_| AppError::Validation("overlap must be a number".into()))?;
    crate::domain::check_text(&form.guidelines)
        .map_err(|e| AppError::Validation(format!("guidelines: {e}")))?;
    let new = NewProject {
        name: ProjectName::parse(form.name.trim()).map_err(AppError::Validation)?,
        kind: ProjectKind::parse(&form.kind).map_err(AppError::Validation)?,
        overlap: Overlap::parse(overlap).map_err(AppError::Validation)?,
        guidelines: form.guidelines,
        rationale_required: form.rationale_required.is_some(),
    };
    let project = projects::create(&pool, &new, Some(page.user.id)).await?;
    crate::routes::api::audit_project_create(&pool, &page.user, &project).await?;
    Ok(redirect("/"))
}

async fn annotate(
    page: PageUser,
    pool: web::Data<PgPool>,
    state: web::Data<AppState>,
    templates: web::Data<Templates>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let task = queue::next(&pool, state.lease, project.id, &page.user, &[]).await?;
    let body = templates.render(
        "annotate.html",
        context! {
            csrf => page.csrf,
            user => user_ctx(&page.user),
            lease_seconds => state.lease.lease_seconds,
            guidelines_html => guidelines_html(&project),
            project,
            task,
        },
    )?;
    Ok(html(body))
}

async fn guidelines(
    page: PageUser,
    pool: web::Data<PgPool>,
    templates: web::Data<Templates>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let body = templates.render(
        "guidelines.html",
        context! {
            csrf => page.csrf,
            user => user_ctx(&page.user),
            guidelines_html => guidelines_html(&project),
            project,
        },
    )?;
    Ok(html(body))
}

/// The project's Markdown guidelines as sanitized HTML, marked safe so the template inserts
/// it as markup (everything else in the templates stays auto-escaped).
fn guidelines_html(project: &projects::Project) -> minijinja::Value {
    minijinja::Value::from_safe_string(crate::guidelines::to_html(&project.guidelines))
}
