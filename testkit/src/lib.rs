//! Test fixtures shared by the jielong crates, written once: the workspace's binaries and how
//! to run them (`process`), a `labeler serve` child process (`labeler`), a fresh database per
//! test on the project's PostgreSQL server (`db`, feature `db`), the project venv's Python
//! (`python`), and a byte-level BPE tokenizer with jielong's special tokens (`tokenizer`,
//! feature `tokenizer`).
//!
//! Fixtures panic with a message instead of returning errors: they run only inside tests.

#![allow(clippy::unwrap_used)]

#[cfg(feature = "db")]
pub mod db;
pub mod labeler;
pub mod process;
pub mod python;
#[cfg(feature = "tokenizer")]
pub mod tokenizer;
