//! jielong's data pipeline: web corpora to clean, filtered, deduplicated text (`clean`), and
//! then to tokenized Arrow datasets. Modules follow the stages: readers (and HTML extraction),
//! normalize, langid, filters, pii, dedup; `clean` joins them.

pub mod clean;
pub mod config;
pub mod dedup;
pub mod document;
pub mod extract;
pub mod extract_command;
pub mod filters;
pub mod inspect;
pub mod langid;
pub mod launch;
pub mod normalize;
pub mod pii;
pub mod readers;
pub mod report;
pub mod shard;
pub mod status;
pub mod storage;
pub mod task_state;
#[cfg(test)]
mod test_rng;
pub mod thread_cpu;
pub mod tokenize;
