//! jielong's trainer: Llama-style decoder-only transformers on libtorch. Pretraining on
//! `format` datasets with exact resume, sampling with a KV cache, and export to Hugging Face;
//! post-training on the annotators' data: SFT (full or LoRA), DPO and reward models, all run
//! by the one training loop in [`engine`]; candidate answers for the labeler.
//!
//! - [`model`]: the decoder, its losses, LoRA, the tokenizer and sampling.
//! - [`io`]: checkpoints, the Hugging Face format, loading either, `export-hf`.
//! - [`engine`]: the training loop and what every command shares (config, device, AdamW,
//!   errors, seeded randomness).
//! - [`pretrain`]: `trainer pretrain` and `trainer bench`.
//! - [`post`]: `trainer sft`, `dpo`, `reward`, `score` and `merge-lora`.
//! - [`dist`]: several processes (torchrun, srun): the c10d process group and its checks.
//! - [`candidates`]: `trainer generate-candidates` and its labeler client.

pub mod candidates;
pub mod dist;
pub mod engine;
pub mod io;
pub mod model;
pub mod post;
pub mod pretrain;
