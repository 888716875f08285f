//! Inputs made readable locally: a remote object is copied into a scratch directory (one
//! streamed GET) and its copy removed once used; [`in_order_ahead`] fetches the next inputs
//! on background threads while the current one is processed, so a task's cores do not wait
//! for the network between inputs.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use super::{RemoteObject, is_remote_path, transfer};

/// Inputs fetched ahead of the one being processed unless a config says otherwise: enough
/// concurrent GETs to keep a machine's cores busy when one stream from the store is slower
/// than they read (S3 serves a single GET at roughly 50-100 MB/s; a clean task reads gzipped
/// WARC at ~17 MB/s per core, so ~550 MB/s on 32 cores), for at most this many inputs'
/// copies on the scratch disk besides the current one (8 GB of 1 GB crawl objects).
pub const FETCH_AHEAD: usize = 8;

/// Where [`fetch_input`] puts input `path` for `dir`: `path` itself when it is local.
pub fn staged_path(path: &Path, dir: &Path) -> Result<PathBuf> {
    if !is_remote_path(path) {
        return Ok(path.to_path_buf());
    }
    let object = RemoteObject::parse(&path.to_string_lossy())?;
    Ok(dir.join(object.file_name()))
}

/// The size of input `path` (a local file, or an object: from the listing that found it,
/// else one HEAD), without fetching it.
pub fn input_size(path: &Path) -> Result<Option<u64>> {
    if is_remote_path(path) {
        let url = path.to_string_lossy();
        if let Some(size) = super::remote::listed_size(&url) {
            return Ok(Some(size));
        }
        return RemoteObject::parse(&url)?.size();
    }
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Makes input `path` readable locally: a local path as it is; a remote object fetched into
/// `dir` under its own file name (so source labels stay the same).
pub fn fetch_input(path: &Path, dir: &Path) -> Result<PathBuf> {
    stage_input(path, dir).map(StagedInput::keep)
}

/// [`fetch_input`], the copy removed when the returned value is dropped.
pub fn stage_input(path: &Path, dir: &Path) -> Result<StagedInput> {
    let local = staged_path(path, dir)?;
    if local == path {
        return Ok(StagedInput {
            path: local,
            copy: false,
        });
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let object = RemoteObject::parse(&path.to_string_lossy())?;
    transfer::count_input(object.download(&local)?);
    Ok(StagedInput {
        path: local,
        copy: true,
    })
}

/// An input readable at [`StagedInput::path`]; a fetched copy is removed on drop, so an
/// input fetched ahead and never processed (the task failed first) leaves no copy behind.
#[derive(Debug)]
pub struct StagedInput {
    path: PathBuf,
    copy: bool,
}

impl StagedInput {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path, the copy kept (the caller removes it).
    pub fn keep(mut self) -> PathBuf {
        self.copy = false;
        std::mem::take(&mut self.path)
    }
}

impl Drop for StagedInput {
    fn drop(&mut self) {
        if self.copy {
            std::fs::remove_file(&self.path).ok();
        }
    }
}

/// Calls `fetch` on each of `items`, up to `ahead` items past the one `consume` has (each on
/// its own thread, so up to `ahead` fetches run at once), and hands the results to `consume`
/// in order; `ahead` 0 fetches each in turn on this thread. Stops at `consume`'s first error
/// or `Break` (fetches under way finish and their results are dropped). Returns how long
/// `consume` waited for results in all.
pub fn in_order_ahead<I: Sync, T: Send>(
    items: &[I],
    ahead: usize,
    fetch: impl Fn(&I) -> T + Sync,
    mut consume: impl FnMut(&I, T) -> Result<ControlFlow<()>>,
) -> Result<Duration> {
    let mut waited = Duration::ZERO;
    if ahead == 0 {
        for item in items {
            let started = Instant::now();
            let fetched = fetch(item);
            waited += started.elapsed();
            if consume(item, fetched)?.is_break() {
                break;
            }
        }
        return Ok(waited);
    }
    let fetch = &fetch;
    std::thread::scope(|scope| {
        // The dispatcher starts a fetch and then blocks handing it over while `ahead - 1`
        // wait in the channel: with the one it holds, `ahead` past the one consumed.
        let (handles_tx, handles_rx) = sync_channel(ahead - 1);
        scope.spawn(move || {
            for item in items {
                let handle = scope.spawn(move || fetch(item));
                if handles_tx.send(handle).is_err() {
                    // `consume` failed: fetch nothing more.
                    break;
                }
            }
        });
        for item in items {
            let started = Instant::now();
            let handle = handles_rx
                .recv()
                .map_err(|_| anyhow!("the input fetcher stopped"))?;
            let fetched = handle
                .join()
                .map_err(|_| anyhow!("fetching an input panicked"))?;
            waited += started.elapsed();
            if consume(item, fetched)?.is_break() {
                break;
            }
        }
        Ok(waited)
    })
}

/// Hands each `(number, path)` of `inputs` to `consume` in order, readable locally: a remote
/// one fetched into `dir/NNNNN/` up to `ahead` past the one consumed ([`in_order_ahead`]),
/// its copy removed once consumed; when every input is local they are read in place, one
/// after the other on this thread. Stops at `consume`'s first error or `Break`.
pub fn each_staged<P: AsRef<Path> + Sync>(
    inputs: &[(usize, P)],
    dir: &Path,
    ahead: usize,
    mut consume: impl FnMut(usize, &Path) -> Result<ControlFlow<()>>,
) -> Result<()> {
    let ahead = if inputs.iter().any(|(_, p)| is_remote_path(p.as_ref())) {
        ahead
    } else {
        0
    };
    let fetch = |(i, path): &(usize, P)| stage_input(path.as_ref(), &dir.join(format!("{i:05}")));
    in_order_ahead(inputs, ahead, fetch, |(i, _), staged| {
        consume(*i, staged?.path())
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs `in_order_ahead` over 0..n with fetches that sleep, recording how many were
    /// fetched but not yet consumed at each fetch's start; the consumer fails at `fail_at`
    /// or stops after `stop_at`.
    fn run(
        n: usize,
        ahead: usize,
        fail_at: Option<usize>,
        stop_at: Option<usize>,
    ) -> (Vec<usize>, usize, usize) {
        let fetched = AtomicUsize::new(0);
        let consumed = AtomicUsize::new(0);
        let most_ahead = AtomicUsize::new(0);
        let order = Mutex::new(Vec::new());
        let items: Vec<usize> = (0..n).collect();
        let result = in_order_ahead(
            &items,
            ahead,
            |&i| {
                let started = fetched.fetch_add(1, Ordering::SeqCst) + 1;
                let pending = started - consumed.load(Ordering::SeqCst);
                most_ahead.fetch_max(pending, Ordering::SeqCst);
                // Later items finish first, so order is only kept by the hand-over.
                std::thread::sleep(Duration::from_millis(((n - i) * 3) as u64));
                i * 10
            },
            |&i, value| {
                assert_eq!(value, i * 10);
                if Some(i) == fail_at {
                    anyhow::bail!("item {i} failed");
                }
                order.lock().expect("lock").push(i);
                consumed.fetch_add(1, Ordering::SeqCst);
                Ok(if Some(i) == stop_at {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            },
        );
        assert_eq!(result.is_err(), fail_at.is_some());
        (
            order.into_inner().expect("lock"),
            most_ahead.load(Ordering::SeqCst),
            fetched.load(Ordering::SeqCst),
        )
    }

    #[test]
    fn results_come_in_order_at_most_ahead_items_past_the_consumed_one() {
        for ahead in [0, 1, 2, 4] {
            let (order, most_ahead, fetched) = run(12, ahead, None, None);
            assert_eq!(order, (0..12).collect::<Vec<_>>(), "ahead {ahead}");
            assert_eq!(fetched, 12);
            // The one being consumed plus `ahead` past it.
            assert!(
                most_ahead <= ahead + 1,
                "ahead {ahead}: {most_ahead} fetched at once"
            );
            if ahead > 1 {
                assert!(most_ahead > 1, "ahead {ahead}: fetches never overlapped");
            }
        }
    }

    #[test]
    fn a_consumer_that_fails_or_stops_ends_the_fetches_soon_after() {
        let (order, _, fetched) = run(40, 2, Some(3), None);
        assert_eq!(order, vec![0, 1, 2]);
        // Items 0..=3 consumed or failed, at most 2 + 1 more started.
        assert!(fetched <= 7, "{fetched} fetched");
        for ahead in [0, 2] {
            let (order, _, fetched) = run(40, ahead, None, Some(4));
            assert_eq!(order, vec![0, 1, 2, 3, 4], "ahead {ahead}");
            assert!(fetched <= 5 + ahead + 1, "ahead {ahead}: {fetched} fetched");
        }
    }

    #[test]
    fn a_staged_copy_goes_when_dropped_and_a_local_input_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = dir.path().join("a.jsonl");
        std::fs::write(&local, "{}\n").expect("write");
        let staged = stage_input(&local, &dir.path().join("staging")).expect("stage");
        assert_eq!(staged.path(), local);
        drop(staged);
        assert!(local.exists());
        let copy = StagedInput {
            path: dir.path().join("copy"),
            copy: true,
        };
        std::fs::write(copy.path(), "x").expect("write");
        let kept = StagedInput {
            path: dir.path().join("kept"),
            copy: true,
        };
        std::fs::write(kept.path(), "x").expect("write");
        let kept = kept.keep();
        drop(copy);
        assert!(!dir.path().join("copy").exists());
        assert!(kept.exists());
    }
}
