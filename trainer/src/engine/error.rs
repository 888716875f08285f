//! Errors a user can act on, each naming what to change. Everything else travels as
//! `anyhow` with context.

use std::path::PathBuf;

use thiserror::Error;

use crate::engine::config::RunConfig;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error(
        "dataset {dataset} has vocab_size {dataset_vocab} but the model has vocab_size {model_vocab}: set model.vocab_size = {dataset_vocab} (or 0 to take the dataset's)"
    )]
    VocabMismatch {
        dataset: PathBuf,
        dataset_vocab: i64,
        model_vocab: i64,
    },

    #[error(
        "checkpoint {checkpoint} was trained with another model config ({fields}); resume with the config it was made with or start a fresh run in another train.out"
    )]
    ConfigMismatch { checkpoint: PathBuf, fields: String },

    #[error(
        "non-finite training step {step} (loss {loss}, grad norm {grad_norm}); last good checkpoint: {}; lower optim.lr or raise optim.warmup_steps and resume from it, or set train.on_nonfinite = \"skip\"",
        last_checkpoint.as_ref().map_or("none yet".to_string(), |p| p.display().to_string())
    )]
    NonFinite {
        step: u64,
        loss: f64,
        grad_norm: f64,
        last_checkpoint: Option<PathBuf>,
    },

    #[error(
        "out of GPU memory at step {step} (micro_batch_size {micro_batch_size}, seq_len {seq_len}): lower train.micro_batch_size and raise train.grad_accum to keep the batch, or lower data.seq_len ({message})"
    )]
    OutOfMemory {
        step: u64,
        micro_batch_size: i64,
        seq_len: i64,
        message: String,
    },
}

/// Turns a libtorch error into a [`TrainError::OutOfMemory`] when it is one; other errors
/// keep libtorch's message with the step added.
pub fn explain_torch_error(err: tch::TchError, config: &RunConfig, step: u64) -> anyhow::Error {
    let message = torch_message(&err);
    if message.contains("out of memory") {
        TrainError::OutOfMemory {
            step,
            micro_batch_size: config.train.micro_batch_size,
            seq_len: config.data.seq_len,
            message,
        }
        .into()
    } else {
        anyhow::anyhow!("libtorch failed at training step {step}: {message}")
    }
}

/// libtorch's message without the C++ stack it appends ("Exception raised from ...").
pub fn torch_message(err: &tch::TchError) -> String {
    err.to_string()
        .lines()
        .take_while(|l| !l.trim_start().starts_with("Exception raised from"))
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}
