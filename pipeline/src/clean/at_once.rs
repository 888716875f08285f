//! Several inputs of a clean run processed at the same time. One input goes through one
//! reader thread (a gzip stream inflates ~100 MB/s of stored WARC on a core) and one writer
//! thread (JSON and zstd of its work files, ~200 MB/s of text), so a task on many cores
//! that took its inputs one at a time left most of them waiting for those two threads (on
//! 32 cores, ~5 of them busy with WARC).

use std::sync::mpsc::{Receiver, channel, sync_channel};
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};

/// Worker threads per input processed at once. Measured on the generated WARC corpus (perf,
/// release build): one reader thread inflates and parses ~100 MB/s of gzipped WARC, which
/// keeps ~5 worker threads busy (~20 MB/s each: extraction, filters, signatures); JSONL
/// keeps ~12 busy before its writer thread (~200 MB/s) is the limit. One input per 4
/// threads leaves each reader some slack.
pub const THREADS_PER_INPUT: usize = 4;

/// Inputs processed at once: `configured`, or with 0 one per [`THREADS_PER_INPUT`] worker
/// threads (1 up to 4 threads, as on a laptop; 8 on 32).
pub fn inputs_at_once(configured: usize, threads: usize) -> usize {
    match configured {
        0 => threads.div_ceil(THREADS_PER_INPUT).max(1),
        n => n,
    }
}

/// Runs `run` on each job `feed` submits, up to `at_once` at a time. With 1, every job runs
/// on the caller's thread, in order, and no thread is started. With more, `at_once` helper
/// threads take the jobs, and the caller (a worker of the pool) only hands them out, waiting
/// for a free helper: a job it ran itself would keep it from handing the next ones to
/// helpers that come free meanwhile (with inputs read from the network, that left helpers
/// idle for a whole input). `feed` gets a `submit` that fails once a job has failed, so it
/// stops soon after; jobs under way finish. Returns the results in the order they finished,
/// or the first error (a job's before `feed`'s, which may only say that the jobs stopped).
pub fn run_at_once<J: Send, R: Send>(
    at_once: usize,
    run: impl Fn(J) -> Result<R> + Sync,
    feed: impl FnOnce(&mut dyn FnMut(J) -> Result<()>) -> Result<()>,
) -> Result<Vec<R>> {
    let mut done = Vec::new();
    if at_once <= 1 {
        feed(&mut |job| {
            done.push(run(job)?);
            Ok(())
        })?;
        return Ok(done);
    }
    let run = &run;
    // A job is handed to a helper waiting for one (a rendezvous channel); the receiver goes
    // with the last helper, so a submit after every helper has stopped fails.
    let (jobs_tx, jobs_rx) = sync_channel::<J>(0);
    let (results_tx, results_rx) = channel::<Result<R>>();
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    std::thread::scope(|scope| {
        for _ in 0..at_once {
            let (jobs_rx, results_tx) = (Arc::clone(&jobs_rx), results_tx.clone());
            scope.spawn(move || {
                loop {
                    let job = match jobs_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => break,
                    };
                    let Ok(job) = job else { break };
                    let result = run(job);
                    let failed = result.is_err();
                    if results_tx.send(result).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop((jobs_rx, results_tx));
        let mut submit = |job: J| -> Result<()> {
            take_finished(&results_rx, &mut done)?;
            jobs_tx
                .send(job)
                .map_err(|_| anyhow!("every helper processing inputs stopped"))
        };
        let fed = feed(&mut submit);
        drop(jobs_tx);
        // Every helper ends once its job is done: their results, then the first error.
        let mut first_error = None;
        for result in results_rx {
            match result {
                Ok(r) => done.push(r),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error.or(fed.err()) {
            Some(e) => Err(e),
            None => Ok(done),
        }
    })
}

/// Moves the helpers' finished results into `done`; the first failure is returned.
fn take_finished<R>(results: &Receiver<Result<R>>, done: &mut Vec<R>) -> Result<()> {
    while let Ok(result) = results.try_recv() {
        done.push(result.map_err(|e| e.context("an input processed beside this one failed"))?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Submits 0..n, each job sleeping a little; returns the results (sorted), the most jobs
    /// seen running at once and how many threads ran them.
    fn run(n: usize, at_once: usize) -> (Result<Vec<usize>>, usize, usize) {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let threads = Mutex::new(std::collections::HashSet::new());
        let result = run_at_once(
            at_once,
            |i: usize| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                threads
                    .lock()
                    .expect("lock")
                    .insert(std::thread::current().id());
                std::thread::sleep(Duration::from_millis(5 + (i % 3) as u64 * 4));
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(i)
            },
            |submit| {
                for i in 0..n {
                    submit(i)?;
                }
                Ok(())
            },
        )
        .map(|mut v| {
            v.sort_unstable();
            v
        });
        let threads = threads.lock().expect("lock").len();
        (result, most.load(Ordering::SeqCst), threads)
    }

    #[test]
    fn every_job_runs_once_and_at_most_at_once_run_together() {
        for at_once in [1, 2, 3, 5] {
            let (result, most, _) = run(24, at_once);
            assert_eq!(result.expect("no job fails"), (0..24).collect::<Vec<_>>());
            assert!(most <= at_once, "at_once {at_once}: {most} ran together");
            if at_once > 1 {
                assert!(most > 1, "at_once {at_once}: jobs never overlapped");
            }
        }
    }

    #[test]
    fn one_at_once_runs_every_job_on_the_callers_thread() {
        let (result, most, threads) = run(6, 1);
        assert_eq!(result.expect("no job fails").len(), 6);
        assert_eq!((most, threads), (1, 1));
    }

    #[test]
    fn a_failing_job_stops_the_feed_and_its_error_is_returned() {
        for at_once in [1, 3] {
            let submitted = AtomicUsize::new(0);
            let result = run_at_once(
                at_once,
                |i: usize| {
                    std::thread::sleep(Duration::from_millis(5));
                    if i == 4 {
                        anyhow::bail!("job {i} failed");
                    }
                    Ok(i)
                },
                |submit| {
                    for i in 0..200 {
                        submitted.fetch_add(1, Ordering::SeqCst);
                        submit(i)?;
                    }
                    Ok(())
                },
            );
            let error = format!("{:#}", result.expect_err("job 4 fails"));
            assert!(error.contains("job 4 failed"), "{error}");
            let submitted = submitted.load(Ordering::SeqCst);
            assert!(
                submitted < 20,
                "at_once {at_once}: {submitted} submitted after the failure"
            );
        }
    }

    #[test]
    fn the_default_is_one_input_per_four_threads() {
        assert_eq!(inputs_at_once(0, 1), 1);
        assert_eq!(inputs_at_once(0, 2), 1);
        assert_eq!(inputs_at_once(0, 4), 1);
        assert_eq!(inputs_at_once(0, 5), 2);
        assert_eq!(inputs_at_once(0, 32), 8);
        assert_eq!(inputs_at_once(3, 2), 3);
    }
}
