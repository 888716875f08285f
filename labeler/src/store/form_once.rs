//! Page forms that must take effect once (make a user, make a token): the page puts a random
//! nonce in the form, and the post claims it in `idempotency_keys` (as `form:<nonce>`, under
//! the poster's id) before acting. A second post of the same form (a double click, a reload
//! of the reply) finds it claimed and does nothing.

use sqlx::PgPool;

use crate::store::StoreError;

/// Claims `nonce` for `user_id`; `false` when it was claimed before.
pub async fn claim(pool: &PgPool, user_id: i64, nonce: &str) -> Result<bool, StoreError> {
    if !(16..=100).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(StoreError::Invalid(
            "the form is missing its nonce: reload the page and try again".into(),
        ));
    }
    Ok(sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, status_code) VALUES ($1, $2, 303) \
         ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(format!("form:{nonce}"))
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}
