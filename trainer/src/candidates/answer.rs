//! Answering one prompt k times (k = 1 for a rating project): the sampling settings, the model's provenance (a name and
//! an id that changes whenever its weights do), and the [`Answerer`] that samples with seeds
//! derived from (seed, prompt, attempt) until k *different* answers exist.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use format::ChatTemplate;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::candidates::SOURCE_NAME;
use crate::candidates::labeler_client::{Candidate, ComparisonItem};
use crate::candidates::prompts::SourcePrompt;
use crate::engine::config::Precision;
use crate::engine::seed::mix;
use crate::io::checkpoint;
use crate::io::load::load_dir;
use crate::model::language_model::LanguageModel;
use crate::model::lora;
use crate::model::sample::{SamplingParams, generate_text};
use crate::model::tokenizer::TextTokenizer;

/// How the answers are sampled.
#[derive(Debug, Clone)]
pub struct CandidateSettings {
    /// Different answers per prompt.
    pub k: usize,
    pub max_tokens: usize,
    pub temperature: f64,
    pub top_k: usize,
    pub top_p: f64,
    /// Base seed; each sample's seed is derived from (seed, prompt key, attempt).
    pub seed: u64,
    /// Samples tried per prompt before giving up on finding k different answers.
    pub max_attempts: usize,
}

impl CandidateSettings {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (1..=16).contains(&self.k),
            "--k {} must be between 1 and 16 (1 answer for a rating project, 2 or more for a comparison; the labeler takes at most 16)",
            self.k
        );
        ensure!(
            self.temperature > 0.0 || self.k == 1,
            "--temperature {} samples one answer only (greedy); k different answers need a temperature above 0",
            self.temperature
        );
        ensure!(
            self.max_attempts >= self.k,
            "--max-attempts {} is below --k {}",
            self.max_attempts,
            self.k
        );
        ensure!(self.max_tokens > 0, "--max-tokens must be at least 1");
        self.params(0, None).validate()
    }

    fn params(&self, seed: u64, stop_token: Option<u32>) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            max_tokens: self.max_tokens,
            seed,
            stop_token,
        }
    }

    /// The `sampling` provenance of one candidate.
    fn provenance(&self, seed: u64) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("temperature".into(), json!(self.temperature));
        m.insert("top_k".into(), json!(self.top_k));
        m.insert("top_p".into(), json!(self.top_p));
        m.insert("max_tokens".into(), json!(self.max_tokens));
        m.insert("seed".into(), json!(seed));
        m.insert("stop".into(), json!("<|end|>"));
        m
    }
}

/// Which model answered: a name and an id that changes whenever the weights do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub model: String,
    /// `<run>/step-<N>/<first 12 hex of sha256(model.safetensors)>` for a checkpoint,
    /// `<dir>/<hash>` for a Hugging Face export.
    pub checkpoint: String,
}

/// Names and hashes the model in `dir`; `model_name` overrides the name (the run's).
pub fn provenance(dir: &Path, model_name: Option<&str>) -> Result<Provenance> {
    let abs = dir
        .canonicalize()
        .with_context(|| format!("opening model directory {}", dir.display()))?;
    let own = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    };
    let state_path = abs.join(checkpoint::STATE_FILE);
    let (run, step) = if state_path.exists() {
        let state: Value = serde_json::from_slice(
            &std::fs::read(&state_path)
                .with_context(|| format!("reading {}", state_path.display()))?,
        )
        .with_context(|| format!("parsing {}", state_path.display()))?;
        // runs/NAME/checkpoints/step-N: the run is NAME.
        let run = match abs.parent() {
            Some(parent) if parent.file_name().is_some_and(|n| n == "checkpoints") => {
                parent.parent().map_or_else(|| own(&abs), own)
            }
            _ => own(&abs),
        };
        (run, state["step"].as_u64())
    } else {
        (own(&abs), None)
    };
    // A LoRA checkpoint's own weights are its adapters (its base is named in its config).
    let adapter = abs.join(lora::ADAPTER_FILE);
    let weights = if adapter.exists() {
        adapter
    } else {
        abs.join(checkpoint::MODEL_FILE)
    };
    let hash = file_sha256(&weights)?;
    let run = clean_name(&run);
    let checkpoint = match step {
        Some(step) => format!("{run}/step-{step}/{}", &hash[..12]),
        None => format!("{run}/{}", &hash[..12]),
    };
    Ok(Provenance {
        model: model_name.map_or(run, clean_name),
        checkpoint,
    })
}

/// Letters, digits, `_.-` (others become `-`), at most 64 characters: safe inside item ids.
fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "model".into()
    } else {
        cleaned
    }
}

fn file_sha256(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("opening {} to hash it", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A model ready to answer prompts in the chat format.
#[derive(Debug)]
pub struct Answerer {
    model: LanguageModel,
    tokenizer: TextTokenizer,
    template: ChatTemplate,
    end_of_turn: u32,
    /// Any of these ends an answer (a base model may say EOS instead of `<|end|>`).
    specials: HashSet<u32>,
    settings: CandidateSettings,
    provenance: Provenance,
}

/// The k answers to one prompt, as a comparison item.
#[derive(Debug, Clone)]
pub struct Answered {
    pub item: ComparisonItem,
    /// Tokens sampled, including samples thrown away as duplicates.
    pub tokens: usize,
    pub samples: usize,
}

/// Why a prompt got no item.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PromptFailure {
    #[error("only {found} different non-empty answer(s) in {samples} samples; need {k}")]
    TooFewDistinct {
        found: usize,
        samples: usize,
        k: usize,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Answerer {
    /// Loads the model and tokenizer of `dir` (checkpoint or Hugging Face export).
    pub fn load(
        dir: &Path,
        device: tch::Device,
        settings: CandidateSettings,
        provenance: Provenance,
    ) -> Result<Self> {
        settings.validate()?;
        let (model, ids) = load_dir(dir, device, Precision::Auto)
            .with_context(|| format!("loading {}", dir.display()))?;
        let tokenizer_path = dir.join(checkpoint::TOKENIZER_FILE);
        let tokenizer = TextTokenizer::from_file(&tokenizer_path)?;
        // An answer is cut at any special token the tokenizer has.
        let specials = tokenizer.special_ids().into_values().collect();
        // Prompts start with BOS only if the model was trained with it (its directory says).
        let template = tokenizer
            .chat_template_for_model(ids.bos)
            .with_context(|| format!("{} cannot render chats", tokenizer_path.display()))?;
        Ok(Self {
            end_of_turn: template.end_of_turn(),
            specials,
            model,
            tokenizer,
            template,
            settings,
            provenance,
        })
    }

    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// Samples until k different answers exist (or `max_attempts` samples were drawn).
    pub fn answer(&self, prompt: &SourcePrompt) -> Result<Answered, PromptFailure> {
        let ids = self
            .template
            .render_prompt(&prompt.messages, &self.tokenizer)
            .map_err(|e| PromptFailure::Invalid(e.to_string()))?;
        let key_hash = mix(&[u64::from_le_bytes(
            Sha256::digest(prompt.key.as_bytes())[..8]
                .try_into()
                .unwrap_or_default(),
        )]);
        let s = &self.settings;
        let mut candidates: Vec<Candidate> = Vec::with_capacity(s.k);
        let mut finish = Vec::with_capacity(s.k);
        let mut tokens = 0;
        let mut samples = 0;
        for attempt in 0..s.max_attempts as u64 {
            if candidates.len() == s.k {
                break;
            }
            let seed = mix(&[s.seed, key_hash, attempt]);
            samples += 1;
            let out = generate_text(
                &self.model,
                &ids,
                &s.params(seed, Some(self.end_of_turn)),
                true,
                self.tokenizer.byte_vocab(),
            )
            .map_err(|e| PromptFailure::Invalid(format!("{e:#}")))?;
            tokens += out.tokens.len();
            let cut = out
                .tokens
                .iter()
                .position(|t| self.specials.contains(t))
                .unwrap_or(out.tokens.len());
            let reason = match out.tokens.get(cut) {
                Some(&t) if t == self.end_of_turn => "end_of_turn",
                Some(_) => "special_token",
                None => "length",
            };
            let text = self
                .tokenizer
                .decode(&out.tokens[..cut])
                .map_err(|e| PromptFailure::Invalid(format!("{e:#}")))?;
            // The labeler refuses empty text and NUL; a repeat is no comparison.
            if text.trim().is_empty()
                || text.contains('\0')
                || candidates.iter().any(|c| c.content.trim() == text.trim())
            {
                continue;
            }
            finish.push(reason);
            candidates.push(Candidate {
                content: text,
                model: self.provenance.model.clone(),
                checkpoint: self.provenance.checkpoint.clone(),
                sampling: s.provenance(seed),
            });
        }
        if candidates.len() < s.k {
            return Err(PromptFailure::TooFewDistinct {
                found: candidates.len(),
                samples,
                k: s.k,
            });
        }
        let mut meta = Map::new();
        meta.insert("source".into(), prompt.source.clone());
        meta.insert("finish_reasons".into(), json!(finish));
        meta.insert("generated_by".into(), json!(SOURCE_NAME));
        Ok(Answered {
            item: ComparisonItem {
                id: prompt.item_id(&self.provenance.checkpoint),
                prompt: prompt.messages.clone(),
                candidates,
                meta,
            },
            tokens,
            samples,
        })
    }
}
