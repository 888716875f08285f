//! The C interface of `csrc/c10d_shim.cpp`. Tensors cross as tch's `*mut C_tensor`, which
//! is a `torch::Tensor*` on the C++ side.

use std::os::raw::{c_char, c_int};

use torch_sys::C_tensor;

/// The shim's process group (opaque).
#[repr(C)]
pub struct JlPg {
    _private: [u8; 0],
}

unsafe extern "C" {
    pub fn jl_free_string(s: *mut c_char);
    pub fn jl_pg_new(
        addr: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        with_nccl: c_int,
        serve_store: c_int,
        prefix: *const c_char,
        err: *mut *mut c_char,
    ) -> *mut JlPg;
    pub fn jl_pg_free(pg: *mut JlPg);
    pub fn jl_pg_has_nccl(pg: *mut JlPg) -> c_int;
    pub fn jl_pg_set_progress(pg: *mut JlPg, step: i64);
    pub fn jl_pg_all_reduce(
        pg: *mut JlPg,
        t: *mut C_tensor,
        op: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn jl_pg_broadcast(
        pg: *mut JlPg,
        t: *mut C_tensor,
        root: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn jl_pg_all_gather(
        pg: *mut JlPg,
        out: *mut C_tensor,
        input: *mut C_tensor,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn jl_pg_barrier(pg: *mut JlPg, err: *mut *mut c_char) -> c_int;
}
