//! A c10d process group as a Rust value: collectives on tch tensors that return an error
//! (naming the rank that died or hung, when the shim can tell) instead of hanging.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::ptr::{self, NonNull};
use std::time::Duration;

use tch::Tensor;

use crate::dist::ffi;
use crate::dist::world::World;

/// What a collective or joining the group reported.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("{0}")]
    Collective(String),
    #[error("{op}: the tensor must be contiguous")]
    NotContiguous { op: &'static str },
    #[error("MASTER_ADDR {0:?} holds a NUL byte")]
    BadAddress(String),
}

/// How [`ProcessGroup::all_reduce`] combines the ranks' tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Avg,
}

/// A joined process group (every rank of the [`World`]).
#[derive(Debug)]
pub struct ProcessGroup {
    raw: NonNull<ffi::JlPg>,
    rank: usize,
    size: usize,
}

// The shim's group is used from one thread at a time (`&mut`-free methods still run one
// collective at a time: the engine is single-threaded); c10d's own objects are thread-safe.
unsafe impl Send for ProcessGroup {}

/// The shim's error string as an error (freed here, once).
fn shim_error(err: *mut c_char) -> DistError {
    if err.is_null() {
        return DistError::Collective("collective failed (no message)".to_string());
    }
    // SAFETY: the shim returns a NUL-terminated malloc'ed string, freed here once.
    let msg = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { ffi::jl_free_string(err) };
    DistError::Collective(msg)
}

/// Turns a shim status and error string into a result.
fn check(rc: c_int, err: *mut c_char) -> Result<(), DistError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(shim_error(err))
    }
}

impl ProcessGroup {
    /// Joins the group: rank 0 serves the rendezvous store at the master address, every
    /// rank connects to it, then Gloo (and NCCL when `nccl`) set up their connections.
    /// Every later collective fails after `timeout` rather than wait forever.
    pub fn join(world: &World, timeout: Duration, nccl: bool) -> Result<Self, DistError> {
        let addr = CString::new(world.master_addr.clone())
            .map_err(|_| DistError::BadAddress(world.master_addr.clone()))?;
        let prefix = CString::new(format!("jl/{}/", world.attempt))
            .map_err(|_| DistError::BadAddress(world.master_addr.clone()))?;
        let mut err = ptr::null_mut();
        // SAFETY: valid C strings; the shim copies them.
        let raw = unsafe {
            ffi::jl_pg_new(
                addr.as_ptr(),
                c_int::from(world.master_port),
                world.rank as c_int,
                world.size as c_int,
                timeout.as_millis().min(i64::MAX as u128) as i64,
                c_int::from(nccl),
                c_int::from(world.rank == 0 && !world.agent_store),
                prefix.as_ptr(),
                &mut err,
            )
        };
        let raw = NonNull::new(raw).ok_or_else(|| shim_error(err))?;
        Ok(Self {
            raw,
            rank: world.rank,
            size: world.size,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn has_nccl(&self) -> bool {
        // SAFETY: `raw` is a live group.
        unsafe { ffi::jl_pg_has_nccl(self.raw.as_ptr()) != 0 }
    }

    /// The step this rank is at, published with its heartbeat: a failed collective names
    /// the ranks that are behind.
    pub fn set_progress(&self, step: u64) {
        // SAFETY: `raw` is a live group.
        unsafe { ffi::jl_pg_set_progress(self.raw.as_ptr(), step as i64) }
    }

    /// Combines `t` in place across the ranks.
    pub fn all_reduce(&self, t: &Tensor, op: ReduceOp) -> Result<(), DistError> {
        contiguous(t, "all_reduce")?;
        let op = match op {
            ReduceOp::Sum => 0,
            ReduceOp::Avg => 1,
        };
        let mut err = ptr::null_mut();
        // SAFETY: the tensor outlives the call; the shim only reads the handle.
        let rc =
            unsafe { ffi::jl_pg_all_reduce(self.raw.as_ptr(), t.as_ptr() as *mut _, op, &mut err) };
        check(rc, err)
    }

    /// Copies rank `root`'s `t` into every rank's `t`.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<(), DistError> {
        contiguous(t, "broadcast")?;
        let mut err = ptr::null_mut();
        // SAFETY: as in all_reduce.
        let rc = unsafe {
            ffi::jl_pg_broadcast(
                self.raw.as_ptr(),
                t.as_ptr() as *mut _,
                root as c_int,
                &mut err,
            )
        };
        check(rc, err)
    }

    /// Rank r's `input` lands in the r-th of `size` equal chunks of `out` (flattened).
    pub fn all_gather(&self, out: &Tensor, input: &Tensor) -> Result<(), DistError> {
        contiguous(out, "all_gather")?;
        contiguous(input, "all_gather")?;
        let mut err = ptr::null_mut();
        // SAFETY: as in all_reduce.
        let rc = unsafe {
            ffi::jl_pg_all_gather(
                self.raw.as_ptr(),
                out.as_ptr() as *mut _,
                input.as_ptr() as *mut _,
                &mut err,
            )
        };
        check(rc, err)
    }

    /// Returns once every rank has reached it.
    pub fn barrier(&self) -> Result<(), DistError> {
        let mut err = ptr::null_mut();
        // SAFETY: `raw` is a live group.
        let rc = unsafe { ffi::jl_pg_barrier(self.raw.as_ptr(), &mut err) };
        check(rc, err)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: created by jl_pg_new, freed once.
        unsafe { ffi::jl_pg_free(self.raw.as_ptr()) }
    }
}

fn contiguous(t: &Tensor, op: &'static str) -> Result<(), DistError> {
    if t.is_contiguous() {
        Ok(())
    } else {
        Err(DistError::NotContiguous { op })
    }
}
