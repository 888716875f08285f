//! jielong's trainer: Llama-style decoder-only transformers on libtorch. Pretraining on
//! `format` datasets with exact resume, sampling with a KV cache, export to Hugging Face, and
//! candidate answers for the labeler (`candidates`, over HTTP with `labeler_client`).
//! Device selection and the runtime check behind `trainer info` live in [`device`].

pub mod bench;
pub mod candidates;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod export;
pub mod labeler_client;
pub mod lm;
pub mod model;
pub mod optim;
pub mod sample;
pub mod train;
