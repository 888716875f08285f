//! The lease reclaimer: returns abandoned leases to the pool on a timer, so items come back
//! even while the queue is busy (`store::queue::next` also reclaims when it finds nothing).

use sqlx::PgPool;

use crate::store::queue::reclaim_expired;

/// Reclaims expired leases of every project every `every`.
pub fn spawn(pool: PgPool, every: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = reclaim_expired(&pool, None).await {
                tracing::warn!(error = %e, "reclaiming expired leases failed");
            }
        }
    });
}
