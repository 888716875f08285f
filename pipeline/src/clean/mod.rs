//! `pipeline clean CONFIG`: corpora to clean, filtered, deduplicated text. [`run`] drives the
//! three stages (per-input parallel pass, dedup merge, outputs) with resume after a kill;
//! `process` is what happens to one document, `work` the per-input work files and done
//! markers between the stages, `docs_table` the per-document Parquet table and kept Parquet.

pub mod docs_table;
pub mod process;
mod run;
mod summary;
pub mod work;

pub use run::run;
pub use summary::RunSummary;
