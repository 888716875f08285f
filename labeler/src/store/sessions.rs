//! Browser sessions on the server side. The signed session cookie carries a random session id;
//! the `sessions` row (keyed by its SHA-256) says whether the session still lives: not ended
//! (sign-out, password change, user disabled), used within the idle timeout, younger than the
//! absolute timeout, and its user enabled. A cookie captured before any of these is refused.

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::store::StoreError;
use crate::store::accounts::{self, User};

/// How long sessions live (from settings).
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// A session unused this long has ended.
    pub idle_seconds: i64,
    /// A session this old has ended, however busy.
    pub absolute_seconds: i64,
}

impl SessionPolicy {
    /// How stale `last_seen_at` may get before a request writes it again: a tenth of the idle
    /// timeout, at most a minute (a page request is a read, not a write, most of the time).
    fn touch_seconds(&self) -> i64 {
        (self.idle_seconds / 10).min(60)
    }
}

/// A session id: 256 random bits as hex, in the signed cookie only; the database keeps its
/// SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(..)")
    }
}

impl SessionId {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(hex::encode(bytes))
    }

    /// The id as the cookie carries it (the cookie's signature vouches for it).
    pub fn from_cookie(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

/// Records a new session of `user_id` at sign-in, and forgets that user's sessions that have
/// ended or timed out (so the table holds live sessions and a few recent ones).
pub async fn start(
    pool: &PgPool,
    policy: SessionPolicy,
    user_id: i64,
    id: &SessionId,
) -> Result<(), StoreError> {
    sqlx::query(
        "WITH gone AS ( \
           DELETE FROM sessions WHERE user_id = $2 AND (ended_at IS NOT NULL \
             OR last_seen_at < now() - make_interval(secs => $3) \
             OR created_at < now() - make_interval(secs => $4))) \
         INSERT INTO sessions (id_sha256, user_id) VALUES ($1, $2)",
    )
    .bind(id.digest().as_slice())
    .bind(user_id)
    .bind(policy.idle_seconds)
    .bind(policy.absolute_seconds)
    .execute(pool)
    .await?;
    Ok(())
}

/// The enabled user of the live session `id`, noting the use (one statement: the check, and a
/// write only when `last_seen_at` is stale). `None` when the session has ended, timed out,
/// was never started, or its user is disabled.
pub async fn user(
    pool: &PgPool,
    policy: SessionPolicy,
    id: &SessionId,
) -> Result<Option<User>, StoreError> {
    let row = sqlx::query_as::<_, (i64, String, String)>(
        "WITH s AS ( \
           SELECT id_sha256, user_id FROM sessions \
           WHERE id_sha256 = $1 AND ended_at IS NULL \
             AND last_seen_at > now() - make_interval(secs => $2) \
             AND created_at > now() - make_interval(secs => $3)), \
         touch AS ( \
           UPDATE sessions SET last_seen_at = now() \
           WHERE id_sha256 = (SELECT id_sha256 FROM s) \
             AND last_seen_at < now() - make_interval(secs => $4)) \
         SELECT u.id, u.username, u.role FROM s JOIN users u ON u.id = s.user_id \
         WHERE NOT u.disabled",
    )
    .bind(id.digest().as_slice())
    .bind(policy.idle_seconds)
    .bind(policy.absolute_seconds)
    .bind(policy.touch_seconds())
    .fetch_optional(pool)
    .await?;
    row.map(accounts::user_from_row).transpose()
}

/// Ends session `id` (sign-out). Ending an ended or unknown session is not an error.
pub async fn end(pool: &PgPool, id: &SessionId) -> Result<(), StoreError> {
    sqlx::query("UPDATE sessions SET ended_at = now() WHERE id_sha256 = $1 AND ended_at IS NULL")
        .bind(id.digest().as_slice())
        .execute(pool)
        .await?;
    Ok(())
}
