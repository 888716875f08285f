//! Delivers the webhook outbox: a background task takes due events (`FOR UPDATE SKIP LOCKED`,
//! so several server processes share the work), POSTs each signed to its project's current
//! URL, and records the outcome: delivered on a 2xx, otherwise retried with exponential
//! backoff until `max_attempts`. At least once: an attempt whose answer is lost is repeated,
//! with the same `X-Jielong-Delivery` id. Nothing here runs inside a request.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::PgPool;

use crate::settings::WebhookSettings;
use crate::store::webhooks::{
    DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature,
};

/// Events taken per round.
const BATCH: i64 = 32;

/// Starts the deliverer.
pub fn spawn(pool: PgPool, settings: WebhookSettings) -> anyhow::Result<()> {
    let client = client(&settings)?;
    tokio::spawn(async move {
        let mut tick =
            tokio::time::interval(Duration::from_millis(settings.poll_interval_ms.max(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // A full batch means more may be due: go on without waiting.
            loop {
                match deliver_due(&pool, &client, &settings).await {
                    Ok(n) if n as i64 == BATCH => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook delivery round failed");
                        break;
                    }
                }
            }
        }
    });
    Ok(())
}

/// The HTTP client: a timeout per attempt, and no redirects (a signed POST goes where the
/// admin said, or fails).
pub fn client(settings: &WebhookSettings) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("jielong-labeler/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// How long to wait after failed attempt number `attempts` (1-based): `backoff_base_ms`
/// doubled per earlier failure, at most `backoff_max_secs`, stretched by `jitter` (0..1,
/// up to +20%) so receivers coming back are not hit by every sender at once.
pub fn backoff(settings: &WebhookSettings, attempts: i32, jitter: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 40) as u32;
    let ms = settings
        .backoff_base_ms
        .saturating_mul(1u64 << doublings.min(32))
        .min(settings.backoff_max_secs.saturating_mul(1000));
    Duration::from_millis(ms).mul_f64(1.0 + 0.2 * jitter.clamp(0.0, 1.0))
}

#[derive(sqlx::FromRow)]
struct Due {
    id: i64,
    delivery_id: String,
    event: String,
    payload: Value,
    created_at: DateTime<Utc>,
    attempts: i32,
    url: Option<String>,
    secret: Option<String>,
}

/// The request body: `{"id", "event", "at"}` and the event's own fields.
fn body(due: &Due) -> anyhow::Result<Vec<u8>> {
    let mut body = serde_json::Map::new();
    body.insert("id".into(), due.delivery_id.clone().into());
    body.insert("event".into(), due.event.clone().into());
    body.insert(
        "at".into(),
        due.created_at
            .to_rfc3339_opts(SecondsFormat::Millis, true)
            .into(),
    );
    if let Value::Object(fields) = &due.payload {
        body.extend(fields.clone());
    }
    Ok(serde_json::to_vec(&body)?)
}

/// One round: takes up to [`BATCH`] due events and tries each once (concurrently).
/// Returns how many were taken.
pub async fn deliver_due(
    pool: &PgPool,
    client: &reqwest::Client,
    settings: &WebhookSettings,
) -> anyhow::Result<usize> {
    // Taking an event counts the attempt and moves it out of reach for longer than the
    // attempt may take; the outcome below sets the real next time.
    let hold = settings.timeout_secs.max(1) as f64 + 30.0;
    let due = sqlx::query_as::<_, Due>(
        "UPDATE webhook_events e SET attempts = e.attempts + 1, \
           next_attempt_at = now() + make_interval(secs => $1) \
         FROM projects p \
         WHERE p.id = e.project_id AND e.id IN ( \
           SELECT id FROM webhook_events \
           WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now() \
           ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
         RETURNING e.id, e.delivery_id::text AS delivery_id, e.event, e.payload, e.created_at, \
                   e.attempts, p.webhook_url AS url, p.webhook_secret AS secret",
    )
    .bind(hold)
    .bind(BATCH)
    .fetch_all(pool)
    .await?;
    let n = due.len();
    let rounds = due.into_iter().map(|d| attempt(pool, client, settings, d));
    for outcome in futures_util::future::join_all(rounds).await {
        outcome?;
    }
    Ok(n)
}

/// What one attempt came to.
enum Outcome {
    Delivered(u16),
    Failed { status: Option<u16>, error: String },
    NoWebhook,
}

async fn attempt(
    pool: &PgPool,
    client: &reqwest::Client,
    settings: &WebhookSettings,
    due: Due,
) -> anyhow::Result<()> {
    let outcome = match (&due.url, &due.secret) {
        (Some(url), Some(secret)) => send(client, url, secret, &due).await?,
        _ => Outcome::NoWebhook,
    };
    match outcome {
        Outcome::Delivered(status) => {
            sqlx::query(
                "UPDATE webhook_events SET delivered_at = now(), last_status = $2, \
                   last_error = NULL WHERE id = $1",
            )
            .bind(due.id)
            .bind(status as i16)
            .execute(pool)
            .await?;
        }
        Outcome::NoWebhook => {
            sqlx::query(
                "UPDATE webhook_events SET failed_at = now(), \
                   last_error = 'the project has no webhook any more' WHERE id = $1",
            )
            .bind(due.id)
            .execute(pool)
            .await?;
        }
        Outcome::Failed { status, error } => {
            let give_up = due.attempts >= settings.max_attempts.max(1) as i32;
            let wait = backoff(settings, due.attempts, rand::random::<f64>());
            tracing::warn!(
                delivery = %due.delivery_id, event = %due.event, attempts = due.attempts,
                give_up, error = %error, "webhook delivery failed"
            );
            sqlx::query(
                "UPDATE webhook_events SET last_status = $2, last_error = $3, \
                   next_attempt_at = now() + make_interval(secs => $4), \
                   failed_at = CASE WHEN $5 THEN now() END WHERE id = $1",
            )
            .bind(due.id)
            .bind(status.map(|s| s as i16))
            .bind(error)
            .bind(wait.as_secs_f64())
            .bind(give_up)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    due: &Due,
) -> anyhow::Result<Outcome> {
    let body = body(due)?;
    let timestamp = Utc::now().timestamp();
    let request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_HEADER, &due.event)
        .header(DELIVERY_HEADER, &due.delivery_id)
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(
            SIGNATURE_HEADER,
            signature(secret.as_bytes(), timestamp, &body),
        )
        .body(body);
    Ok(match request.send().await {
        Ok(response) if response.status().is_success() => {
            Outcome::Delivered(response.status().as_u16())
        }
        Ok(response) => Outcome::Failed {
            status: Some(response.status().as_u16()),
            error: format!("answered {}", response.status()),
        },
        Err(e) => Outcome::Failed {
            status: None,
            error: error_chain(&e),
        },
    })
}

/// reqwest's own message is terse ("error sending request"); the causes say why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let s = WebhookSettings {
            backoff_base_ms: 1000,
            backoff_max_secs: 10,
            ..WebhookSettings::default()
        };
        let secs = |n, j| backoff(&s, n, j).as_secs_f64();
        assert_eq!(secs(1, 0.0), 1.0);
        assert_eq!(secs(2, 0.0), 2.0);
        assert_eq!(secs(4, 0.0), 8.0);
        assert_eq!(secs(5, 0.0), 10.0);
        assert_eq!(secs(500, 0.0), 10.0);
        assert!((secs(1, 1.0) - 1.2).abs() < 1e-9);
    }
}
