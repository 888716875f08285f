//! End-to-end: the binaries meet through files and HTTP, as users run them.

mod annotators;
mod candidates;
mod demo_files;
mod end_to_end;
mod prelabel_reward;
mod slice;
mod thumbs_round;
