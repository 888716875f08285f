//! API-token lookups remembered for a few seconds, so an annotator's "next + submit" costs
//! two database round trips instead of four. Keyed by the token's SHA-256 (the token itself
//! is never kept). A user disabled through this server is forgotten at once; a change made
//! elsewhere (the `labeler user disable` command, another server process, SQL) takes effect
//! within the time to live.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::accounts::User;

/// Entries beyond this are dropped wholesale (after the expired ones): a flood of distinct
/// valid tokens cannot grow the map without bound.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (User, Instant)>>,
}

impl TokenCache {
    /// A cache whose entries live `ttl`; `Duration::ZERO` turns it off.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The user of the token with this digest, if looked up less than `ttl` ago.
    pub fn get(&self, digest: &[u8; 32]) -> Option<User> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(digest)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(user, _)| user.clone())
    }

    /// Remembers a successful lookup (failed ones are not cached: they are rare and cheap to
    /// repeat, and caching them would let random tokens fill the map).
    pub fn put(&self, digest: [u8; 32], user: User) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(digest, (user, Instant::now()));
    }

    /// Drops every token of `user_id` (disabled, or their tokens revoked).
    pub fn forget_user(&self, user_id: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (user, _)| user.id != user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    fn ann(id: i64) -> User {
        User {
            id,
            username: format!("ann{id}"),
            role: Role::Annotator,
        }
    }

    #[test]
    fn remembers_until_the_ttl_or_until_the_user_is_forgotten() {
        let cache = TokenCache::new(Duration::from_secs(60));
        cache.put([1; 32], ann(1));
        cache.put([2; 32], ann(2));
        assert_eq!(cache.get(&[1; 32]), Some(ann(1)));
        cache.forget_user(1);
        assert_eq!(cache.get(&[1; 32]), None);
        assert_eq!(cache.get(&[2; 32]), Some(ann(2)));

        let expired = TokenCache::new(Duration::from_millis(1));
        expired.put([1; 32], ann(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(expired.get(&[1; 32]), None);

        let off = TokenCache::new(Duration::ZERO);
        off.put([1; 32], ann(1));
        assert_eq!(off.get(&[1; 32]), None);
    }
}
