//! What every page shares: the templates (minijinja, auto-escaping every value: templates
//! end in `.html`) and static files, embedded in the binary, and the small helpers that
//! answer with a page or a redirect. Page modules take these from here, never from each
//! other.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use anyhow::Result;
use minijinja::context;

use crate::http::error::AppError;
use crate::store::accounts::User;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../../templates/base.html")),
    ("login.html", include_str!("../../../templates/login.html")),
    ("index.html", include_str!("../../../templates/index.html")),
    (
        "annotate.html",
        include_str!("../../../templates/annotate.html"),
    ),
    (
        "guidelines.html",
        include_str!("../../../templates/guidelines.html"),
    ),
    (
        "review.html",
        include_str!("../../../templates/review.html"),
    ),
    (
        "dashboard.html",
        include_str!("../../../templates/dashboard.html"),
    ),
    ("error.html", include_str!("../../../templates/error.html")),
    ("users.html", include_str!("../../../templates/users.html")),
    (
        "sso_bounce.html",
        include_str!("../../../templates/sso_bounce.html"),
    ),
    (
        "import.html",
        include_str!("../../../templates/import.html"),
    ),
    (
        "agreement.html",
        include_str!("../../../templates/agreement.html"),
    ),
    (
        "checkpoints.html",
        include_str!("../../../templates/checkpoints.html"),
    ),
    (
        "project_settings.html",
        include_str!("../../../templates/project_settings.html"),
    ),
];

const STATIC_FILES: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../../static/app.css"),
    ),
    (
        "annotate.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../static/annotate.js"),
    ),
    (
        "import.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../static/import.js"),
    ),
    (
        "review.css",
        "text/css; charset=utf-8",
        include_str!("../../../static/review.css"),
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
        env.add_filter("num", num);
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

/// `{{ x | num }}`: a number rounded to 3 digits (or `num(d)`: d digits); "n/a" for none.
/// Digits, a sign, a dot or "n/a": safe as markup.
fn num(value: minijinja::Value, digits: Option<i32>) -> minijinja::Value {
    let text = match f64::try_from(value) {
        Ok(v) => {
            let digits = digits.unwrap_or(3).clamp(0, 6) as usize;
            format!("{v:.digits$}")
        }
        Err(_) => "n/a".to_string(),
    };
    minijinja::Value::from_safe_string(text)
}

/// A page answer. Never cached: a page holds the session's CSRF token and the user's work.
pub fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// 303 See Other: after a form post the browser loads `to` with GET, so a reload does not
/// post again.
pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

/// The signed-in user as the base template shows them (name, and role for the menus).
pub fn user_ctx(user: &User) -> minijinja::Value {
    context! { username => user.username.clone(), role => user.role.as_str() }
}

/// The static files' route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/{file}", web::get().to(static_file));
}

/// `GET /static/{file}`: the embedded scripts and styles.
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
