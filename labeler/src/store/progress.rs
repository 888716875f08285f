//! A project's progress for the dashboard: items done, in progress and remaining, queue
//! health (live, overdue and expired leases; median time per item), responses per
//! annotator per day, and the items annotators skipped with their reasons.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::PgPool;

use crate::store::StoreError;
use crate::store::projects::Project;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Progress {
    pub done: i64,
    pub in_progress: i64,
    pub remaining: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct QueueHealth {
    /// Leases held now.
    pub live_leases: i64,
    /// Leases past their expiry that the reclaimer has not returned yet.
    pub overdue_leases: i64,
    /// Leases that expired (abandoned) in the last 24 hours, and ever.
    pub expired_24h: i64,
    pub expired_total: i64,
    pub median_time_ms: Option<f64>,
}

/// Items with all their (non-rejected) responses; started but not done; not started.
pub async fn progress(pool: &PgPool, project: &Project) -> Result<Progress, StoreError> {
    Ok(sqlx::query_as::<_, Progress>(
        "WITH s AS (SELECT i.taken, i.overlap, \
             (SELECT count(*) FROM responses r WHERE r.item_id = i.id \
                AND r.review_status <> 'rejected') AS answered \
           FROM items i WHERE i.project_id = $1) \
         SELECT count(*) FILTER (WHERE answered >= overlap) AS done, \
                count(*) FILTER (WHERE answered < overlap AND taken > 0) AS in_progress, \
                count(*) FILTER (WHERE answered < overlap AND taken = 0) AS remaining \
         FROM s",
    )
    .bind(project.id)
    .fetch_one(pool)
    .await?)
}

pub async fn queue_health(pool: &PgPool, project: &Project) -> Result<QueueHealth, StoreError> {
    Ok(sqlx::query_as::<_, QueueHealth>(
        "SELECT \
           count(*) FILTER (WHERE status = 'leased' AND expires_at >= now()) AS live_leases, \
           count(*) FILTER (WHERE status = 'leased' AND expires_at < now()) AS overdue_leases, \
           count(*) FILTER (WHERE status = 'expired' AND finished_at > now() - interval '1 day') \
             AS expired_24h, \
           count(*) FILTER (WHERE status = 'expired') AS expired_total, \
           (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY time_spent_ms) FROM responses \
              WHERE project_id = $1 AND time_spent_ms IS NOT NULL) AS median_time_ms \
         FROM assignments WHERE project_id = $1",
    )
    .bind(project.id)
    .fetch_one(pool)
    .await?)
}

/// Responses per annotator per day over the last 14 days: (days, annotators, counts[day][annotator]).
pub async fn throughput(
    pool: &PgPool,
    project: &Project,
) -> Result<(Vec<String>, Vec<String>, Vec<Vec<f64>>), StoreError> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), u.username, count(*) \
         FROM responses r JOIN users u ON u.id = r.user_id \
         WHERE r.project_id = $1 AND r.created_at > now() - interval '14 days' \
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(project.id)
    .fetch_all(pool)
    .await?;
    let mut days: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    days.dedup();
    let mut users: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
    users.sort();
    users.dedup();
    let index: BTreeMap<&str, usize> = users
        .iter()
        .enumerate()
        .map(|(i, u)| (u.as_str(), i))
        .collect();
    let mut counts = vec![vec![0.0; users.len()]; days.len()];
    let day_index: BTreeMap<&str, usize> = days
        .iter()
        .enumerate()
        .map(|(i, d)| (d.as_str(), i))
        .collect();
    for (day, user, n) in &rows {
        counts[day_index[day.as_str()]][index[user.as_str()]] = *n as f64;
    }
    Ok((days, users, counts))
}

/// An item an annotator gave up, with their reason when they gave one.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Skip {
    pub external_id: String,
    pub annotator: String,
    pub reason: Option<String>,
    pub at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The newest `limit` skips of the project.
pub async fn skips(pool: &PgPool, project: &Project, limit: i64) -> Result<Vec<Skip>, StoreError> {
    Ok(sqlx::query_as::<_, Skip>(
        "SELECT i.external_id, u.username AS annotator, a.skip_reason AS reason, \
                a.finished_at AS at \
         FROM assignments a JOIN items i ON i.id = a.item_id JOIN users u ON u.id = a.user_id \
         WHERE a.project_id = $1 AND a.status = 'skipped' \
         ORDER BY a.finished_at DESC NULLS LAST, a.id DESC LIMIT $2",
    )
    .bind(project.id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
