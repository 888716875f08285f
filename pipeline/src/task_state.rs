//! What a task of a split stage leaves in `OUT/tasks/` beside its done marker
//! (`STAGE-IIIII-of-NNNNN.json`, written by the stage itself, last): `….running.json` from its
//! start (host, pid, time) and `….failed.json` with its error when it fails. Each is one atomic
//! write (a rename, or one PUT) and both are removed when the task succeeds, so `pipeline
//! status` tells done, running, failed and not-started tasks apart. A killed task keeps its
//! running marker: status shows it as running since its start time, never as done.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::shard::TaskSlice;
use crate::storage;

/// Which marker of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Done,
    Running,
    Failed,
}

impl Marker {
    fn suffix(self) -> &'static str {
        match self {
            Marker::Done => ".json",
            Marker::Running => ".running.json",
            Marker::Failed => ".failed.json",
        }
    }
}

/// One try of a task: who ran it, when, and (in a failure marker) its error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub host: String,
    pub pid: u32,
    /// Seconds since the Unix epoch.
    pub at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Attempt {
    fn now(error: Option<String>) -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".into());
        Self {
            host,
            pid: std::process::id(),
            at: unix_now(),
            error,
        }
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `OUT/tasks/STAGE-IIIII-of-NNNNN[.running|.failed].json`.
pub fn marker_path(out: &Path, stage: &str, slice: TaskSlice, marker: Marker) -> PathBuf {
    let done = slice.marker(stage);
    let stem = done.strip_suffix(".json").unwrap_or(&done);
    out.join(format!("{stem}{}", marker.suffix()))
}

/// A marker's file name read back: (stage, index, count, which marker).
pub fn parse_marker(name: &str) -> Option<(String, usize, usize, Marker)> {
    let (stem, marker) = [Marker::Running, Marker::Failed, Marker::Done]
        .into_iter()
        .find_map(|m| name.strip_suffix(m.suffix()).map(|s| (s, m)))?;
    let (head, count) = stem.rsplit_once("-of-")?;
    let (stage, index) = head.rsplit_once('-')?;
    let index: usize = index.parse().ok()?;
    let count: usize = count.parse().ok()?;
    (index < count && !stage.is_empty()).then(|| (stage.to_string(), index, count, marker))
}

/// Runs task `slice` of `stage` (writing to `out`) with its running and failure markers;
/// without a slice (an unsplit run) just runs it. Once it has started, marker writes that
/// fail are logged, not raised: the task's own result is the one that matters.
pub fn track<T>(
    out: &Path,
    stage: &str,
    slice: Option<TaskSlice>,
    task: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let Some(slice) = slice else {
        return task();
    };
    let path = |m| marker_path(out, stage, slice, m);
    let attempt = |e| serde_json::to_vec_pretty(&Attempt::now(e)).unwrap_or_default();
    let logged = |what: &str, r: Result<()>| {
        if let Err(e) = r {
            tracing::warn!("{what}: {e:#}");
        }
    };
    // The task's first write: a store that refuses it (no bucket, wrong credentials) stops
    // the task here, with that one error.
    storage::write_small(&path(Marker::Running), &attempt(None))
        .context("starting the task: its output is not writable")?;
    let result = task();
    match &result {
        Ok(_) => logged(
            "removing the failure marker",
            storage::remove(&path(Marker::Failed)),
        ),
        Err(e) => logged(
            "writing the failure marker",
            storage::write_small(&path(Marker::Failed), &attempt(Some(format!("{e:#}")))),
        ),
    }
    logged(
        "removing the running marker",
        storage::remove(&path(Marker::Running)),
    );
    result
}

/// An exclusive lock on a task's lock file, held until dropped. The kernel releases it when
/// the process dies, so a killed task never leaves a stale lock behind.
#[derive(Debug)]
pub struct TaskLock {
    _file: File,
}

/// Takes the lock at `path` (created), waiting while another process holds it.
pub fn lock_task(path: &Path) -> Result<TaskLock> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening the task lock {}", path.display()))?;
    let flock = |operation| {
        // SAFETY: the descriptor belongs to `file`, open for the whole call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), operation) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    match flock(libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => return Ok(TaskLock { _file: file }),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            tracing::warn!(
                "{} is held: this task runs in another process; waiting for it",
                path.display()
            );
        }
        Err(e) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    loop {
        match flock(libc::LOCK_EX) {
            Ok(()) => return Ok(TaskLock { _file: file }),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }
}
