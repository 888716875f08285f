//! Users and API tokens in PostgreSQL: argon2 password hashes, SHA-256 token digests.

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::domain::{Password, Role, Username};
use crate::store::{StoreError, is_unique_violation};

/// A signed-in, enabled user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Reviewers and admins review responses and see dashboards.
    pub fn can_review(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Reviewer)
    }
}

/// A row of `labeler user list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserSummary {
    pub id: i64,
    pub username: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Prefix that makes leaked tokens easy to grep for.
pub const TOKEN_PREFIX: &str = "jlt_";

/// Hashes off the async runtime: argon2 is deliberately slow.
pub async fn hash_password(password: &Password) -> Result<String, StoreError> {
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await
    .context("password hashing task")?
    .map_err(StoreError::Unexpected)
}

async fn verify_password(hash: String, password: String) -> Result<bool, StoreError> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        Ok::<_, anyhow::Error>(
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
        )
    })
    .await
    .context("password verification task")?
    .map_err(StoreError::Unexpected)
}

pub async fn add_user(
    pool: &PgPool,
    username: &Username,
    password: &Password,
    role: Role,
) -> Result<i64, StoreError> {
    let hash = hash_password(password).await?;
    sqlx::query_scalar(
        "INSERT INTO users (username, password_hash, role) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(username.as_str())
    .bind(hash)
    .bind(role.as_str())
    .fetch_one(pool)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("user {username} already exists"))
        } else {
            e.into()
        }
    })
}

pub async fn list_users(pool: &PgPool) -> Result<Vec<UserSummary>, StoreError> {
    let rows = sqlx::query_as::<_, (i64, String, String, bool, chrono::DateTime<chrono::Utc>)>(
        "SELECT id, username, role, disabled, created_at FROM users ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, username, role, disabled, created_at)| UserSummary {
            id,
            username,
            role,
            disabled,
            created_at,
        })
        .collect())
}

/// Disables (or re-enables) a user and returns their id; disabling ends their browser
/// sessions (enabling them again does not bring those back), their tokens stop working once
/// the server's token cache has let them go (at once through the admin API, within
/// `token_cache_seconds` otherwise).
pub async fn set_disabled(
    pool: &PgPool,
    username: &Username,
    disabled: bool,
) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "WITH u AS (UPDATE users SET disabled = $2 WHERE username = $1 RETURNING id), \
         ended AS (UPDATE sessions SET ended_at = now() \
                   WHERE $2 AND user_id = (SELECT id FROM u) AND ended_at IS NULL) \
         SELECT id FROM u",
    )
    .bind(username.as_str())
    .bind(disabled)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("no user {username}")))
}

/// Sets a user's password and ends all their browser sessions (whoever knew the old password
/// may be signed in somewhere); returns their id.
pub async fn set_password(
    pool: &PgPool,
    username: &Username,
    password: &Password,
) -> Result<i64, StoreError> {
    let hash = hash_password(password).await?;
    sqlx::query_scalar(
        "WITH u AS (UPDATE users SET password_hash = $2 WHERE username = $1 RETURNING id), \
         ended AS (UPDATE sessions SET ended_at = now() \
                   WHERE user_id = (SELECT id FROM u) AND ended_at IS NULL) \
         SELECT id FROM u",
    )
    .bind(username.as_str())
    .bind(hash)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("no user {username}")))
}

/// A user from its `(id, username, role)` columns.
pub(crate) fn user_from_row(row: (i64, String, String)) -> Result<User, StoreError> {
    let (id, username, role) = row;
    let role = Role::parse(&role).map_err(|e| StoreError::Unexpected(anyhow::anyhow!(e)))?;
    Ok(User { id, username, role })
}

/// Checks a password; `None` for a wrong password, an unknown or a disabled user (the three
/// take the same time, so the answer does not reveal which).
pub async fn authenticate(
    pool: &PgPool,
    username: &str,
    password: &str,
) -> Result<Option<User>, StoreError> {
    if Username::parse(username).is_err() {
        // Not a possible name (too long, NUL, ...): no query, same time as a wrong password.
        verify_password(DUMMY_HASH.to_string(), password.to_string()).await?;
        return Ok(None);
    }
    let row = sqlx::query_as::<_, (i64, String, String, String, bool)>(
        "SELECT id, username, role, password_hash, disabled FROM users WHERE username = $1",
    )
    .bind(username)
    .fetch_optional(pool)
    .await?;
    let Some((id, name, role, hash, disabled)) = row else {
        // Spend the same time as a real check.
        verify_password(DUMMY_HASH.to_string(), password.to_string()).await?;
        return Ok(None);
    };
    let ok = verify_password(hash, password.to_string()).await?;
    if !ok || disabled {
        return Ok(None);
    }
    user_from_row((id, name, role)).map(Some)
}

/// argon2 hash of a random string, used to time-equalise logins of unknown users.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$uBGbhz+iGgxaDVY4KXYLDMBCxmNcCEmwzGRKRHM2z8w";

/// The SHA-256 of a token: what is stored, and what the token cache is keyed by.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Creates an API token for `username` and returns it; only its digest is stored.
pub async fn create_token(
    pool: &PgPool,
    username: &Username,
    name: &str,
) -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let n = sqlx::query(
        "INSERT INTO api_tokens (user_id, name, token_sha256) \
         SELECT id, $2, $3 FROM users WHERE username = $1",
    )
    .bind(username.as_str())
    .bind(name)
    .bind(token_digest(&token).as_slice())
    .execute(pool)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound(format!("no user {username}")));
    }
    Ok(token)
}

/// The enabled user of the unrevoked token whose SHA-256 is `digest`.
pub async fn user_by_token_digest(
    pool: &PgPool,
    digest: &[u8; 32],
) -> Result<Option<User>, StoreError> {
    let row = sqlx::query_as::<_, (i64, String, String)>(
        "SELECT u.id, u.username, u.role FROM api_tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.token_sha256 = $1 AND t.revoked_at IS NULL AND NOT u.disabled",
    )
    .bind(digest.as_slice())
    .fetch_optional(pool)
    .await?;
    row.map(user_from_row).transpose()
}

/// Changes a user's role and returns their id. Sessions read the role on every request, so
/// it applies at once in the browser; the caller lets the token cache forget the user.
pub async fn set_role(pool: &PgPool, username: &Username, role: Role) -> Result<i64, StoreError> {
    sqlx::query_scalar("UPDATE users SET role = $2 WHERE username = $1 RETURNING id")
        .bind(username.as_str())
        .bind(role.as_str())
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no user {username}")))
}

/// An API token as admins see it (never the token itself: only its digest is stored).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct TokenSummary {
    pub id: i64,
    pub username: String,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every token, newest first.
pub async fn list_tokens(pool: &PgPool) -> Result<Vec<TokenSummary>, StoreError> {
    Ok(sqlx::query_as::<_, TokenSummary>(
        "SELECT t.id, u.username, t.name, t.created_at, t.revoked_at \
         FROM api_tokens t JOIN users u ON u.id = t.user_id ORDER BY t.id DESC",
    )
    .fetch_all(pool)
    .await?)
}

/// Revokes token `id` (again: no change) and returns its user's id and name.
pub async fn revoke_token(pool: &PgPool, id: i64) -> Result<(i64, String), StoreError> {
    sqlx::query_as(
        "WITH t AS (UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now()) \
                    WHERE id = $1 RETURNING user_id) \
         SELECT u.id, u.username FROM users u JOIN t ON t.user_id = u.id",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("no token {id}")))
}
