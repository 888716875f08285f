//! jielong's trainer: Llama-style decoder-only transformers on libtorch. Pretraining on
//! `format` datasets with exact resume, sampling with a KV cache, and export to Hugging Face;
//! post-training on the annotators' data: SFT (full or LoRA), DPO and reward models, all run
//! by the one training loop in [`engine`]; candidate answers for the labeler (`candidates`,
//! over HTTP with `labeler_client`).
//! Device selection and the runtime check behind `trainer info` live in [`device`].

pub mod bench;
pub mod candidates;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod dpo;
pub mod engine;
pub mod error;
pub mod export;
pub mod labeler_client;
pub mod lm;
pub mod lora;
pub mod model;
pub mod optim;
pub mod pairs;
pub mod post;
pub mod post_config;
pub mod reward;
pub mod sample;
pub mod seqdata;
pub mod sft;
pub mod train;
