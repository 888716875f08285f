//! jielong's data pipeline: corpora to Arrow shards. This crate grows the readers, filters,
//! deduplication and tokenization; for now it owns `pipeline inspect`.

pub mod inspect;
