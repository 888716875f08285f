//! CPU time of the calling thread, for the figures of threads that also wait (a reader
//! waiting for its queue, a writer for its batches, or any of them for a core on a busy
//! machine): what they did, without the waits.

use std::time::Duration;

/// CPU time this thread has used so far (Linux's per-thread clock; zero if unreadable).
pub fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write; the per-thread clock exists on Linux.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
