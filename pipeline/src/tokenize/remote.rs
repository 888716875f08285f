//! `pipeline tokenize` with inputs, tokenizer or output dataset in object storage: remote
//! inputs are fetched a few ahead of the one being encoded (`pretrain::tokenize`), a remote
//! dataset is written in a scratch directory, then uploaded with every `manifest.json` last,
//! so a reader that finds a manifest finds all its shards. With `[tokenize.train]` and an
//! `s3://` tokenizer, the tokenizer is trained on the inputs and uploaded there before
//! encoding.

use anyhow::{Result, bail};

use super::pretrain::{TokenizeOptions, TokenizeSummary, tokenize};
use super::train::train_tokenizer;
use crate::readers::InputConfig;
use crate::storage;

/// `tokenize`, for local or `s3://` inputs, tokenizer and output.
pub fn tokenize_anywhere(
    input: &InputConfig,
    options: &TokenizeOptions,
    show_progress: bool,
) -> Result<TokenizeSummary> {
    let remote_inputs = input.paths.iter().any(|p| storage::is_remote(p));
    let remote_tokenizer = storage::is_remote_path(&options.tokenizer);
    let remote_output = storage::is_remote_path(&options.output);
    if !(remote_inputs || remote_tokenizer || remote_output) {
        return tokenize(input, options, show_progress);
    }
    let manifest = options.output.join("train/manifest.json");
    if remote_output && !options.overwrite && storage::exists(&manifest)? {
        bail!(
            "{} exists: set tokenize.overwrite = true to replace the dataset",
            manifest.display()
        );
    }
    let scratch = storage::scratch_dir(&format!(
        "tokenize#{}#{}",
        options.output.display(),
        input.paths.join(",")
    ));
    let mut local = options.clone();
    if remote_tokenizer {
        if let Some(train) = &options.train {
            // Trained on the inputs and uploaded, then fetched like a given one.
            train_tokenizer(&train.config(input, &options.tokenizer), show_progress)?;
            local.train = None;
        }
        local.tokenizer = storage::fetch_input(&options.tokenizer, &scratch.join("tokenizer"))?;
    }
    if remote_output {
        local.output = scratch.join("out");
    }
    let summary = tokenize(input, &local, show_progress)?;
    if remote_output {
        storage::upload_dir(
            &local.output,
            &options.output.to_string_lossy(),
            &[],
            &["manifest.json"],
        )?;
    }
    std::fs::remove_dir_all(&scratch).ok();
    Ok(summary)
}
