//! jielong's data pipeline: web corpora to clean, filtered, deduplicated text (`clean`), and
//! then to tokenized Arrow datasets. Modules follow the stages: readers (and HTML extraction),
//! normalize, langid, filters, pii, dedup; `run` joins them.

pub mod config;
pub mod dedup;
pub mod docs_table;
pub mod document;
pub mod extract;
pub mod filters;
pub mod inspect;
pub mod langid;
pub mod normalize;
pub mod pii;
pub mod process;
pub mod readers;
pub mod report;
pub mod run;
pub mod tokenize;
pub mod work;
