//! End-to-end: the binaries meet through files and HTTP, as users run them.

mod candidates;
mod end_to_end;
mod slice;
