//! Training on several processes: torch.distributed's C++ core (c10d) from libtorch,
//! reached through the small C++ shim in `trainer/csrc`. A process learns its place from
//! the environment ([`World`]: torchrun's or Slurm's variables) and joins a
//! [`ProcessGroup`] (Gloo for CPU tensors, NCCL for CUDA ones) whose collectives the
//! engine's data parallelism uses; [`consistency`] refuses ranks started with different
//! configs or datasets.

pub mod consistency;
mod ffi;
pub mod group;
pub mod world;

pub use group::{DistError, ProcessGroup, ReduceOp};
pub use world::World;
