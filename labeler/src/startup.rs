//! `Application`: binds the listener, connects the pool, runs migrations, serves. Tests build
//! the same application on port 0 and read back `port()`.

use std::net::TcpListener;

use actix_session::SessionMiddleware;
use actix_session::config::{CookieContentSecurity, PersistentSession};
use actix_session::storage::CookieSessionStore;
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Server;
use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::{Context, Result};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::http::error::{AppError, json_error};
use crate::http::login_limiter::LoginLimiter;
use crate::http::middleware;
use crate::http::pages::templates::Templates;
use crate::http::token_cache::TokenCache;
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::queue::LeasePolicy;
use crate::store::sessions::SessionPolicy;

/// No inline scripts or styles, nothing from elsewhere, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    base-uri 'none'; frame-ancestors 'none'";

fn session_key(settings: &Settings) -> Result<Key> {
    match &settings.server.session_key {
        Some(hex_key) => {
            let bytes = hex::decode(hex_key.expose_secret().trim())
                .context("LABELER_SESSION_KEY is not hex")?;
            anyhow::ensure!(
                bytes.len() >= 64,
                "LABELER_SESSION_KEY must be at least 64 bytes (128 hex digits), got {}",
                bytes.len()
            );
            Ok(Key::from(&bytes))
        }
        None => {
            tracing::warn!("LABELER_SESSION_KEY is not set: sessions end when the server restarts");
            Ok(Key::generate())
        }
    }
}

/// The migrations in the workspace's top-level `migrations/`, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub struct Application {
    port: u16,
    server: Server,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish()
    }
}

/// Connects to the configured database (lazily, so start-up errors come from the first query
/// with a clear message).
pub fn connect(settings: &Settings) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(settings.database.max_connections)
        // No ping before each use: it is a round trip per query. A connection the server has
        // dropped fails its next query instead (one 500) and leaves the pool.
        .test_before_acquire(false)
        .acquire_timeout(std::time::Duration::from_secs(
            settings.database.acquire_timeout_secs,
        ))
        .connect_lazy_with(settings.database.connect_options()?))
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("running database migrations (is PostgreSQL up? `scripts/pg start`)")
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self> {
        let pool = connect(&settings)?;
        migrate(&pool).await?;
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address).with_context(|| format!("binding {address}"))?;
        let port = listener.local_addr()?.port();
        let key = session_key(&settings)?;
        let labeling = settings.labeling.clone();
        let state = web::Data::new(AppState {
            lease: LeasePolicy {
                lease_seconds: i64::from(labeling.lease_seconds.max(1)),
                max_leases_per_user: i64::from(labeling.max_leases_per_user.max(1)),
            },
            login_limiter: LoginLimiter::new(
                labeling.login_max_failures.max(1),
                std::time::Duration::from_secs(labeling.login_window_seconds),
            ),
            tokens: TokenCache::new(std::time::Duration::from_secs(labeling.token_cache_seconds)),
            fast_annotator_seconds: labeling.fast_annotator_seconds.max(0.0),
            oidc: settings
                .oidc
                .clone()
                .map(crate::oidc::OidcClient::new)
                .transpose()?,
            sessions: SessionPolicy {
                idle_seconds: seconds(settings.sessions.idle_timeout_secs),
                absolute_seconds: seconds(settings.sessions.absolute_timeout_secs),
            },
        });
        let secure_cookies = settings.secure_cookies();
        // The cookie lasts as long as a session may; the server ends it sooner when it must.
        let cookie_ttl =
            PersistentSession::default().session_ttl(actix_web::cookie::time::Duration::seconds(
                seconds(settings.sessions.absolute_timeout_secs),
            ));
        let templates = web::Data::new(Templates::new()?);
        crate::jobs::reclaimer::spawn(
            pool.clone(),
            std::time::Duration::from_secs(u64::from(labeling.lease_seconds.clamp(4, 240) / 4)),
        );
        crate::jobs::webhook_delivery::spawn(pool.clone(), settings.webhooks.clone())?;
        let pool = web::Data::new(pool);
        let server = HttpServer::new(move || {
            let session = SessionMiddleware::builder(CookieSessionStore::default(), key.clone())
                .cookie_name("labeler_session".into())
                .cookie_content_security(CookieContentSecurity::Signed)
                .cookie_http_only(true)
                .cookie_same_site(SameSite::Strict)
                .cookie_secure(secure_cookies)
                .session_lifecycle(cookie_ttl.clone())
                .build();
            App::new()
                .wrap(from_fn(middleware::error_pages))
                .wrap(session)
                .wrap(
                    DefaultHeaders::new()
                        .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
                        .add(("X-Content-Type-Options", "nosniff"))
                        .add(("Referrer-Policy", "no-referrer"))
                        .add(("X-Frame-Options", "DENY")),
                )
                .wrap(from_fn(middleware::head_as_get))
                .app_data(pool.clone())
                .app_data(state.clone())
                .app_data(templates.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(labeling.max_json_bytes)
                        .error_handler(|e, _| json_error(e).into()),
                )
                .app_data(web::PathConfig::default().error_handler(|e, _| {
                    AppError::NotFound(format!("no such resource: {e}")).into()
                }))
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    AppError::Validation(format!("bad query string: {e}")).into()
                }))
                .app_data(
                    web::FormConfig::default()
                        .limit(labeling.max_json_bytes)
                        .error_handler(|e, _| {
                            AppError::Validation(format!("bad form: {e}")).into()
                        }),
                )
                .app_data(web::PayloadConfig::new(labeling.max_json_bytes))
                .route("/healthz", web::get().to(healthz))
                .configure(|cfg| crate::http::api::configure(cfg, labeling.max_import_bytes))
                .configure(crate::http::pages::configure)
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(AppError::NotFound("no such page".into()))
                }))
        })
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// A setting in seconds as the database and the cookie take it: one second to a century.
fn seconds(secs: u64) -> i64 {
    const CENTURY: u64 = 100 * 365 * 24 * 3600;
    secs.clamp(1, CENTURY) as i64
}

/// Liveness and database reachability, for scripts and load balancers.
async fn healthz(pool: web::Data<PgPool>) -> HttpResponse {
    match sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(pool.get_ref())
        .await
    {
        Ok(_) => HttpResponse::Ok().json(serde_json::json!({"status": "ok", "database": "ok"})),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"status": "degraded", "database": "unreachable"}))
        }
    }
}
