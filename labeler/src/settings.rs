//! Typed settings: `configs/labeler.toml`, then environment variables on top. The database
//! is reached through `PgConnectOptions`, never a URL glued together from strings.

use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    #[serde(default)]
    pub labeling: LabelingSettings,
    #[serde(default)]
    pub webhooks: WebhookSettings,
    #[serde(default)]
    pub sessions: SessionSettings,
    /// OpenID Connect sign-in, when configured (local accounts keep working beside it).
    #[serde(default)]
    pub oidc: Option<crate::oidc::OidcSettings>,
}

/// How long a browser session lives. Either limit ends it; so do signing out, a password
/// change and disabling the user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// A session with no request for this long has ended (an open annotation page keeps its
    /// session alive: it renews its lease every few minutes).
    pub idle_timeout_secs: u64,
    /// A session this old has ended however busy it is; also the cookie's `Max-Age`.
    pub absolute_timeout_secs: u64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 2 * 3600,
            absolute_timeout_secs: 12 * 3600,
        }
    }
}

/// How webhook events leave the outbox: polling, timeouts and the retry schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// How often the deliverer looks for due events.
    pub poll_interval_ms: u64,
    /// One attempt's limit (connect, send, answer).
    pub timeout_secs: u64,
    /// Attempts before an event is given up (marked failed; kept in the table).
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one, up to
    /// `backoff_max_secs`, with up to 20% random jitter.
    pub backoff_base_ms: u64,
    pub backoff_max_secs: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1000,
            timeout_secs: 10,
            max_attempts: 12,
            backoff_base_ms: 2000,
            backoff_max_secs: 3600,
        }
    }
}

/// How work is handed out and how much a request may carry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelingSettings {
    /// How long a lease lasts without renewal; the page renews it while open.
    pub lease_seconds: u32,
    /// Live leases per annotator per project (the item on screen plus the prefetched one).
    pub max_leases_per_user: u32,
    /// Largest import upload.
    pub max_import_bytes: usize,
    /// Largest JSON body of any other request.
    pub max_json_bytes: usize,
    /// Send cookies with `Secure`: browsers reach the labeler over HTTPS (see also
    /// `[server] behind_tls_proxy`).
    pub secure_cookies: bool,
    /// Failed logins per user name or client address before logins are refused for
    /// `login_window_seconds`.
    pub login_max_failures: u32,
    pub login_window_seconds: u64,
    /// How long the server trusts an API-token lookup without asking the database again (0:
    /// never). A user disabled through this server's API is forgotten at once; one disabled
    /// elsewhere (`labeler user disable`) is refused within this many seconds.
    #[serde(default = "default_token_cache_seconds")]
    pub token_cache_seconds: u64,
    /// The dashboard flags annotators whose median time per item is under this many seconds
    /// (0: flags nobody).
    #[serde(default = "default_fast_annotator_seconds")]
    pub fast_annotator_seconds: f64,
}

fn default_fast_annotator_seconds() -> f64 {
    5.0
}

fn default_token_cache_seconds() -> u64 {
    5
}

impl Default for LabelingSettings {
    fn default() -> Self {
        Self {
            lease_seconds: 300,
            max_leases_per_user: 2,
            max_import_bytes: 512 * 1024 * 1024,
            max_json_bytes: 1024 * 1024,
            secure_cookies: false,
            login_max_failures: 10,
            login_window_seconds: 600,
            token_cache_seconds: default_token_cache_seconds(),
            fast_annotator_seconds: default_fast_annotator_seconds(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// A reverse proxy in front of the labeler terminates TLS (browsers use HTTPS, the proxy
    /// talks plain HTTP to this server): cookies get `Secure`, as with
    /// `[labeling] secure_cookies`.
    #[serde(default)]
    pub behind_tls_proxy: bool,
    /// Signs session cookies: at least 64 bytes as hex. From `LABELER_SESSION_KEY`; when
    /// unset, a random key is made at start-up (sessions end when the server restarts).
    #[serde(skip)]
    pub session_key: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: SecretString,
    pub database_name: String,
    pub require_ssl: bool,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before failing.
    #[serde(default = "default_acquire_timeout_secs")]
    pub acquire_timeout_secs: u64,
    /// Set from `DATABASE_URL`; takes precedence over the fields above.
    #[serde(skip)]
    pub url: Option<SecretString>,
}

fn default_max_connections() -> u32 {
    16
}

fn default_acquire_timeout_secs() -> u64 {
    10
}

impl DatabaseSettings {
    /// Options for the configured database.
    pub fn connect_options(&self) -> Result<PgConnectOptions> {
        if let Some(url) = &self.url {
            return PgConnectOptions::from_str(url.expose_secret())
                .context("DATABASE_URL is not a valid postgres:// URL");
        }
        let ssl = if self.require_ssl {
            PgSslMode::Require
        } else {
            PgSslMode::Prefer
        };
        Ok(PgConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(&self.username)
            .password(self.password.expose_secret())
            .database(&self.database_name)
            .ssl_mode(ssl))
    }
}

impl Settings {
    /// Whether cookies get `Secure`: the server says it is reached over HTTPS, directly or
    /// through a proxy that terminates TLS.
    pub fn secure_cookies(&self) -> bool {
        self.labeling.secure_cookies || self.server.behind_tls_proxy
    }

    /// Reads `path` (TOML), then applies `LABELER_HOST`, `LABELER_PORT`, `LABELER_SESSION_KEY`,
    /// `DATABASE_URL` and `LABELER_OIDC_CLIENT_SECRET`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading settings {}", path.display()))?;
        let mut settings: Settings = toml::from_str(&text)
            .with_context(|| format!("parsing settings {}", path.display()))?;
        settings.apply_env(|name| std::env::var(name).ok())?;
        Ok(settings)
    }

    /// Applies overrides from `lookup` (the environment, or a map in tests).
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(host) = lookup("LABELER_HOST") {
            self.server.host = host;
        }
        if let Some(port) = lookup("LABELER_PORT") {
            self.server.port = port
                .parse()
                .with_context(|| format!("LABELER_PORT={port:?} is not a port number"))?;
        }
        if let Some(key) = lookup("LABELER_SESSION_KEY").filter(|k| !k.is_empty()) {
            self.server.session_key = Some(SecretString::from(key));
        }
        if let Some(url) = lookup("DATABASE_URL").filter(|u| !u.is_empty()) {
            self.database.url = Some(SecretString::from(url));
        }
        if let Some(secret) = lookup("LABELER_OIDC_CLIENT_SECRET").filter(|s| !s.is_empty())
            && let Some(oidc) = &mut self.oidc
        {
            oidc.client_secret = SecretString::from(secret);
        }
        Ok(())
    }
}
