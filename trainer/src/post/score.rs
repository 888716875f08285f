//! `trainer score` and what `trainer prelabel` scores with: (prompt, answer) rows judged by a
//! reward model (its score at the answer's last token) or, for a checkpoint without a score
//! head, by the mean log-probability per answer token given the prompt (how likely the
//! policy finds the answer: what KTO and DPO move).

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result, ensure};
use format::{ChatTemplate, Message, Role};
use serde::Deserialize;
use serde_json::json;
use tch::{Device, Kind};

use crate::engine::config::Precision;
use crate::io::checkpoint::TOKENIZER_FILE;
use crate::model::language_model::LanguageModel;
use crate::model::tokenizer::TextTokenizer;
use crate::post::data::{self, Sequence};

/// A reward model or a plain checkpoint, with the chat template of its tokenizer.
#[derive(Debug)]
pub struct Scorer {
    model: LanguageModel,
    tokenizer: TextTokenizer,
    template: ChatTemplate,
}

impl Scorer {
    /// Loads a checkpoint or export-hf directory and its tokenizer.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let (model, ids) = crate::io::load::load_dir(dir, device, Precision::Auto)
            .with_context(|| format!("loading {}", dir.display()))?;
        let path = dir.join(TOKENIZER_FILE);
        let tokenizer = TextTokenizer::from_file(&path)?;
        // Prompts start with BOS only if the model was trained with it (its directory says).
        let template = tokenizer
            .chat_template_for_model(ids.bos)
            .with_context(|| format!("{} cannot render chats", path.display()))?;
        Ok(Self {
            model,
            tokenizer,
            template,
        })
    }

    /// True when scores come from a score head, false for mean log-probs.
    pub fn is_reward_model(&self) -> bool {
        self.model.has_score_head()
    }

    /// What the scores are, for summaries.
    pub fn scoring(&self) -> &'static str {
        if self.is_reward_model() {
            "reward model"
        } else {
            "mean log-prob per answer token"
        }
    }

    /// The score of `answer` to `prompt`.
    pub fn score(&self, prompt: &[Message], answer: &str) -> Result<f64> {
        let prompt = self.template.render_prompt(prompt, &self.tokenizer)?;
        let answer = self.template.render_completion(answer, &self.tokenizer)?;
        let seq = Sequence::prompt_answer(&prompt, &answer);
        let max = self.model.config().max_position_embeddings as usize;
        ensure!(
            seq.ids.len() <= max,
            "{} tokens exceed the model's context of {max}",
            seq.ids.len()
        );
        let batch = data::pack(&[&seq], seq.ids.len(), self.model.device())?;
        tch::no_grad(|| -> Result<f64> {
            if self.is_reward_model() {
                let s = crate::post::reward::sequence_scores(&self.model, &batch)?;
                return Ok(f64::try_from(s.f_select(0, 0)?)?);
            }
            let logps = crate::post::grpo::token_logps(&self.model, &batch, 1.0, None)?;
            let mask = batch.label_target.f_to_kind(Kind::Float)?;
            let total = f64::try_from(logps.f_mul(&mask)?.f_sum(Kind::Double)?)?;
            let count = f64::try_from(mask.f_sum(Kind::Double)?)?;
            Ok(total / count.max(1.0))
        })
    }
}

/// A prompt: plain text (one user turn) or messages.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Prompt {
    Text(String),
    Messages(Vec<Message>),
}

/// One `trainer score` input line.
#[derive(Debug, Deserialize)]
struct ScoreRow {
    id: serde_json::Value,
    prompt: Prompt,
    answer: String,
}

/// What `trainer score` did.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScoreReport {
    /// `reward model` or `mean log-prob per answer token`.
    pub scoring: &'static str,
    pub scored: usize,
    /// Lines that could not be read or rendered (each reported with its line number).
    pub failed: usize,
}

impl ScoreReport {
    /// What `trainer score` prints (on standard error: standard output may hold the scores).
    pub fn render(&self) -> String {
        format!(
            "scored {} rows by {}, {} failed\n",
            self.scored, self.scoring, self.failed
        )
    }
}

/// [`score`] into the file `output`, or onto standard output without one.
pub fn score_to(
    model_dir: &Path,
    input: &Path,
    output: Option<&Path>,
    device: Device,
) -> Result<ScoreReport> {
    let Some(path) = output else {
        return score(model_dir, input, &mut std::io::stdout(), device);
    };
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let report = score(model_dir, input, &mut out, device)?;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(report)
}

/// Scores every `{"id", "prompt", "answer"}` line of `input` with the model in `model_dir`
/// (a reward model, or any checkpoint: mean log-prob per answer token), writing
/// `{"id", "score"}` lines to `out`. A bad line is reported and counted, and the others are
/// still scored.
pub fn score(
    model_dir: &Path,
    input: &Path,
    out: &mut impl Write,
    device: Device,
) -> Result<ScoreReport> {
    let scorer = Scorer::load(model_dir, device)?;
    let file =
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let mut report = ScoreReport {
        scoring: scorer.scoring(),
        ..ScoreReport::default()
    };
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", input.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let scored = (|| -> Result<(serde_json::Value, f64)> {
            let row: ScoreRow = serde_json::from_str(&line)?;
            let messages = match row.prompt {
                Prompt::Text(text) => vec![Message::new(Role::User, text)],
                Prompt::Messages(messages) => messages,
            };
            Ok((row.id, scorer.score(&messages, &row.answer)?))
        })();
        match scored {
            Ok((id, value)) => {
                writeln!(out, "{}", json!({"id": id, "score": value}))?;
                report.scored += 1;
            }
            Err(err) => {
                tracing::error!("{}:{}: {err:#}", input.display(), number + 1);
                report.failed += 1;
            }
        }
    }
    Ok(report)
}
