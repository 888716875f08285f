//! The login rate limiter: failed sign-ins per user name and per client address in a sliding
//! window, so a password cannot be guessed at speed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins per key (user name, client address) in a sliding window; past the limit,
/// logins for that key are refused until the window passes.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any of `keys` has used up its failures.
    pub fn is_blocked(&self, keys: &[&str]) -> bool {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, since)| now.duration_since(*since) < self.window);
        keys.iter()
            .any(|k| map.get(*k).is_some_and(|(n, _)| *n >= self.max_failures))
    }

    pub fn record_failure(&self, keys: &[&str]) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for k in keys {
            map.entry((*k).to_string()).or_insert((0, now)).0 += 1;
        }
    }
}
