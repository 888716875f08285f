//! Sampling: temperature, top-k and top-p (nucleus) filtering over the next-token
//! distribution, with every random draw derived from (seed, position) so a generation is
//! reproducible. Generation runs with a KV cache (linear in length) or, for checking it,
//! by recomputing the whole prefix at each step. With a byte-level tokenizer, each step
//! masks the tokens that would make the text invalid UTF-8 (see [`crate::model::utf8`]).

use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::engine::seed::mix;
use crate::model::language_model::LanguageModel;
use crate::model::tokenizer::TextTokenizer;
use crate::model::utf8::{ByteVocab, Utf8State};

/// How to pick each next token.
#[derive(Debug, Clone, Serialize)]
pub struct SamplingParams {
    /// 0: greedy (argmax).
    pub temperature: f64,
    /// Keep the k most likely tokens; 0: all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose mass reaches p; 1: all.
    pub top_p: f64,
    pub max_tokens: usize,
    pub seed: u64,
    /// Stop after producing this id (normally EOS).
    pub stop_token: Option<u32>,
}

impl SamplingParams {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.temperature >= 0.0 && self.temperature.is_finite(),
            "temperature must be >= 0"
        );
        ensure!(
            self.top_p > 0.0 && self.top_p <= 1.0,
            "top_p must be in (0, 1], got {}",
            self.top_p
        );
        Ok(())
    }
}

/// Uniform draw in [0, 1) for the token at `position` of a generation seeded with `seed`.
fn uniform(seed: u64, position: u64) -> f64 {
    (mix(&[seed, position]) >> 11) as f64 / (1u64 << 53) as f64
}

/// Picks a token from `logits` (one vocabulary row) with `params`, using draw `u`.
pub fn pick_token(logits: &[f32], params: &SamplingParams, u: f64) -> Result<u32> {
    ensure!(!logits.is_empty(), "empty logits");
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &l)| {
                if l > best.1 { (i, l) } else { best }
            })
            .0
    };
    if params.temperature == 0.0 {
        return Ok(argmax() as u32);
    }
    // Most likely first; ties by id so the order is total and reproducible.
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    // Masked (-inf) ids sort last and are never drawn, nor counted by top-k.
    let unmasked = order
        .iter()
        .take_while(|&&i| logits[i] != f32::NEG_INFINITY)
        .count();
    if unmasked > 0 {
        order.truncate(unmasked);
    }
    if params.top_k > 0 {
        order.truncate(params.top_k);
    }
    let max = f64::from(logits[order[0]]);
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| ((f64::from(logits[i]) - max) / params.temperature).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    ensure!(total.is_finite() && total > 0.0, "logits are not finite");
    probs.iter_mut().for_each(|p| *p /= total);
    let mut keep = probs.len();
    if params.top_p < 1.0 {
        let mut mass = 0.0;
        for (i, p) in probs.iter().enumerate() {
            mass += p;
            if mass >= params.top_p {
                keep = i + 1;
                break;
            }
        }
    }
    let kept: f64 = probs[..keep].iter().sum();
    let target = u * kept;
    let mut acc = 0.0;
    for (i, p) in probs[..keep].iter().enumerate() {
        acc += p;
        if target < acc {
            return Ok(order[i] as u32);
        }
    }
    Ok(order[keep - 1] as u32)
}

/// The ids a generation produced after the prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Generation {
    pub tokens: Vec<u32>,
    /// True when generation ended on the stop token (which is included in `tokens`).
    pub stopped: bool,
}

/// Last-position logits of `logits: [1, seq, vocab]` as fp32 on the host.
fn last_row(logits: &Tensor) -> Result<Vec<f32>> {
    let (_, t, _) = logits.size3()?;
    let row = logits
        .f_select(1, t - 1)?
        .f_squeeze_dim(0)?
        .f_to_kind(Kind::Float)?
        .f_to_device(tch::Device::Cpu)?;
    Ok(Vec::<f32>::try_from(&row)?)
}

/// Continues `prompt` with up to `params.max_tokens` tokens (fewer at the stop token or at
/// the model's context length). `use_cache` false recomputes the prefix at every step.
/// Any token may come: see [`generate_text`] for output that must decode to valid UTF-8.
pub fn generate(
    model: &LanguageModel,
    prompt: &[u32],
    params: &SamplingParams,
    use_cache: bool,
) -> Result<Generation> {
    generate_text(model, prompt, params, use_cache, None)
}

/// [`generate`], where with `byte_vocab` (a byte-level tokenizer's) every step masks the
/// tokens whose bytes cannot continue the UTF-8 text generated so far, which starts between
/// characters. The tokens may still end inside a character (at the stop token or the
/// budget): [`TextTokenizer::decode`] drops that unfinished character.
pub fn generate_text(
    model: &LanguageModel,
    prompt: &[u32],
    params: &SamplingParams,
    use_cache: bool,
    byte_vocab: Option<&ByteVocab>,
) -> Result<Generation> {
    params.validate()?;
    ensure!(!prompt.is_empty(), "the prompt encodes to no tokens");
    let max_len = model.config().max_position_embeddings as usize;
    ensure!(
        prompt.len() < max_len,
        "the prompt has {} tokens; the model's context is {max_len}",
        prompt.len()
    );
    let vocab = model.config().vocab_size;
    if let Some(&bad) = prompt.iter().find(|&&t| i64::from(t) >= vocab) {
        anyhow::bail!("prompt token {bad} is outside the model's vocabulary of {vocab}");
    }
    let budget = params.max_tokens.min(max_len - prompt.len());
    let mut ids: Vec<i64> = prompt.iter().map(|&t| i64::from(t)).collect();
    let mut out = Generation {
        tokens: Vec::new(),
        stopped: false,
    };
    tch::no_grad(|| -> Result<()> {
        let mut cache = if use_cache {
            Some(model.new_cache(1, (prompt.len() + budget) as i64)?)
        } else {
            None
        };
        let as_batch =
            |ids: &[i64]| -> Result<Tensor> { Ok(Tensor::f_from_slice(ids)?.f_unsqueeze(0)?) };
        let mut logits = model.forward_last(&as_batch(&ids)?, 0, cache.as_mut())?;
        let mut state = Utf8State::Between;
        for i in 0..budget {
            let mut row = last_row(&logits)?;
            if let Some(vocab) = byte_vocab {
                vocab.mask(state, &mut row);
            }
            let token = pick_token(&row, params, uniform(params.seed, i as u64))?;
            if let Some(vocab) = byte_vocab {
                state = vocab.advance(state, token);
            }
            out.tokens.push(token);
            ids.push(i64::from(token));
            if params.stop_token == Some(token) {
                out.stopped = true;
                break;
            }
            if i + 1 == budget {
                break;
            }
            logits = match cache.as_mut() {
                Some(cache) => {
                    let start = cache.len();
                    model.forward_last(&as_batch(&ids[ids.len() - 1..])?, start, Some(cache))?
                }
                None => model.forward_last(&as_batch(&ids)?, 0, None)?,
            };
        }
        Ok(())
    })
    .context("generating")?;
    Ok(out)
}

/// What `trainer generate` prints with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct TextGeneration {
    pub prompt_ids: Vec<u32>,
    pub tokens: Vec<u32>,
    pub stopped: bool,
    pub text: String,
}

/// Loads a checkpoint or a Hugging Face export from `dir` (see [`crate::io::load::load_dir`]) and continues
/// `prompt`, after the model's BOS id when it has one (as every training document starts;
/// once, also when the prompt starts with `<|bos|>`); generation stops at the model's EOS id.
pub fn generate_from_dir(
    dir: &Path,
    prompt: &str,
    mut params: SamplingParams,
    use_cache: bool,
    device: tch::Device,
    precision: crate::engine::config::Precision,
) -> Result<TextGeneration> {
    let (model, ids) = crate::io::load::load_dir(dir, device, precision)?;
    let eos = ids.eos;
    let tokenizer = TextTokenizer::from_file(&dir.join(crate::io::checkpoint::TOKENIZER_FILE))?;
    let mut prompt_ids = tokenizer.encode_prompt(prompt, ids.bos)?;
    if prompt_ids.is_empty() {
        // Without BOS an empty prompt starts a fresh document as after an EOS in the
        // training stream.
        prompt_ids = eos.into_iter().collect();
    }
    params.stop_token = params.stop_token.or(eos);
    let out = generate_text(
        &model,
        &prompt_ids,
        &params,
        use_cache,
        tokenizer.byte_vocab(),
    )?;
    let text = tokenizer.decode(&out.tokens)?;
    Ok(TextGeneration {
        prompt_ids,
        tokens: out.tokens,
        stopped: out.stopped,
        text,
    })
}
