//! Webhooks: a project may have a URL and a secret; `item.completed` (an item reached its
//! overlap N) and `export.created` events go into the `webhook_events` outbox in the same
//! transaction as what caused them, and `jobs::webhook_delivery` POSTs them in the background.
//!
//! Signing: `X-Jielong-Signature: sha256=<hex>` where the hex is
//! HMAC-SHA256(key = the secret's UTF-8 bytes, message = `<X-Jielong-Timestamp>.<raw body>`);
//! the timestamp (Unix seconds of the attempt) is inside the signed string so a captured
//! request cannot be replayed later with a fresh timestamp.
//!
//! `item.completed` is written by a database trigger on `responses` (migration 0007), so the
//! submit path runs no extra code for it; `export.created` by [`enqueue_export`].

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::Sha256;
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};

use crate::store::StoreError;

pub const SIGNATURE_HEADER: &str = "X-Jielong-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Jielong-Timestamp";
pub const DELIVERY_HEADER: &str = "X-Jielong-Delivery";
pub const EVENT_HEADER: &str = "X-Jielong-Event";

/// Where a project's events go: an `http://` or `https://` URL with a host, no user info
/// (credentials in URLs end up in logs) and no fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(reqwest::Url);

impl WebhookUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() > 2000 {
            return Err("webhook_url is longer than 2000 characters".into());
        }
        let url = reqwest::Url::parse(s).map_err(|e| format!("webhook_url {s:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("webhook_url {s:?} must be http:// or https://"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("webhook_url {s:?} has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("webhook_url must not carry a user name or password".into());
        }
        if url.fragment().is_some() {
            return Err(format!("webhook_url {s:?} must not have a #fragment"));
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Scheme, host, port and path: what the audit log keeps (a query may hold a token).
    pub fn without_query(&self) -> String {
        let mut url = self.0.clone();
        url.set_query(None);
        url.to_string()
    }
}

/// The key that signs a project's events: 16-256 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct WebhookSecret(SecretString);

impl WebhookSecret {
    pub fn parse(s: String) -> Result<Self, String> {
        if !(16..=256).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("webhook_secret must be 16-256 visible ASCII characters".into());
        }
        Ok(Self(SecretString::from(s)))
    }

    /// `whsec_` and 256 random bits as hex.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(SecretString::from(format!("whsec_{}", hex::encode(bytes))))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// What the API shows of a stored secret: its last four characters.
pub fn secret_hint(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Jielong-Signature` value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Whether `header` is the signature of `body` at `timestamp` under `secret` (compared in
/// constant time). Receivers should also refuse timestamps far from their clock.
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&sig).is_ok()
}

/// A project's webhook as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WebhookInfo {
    pub url: String,
    pub secret_hint: String,
}

/// A change of a project's webhook.
#[derive(Debug, Clone)]
pub enum WebhookChange {
    /// Send events to `url`. The secret: `Some` replaces it; `None` keeps the stored one, or
    /// generates one when there is none or `rotate` is set.
    Set {
        url: WebhookUrl,
        secret: Option<WebhookSecret>,
        rotate: bool,
    },
    /// Only a new secret for the webhook already set.
    Secret {
        secret: Option<WebhookSecret>,
        rotate: bool,
    },
    /// No webhook (URL and secret dropped; undelivered events are given up when next due).
    Remove,
}

/// What a change did, for the reply and the audit log.
#[derive(Debug, Clone)]
pub struct WebhookApplied {
    pub webhook: Option<WebhookInfo>,
    /// A secret the server made: shown in this reply only.
    pub generated_secret: Option<WebhookSecret>,
    /// For the audit log: `{"url" (no query), "secret": "set" | "generated" | "kept"}` or
    /// `{"removed": true}`.
    pub audit: serde_json::Value,
}

/// Applies `change` to project `project_id` inside `tx`.
pub async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    project_id: i64,
    change: WebhookChange,
) -> Result<WebhookApplied, StoreError> {
    let current: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT webhook_url, webhook_secret FROM projects WHERE id = $1 FOR UPDATE")
            .bind(project_id)
            .fetch_optional(&mut **tx)
            .await?;
    let Some((current_url, current_secret)) = current else {
        return Err(StoreError::NotFound(format!("no project {project_id}")));
    };
    let (url, secret, rotate) = match change {
        WebhookChange::Remove => {
            sqlx::query(
                "UPDATE projects SET webhook_url = NULL, webhook_secret = NULL WHERE id = $1",
            )
            .bind(project_id)
            .execute(&mut **tx)
            .await?;
            return Ok(WebhookApplied {
                webhook: None,
                generated_secret: None,
                audit: serde_json::json!({"removed": true}),
            });
        }
        WebhookChange::Set {
            url,
            secret,
            rotate,
        } => (url, secret, rotate),
        WebhookChange::Secret { secret, rotate } => {
            let url = current_url.as_deref().ok_or_else(|| {
                StoreError::Invalid(
                    "this project has no webhook: send webhook_url with the secret".into(),
                )
            })?;
            let url = WebhookUrl::parse(url)
                .map_err(|e| StoreError::unexpected(anyhow::anyhow!("stored {e}")))?;
            (url, secret, rotate)
        }
    };
    let (secret, generated, how) = match (secret, current_secret) {
        (Some(given), _) => (given, None, "set"),
        (None, Some(kept)) if !rotate => (
            WebhookSecret::parse(kept)
                .map_err(|e| StoreError::unexpected(anyhow::anyhow!("stored {e}")))?,
            None,
            "kept",
        ),
        (None, _) => {
            let made = WebhookSecret::generate();
            (made.clone(), Some(made), "generated")
        }
    };
    sqlx::query("UPDATE projects SET webhook_url = $2, webhook_secret = $3 WHERE id = $1")
        .bind(project_id)
        .bind(url.as_str())
        .bind(secret.expose())
        .execute(&mut **tx)
        .await?;
    Ok(WebhookApplied {
        webhook: Some(WebhookInfo {
            url: url.as_str().to_string(),
            secret_hint: secret_hint(secret.expose()),
        }),
        generated_secret: generated,
        audit: serde_json::json!({"url": url.without_query(), "secret": how}),
    })
}

/// The webhook of a project, if it has one.
pub async fn get(pool: &PgPool, project_id: i64) -> Result<Option<WebhookInfo>, StoreError> {
    let row: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT webhook_url, webhook_secret FROM projects WHERE id = $1")
            .bind(project_id)
            .fetch_optional(pool)
            .await?;
    let Some((url, secret)) = row else {
        return Err(StoreError::NotFound(format!("no project {project_id}")));
    };
    Ok(url.zip(secret).map(|(url, secret)| WebhookInfo {
        url,
        secret_hint: secret_hint(&secret),
    }))
}

/// The fields of an `export.created` event.
#[derive(Debug, Clone, Serialize)]
pub struct ExportEvent<'a> {
    pub part: &'a str,
    pub format: &'a str,
    pub accepted_only: bool,
    /// Who asked: a user name, or `cli:<os user>`.
    pub by: &'a str,
}

/// Writes an `export.created` event to the outbox when the project has a webhook (nothing
/// otherwise); pass the transaction that records the export.
pub async fn enqueue_export<'e>(
    exec: impl PgExecutor<'e>,
    project_id: i64,
    export: &ExportEvent<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhook_events (project_id, event, payload) \
         SELECT id, 'export.created', jsonb_build_object( \
                  'project', jsonb_build_object('id', id, 'name', name), 'export', $2::jsonb) \
         FROM projects WHERE id = $1 AND webhook_url IS NOT NULL",
    )
    .bind(project_id)
    .bind(serde_json::to_value(export).map_err(StoreError::unexpected)?)
    .execute(exec)
    .await?;
    Ok(())
}

/// One outbox row, as `GET /api/admin/projects/{id}/webhook` lists it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Delivery {
    pub delivery_id: String,
    pub event: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub attempts: i32,
    pub next_attempt_at: chrono::DateTime<chrono::Utc>,
    pub delivered_at: Option<chrono::DateTime<chrono::Utc>>,
    pub failed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_status: Option<i16>,
    pub last_error: Option<String>,
}

/// The newest `limit` events of a project, delivered or not.
pub async fn recent(
    pool: &PgPool,
    project_id: i64,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    Ok(sqlx::query_as::<_, Delivery>(
        "SELECT delivery_id::text AS delivery_id, event, created_at, attempts, next_attempt_at, \
                delivered_at, failed_at, last_status, last_error \
         FROM webhook_events WHERE project_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(project_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_verifies_with_its_secret_only() {
        let body = br#"{"event":"item.completed"}"#;
        let sig = signature(b"0123456789abcdef", 1_700_000_000, body);
        // printf '%s' '1700000000.{"event":"item.completed"}' | openssl dgst -sha256 -hmac 0123456789abcdef
        assert_eq!(
            sig,
            "sha256=5828395437cc129c3bde78b1746e3ec36e162cb226a076b74f1fd0457e80a060"
        );
        assert!(verify(b"0123456789abcdef", 1_700_000_000, body, &sig));
        assert!(!verify(b"0123456789abcdeX", 1_700_000_000, body, &sig));
        assert!(!verify(b"0123456789abcdef", 1_700_000_001, body, &sig));
        assert!(!verify(b"0123456789abcdef", 1_700_000_000, b"{}", &sig));
        assert!(!verify(
            b"0123456789abcdef",
            1_700_000_000,
            body,
            "sha256=zz"
        ));
    }

    #[test]
    fn urls_and_secrets_are_checked() {
        assert!(WebhookUrl::parse("https://hooks.example.com/x?token=1").is_ok());
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/").is_ok());
        for bad in ["ftp://x/", "https://user:pw@x/", "http://x/#f", "not a url"] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            WebhookUrl::parse("https://h.example/p?token=1")
                .map(|u| u.without_query())
                .ok()
                .as_deref(),
            Some("https://h.example/p")
        );
        assert!(WebhookSecret::parse("short".into()).is_err());
        assert!(WebhookSecret::parse("sixteen chars!!!".into()).is_err());
        let made = WebhookSecret::generate();
        assert_eq!(made.expose().len(), 6 + 64);
        assert_eq!(secret_hint("whsec_0123abcd"), "…abcd");
    }
}
