//! Single sign-on identities: the labeler user an OpenID Connect identity (issuer, subject)
//! signs in as. A new identity gets a new user, named by the provider's claim, unless that
//! name belongs to another account (a local one is never taken over); the role follows the
//! provider's role claim on every sign-in when one is configured. Disabled users stay out.

use rand::RngCore;
use sqlx::PgPool;

use crate::domain::{Password, Role, Username};
use crate::store::StoreError;
use crate::store::accounts::{self, User};
use crate::store::audit::{self, Action, Actor, Event};

/// Why a sign-in is refused although the provider vouched for the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Disabled,
    /// The name is another account's (a local one, or another identity's).
    NameTaken(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Disabled => f.write_str("this account is disabled"),
            Self::NameTaken(name) => write!(
                f,
                "the user name {name} belongs to another labeler account; ask an admin"
            ),
        }
    }
}

/// The user `issuer`/`subject` signs in as (made on first sign-in), with `role` applied when
/// given. User creation and role changes are in the audit log, by `oidc:<issuer>`.
pub async fn sign_in(
    pool: &PgPool,
    issuer: &str,
    subject: &str,
    username: &Username,
    role: Option<Role>,
) -> Result<Result<User, Refusal>, StoreError> {
    let actor = Actor::system(format!("oidc:{issuer}"));
    let mut tx = pool.begin().await?;
    let known: Option<(i64, String, String, bool)> = sqlx::query_as(
        "SELECT u.id, u.username, u.role, u.disabled FROM oidc_identities o \
         JOIN users u ON u.id = o.user_id WHERE o.issuer = $1 AND o.subject = $2 \
         FOR UPDATE OF o, u",
    )
    .bind(issuer)
    .bind(subject)
    .fetch_optional(&mut *tx)
    .await?;
    let user = match known {
        Some((_, _, _, true)) => return Ok(Err(Refusal::Disabled)),
        Some((id, name, current, false)) => {
            let mut user = accounts::user_from_row((id, name, current))?;
            if let Some(role) = role.filter(|r| *r != user.role) {
                sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
                    .bind(id)
                    .bind(role.as_str())
                    .execute(&mut *tx)
                    .await?;
                let event = Event::new(Action::UserRole)
                    .target(&user.username)
                    .details(serde_json::json!({"role": role.as_str(), "from": "role claim"}));
                audit::record(&mut *tx, &actor, event).await?;
                user.role = role;
            }
            sqlx::query(
                "UPDATE oidc_identities SET last_login_at = now() \
                 WHERE issuer = $1 AND subject = $2",
            )
            .bind(issuer)
            .bind(subject)
            .execute(&mut *tx)
            .await?;
            user
        }
        None => {
            // An unusable password: 256 random bits nobody is told.
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let password = Password::parse(hex::encode(bytes)).map_err(StoreError::Invalid)?;
            let hash = accounts::hash_password(&password).await?;
            let role = role.unwrap_or(Role::Annotator);
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO users (username, password_hash, role) VALUES ($1, $2, $3) \
                 ON CONFLICT (username) DO NOTHING RETURNING id",
            )
            .bind(username.as_str())
            .bind(hash)
            .bind(role.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(id) = id else {
                return Ok(Err(Refusal::NameTaken(username.as_str().to_string())));
            };
            sqlx::query(
                "INSERT INTO oidc_identities (issuer, subject, user_id) VALUES ($1, $2, $3)",
            )
            .bind(issuer)
            .bind(subject)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let event = Event::new(Action::UserAdd)
                .target(username.as_str())
                .details(serde_json::json!({"role": role.as_str(), "via": "oidc"}));
            audit::record(&mut *tx, &actor, event).await?;
            User {
                id,
                username: username.as_str().to_string(),
                role,
            }
        }
    };
    tx.commit().await?;
    Ok(Ok(user))
}
