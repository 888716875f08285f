//! `pipeline clean CONFIG`: corpora to clean, filtered, deduplicated text. [`run`] drives the
//! three stages (per-input parallel pass, dedup merge, outputs) with resume after a kill;
//! `process` is what happens to one document, `work` the per-input work files and done
//! markers between the stages, `tasks` one task of a split run and remote outputs, `docs_table` the per-document Parquet table and kept Parquet.

mod at_once;
mod dedup_checks;
mod dedup_keys;
mod dedup_packs;
mod dedup_remote;
mod dedup_sections;
mod dedup_tasks;
pub mod docs_table;
mod markers;
mod outputs;
pub mod process;
mod run;
mod stage_run;
mod stages;
mod summary;
mod tasks;
pub mod work;

pub(crate) use markers::first_difference;
pub use stage_run::run_stage;
pub use stages::{Stage, dedups, stages_of};
pub use summary::RunSummary;
pub use tasks::{finish, run, run_task};
