//! The model and what runs it: the Llama-style decoder's layers, its losses, LoRA adapters,
//! the [`language_model::LanguageModel`] that owns the weights, the tokenizer for text in and
//! out, sampling, and the byte-level vocabulary's UTF-8 mask that keeps sampled text valid.

pub mod language_model;
pub mod llama;
pub mod lora;
pub mod loss;
pub mod sample;
pub mod tokenizer;
pub mod utf8;
