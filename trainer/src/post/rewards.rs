//! What scores `trainer grpo`'s answers: rules on the answer's text (contains, exact, regex,
//! the prompt's reference, a length penalty), an external command speaking JSON lines, and a reward model, summed
//! with their weights.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use tch::Device;

use crate::engine::config::Precision;
use crate::model::language_model::LanguageModel;
use crate::post::config::{GrpoSettings, RuleKind};
use crate::post::data::PackedBatch;
use crate::post::reward::sequence_scores;

/// An answer to score: the prompt's and the answer's text, and the answer's tokens.
#[derive(Debug, Clone)]
pub struct Answer {
    pub prompt: String,
    pub text: String,
    pub tokens: usize,
    /// What a right answer contains, when the prompt says (a prompt file's `meta.reference`).
    pub reference: Option<String>,
}

/// The configured rules, compiled once.
#[derive(Debug)]
struct Rules {
    rules: Vec<(RuleKind, String, Option<regex::Regex>, f64)>,
    length_penalty: f64,
}

impl Rules {
    fn new(settings: &GrpoSettings) -> Result<Self> {
        let rules = settings
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let re = match r.kind {
                    RuleKind::Regex => Some(regex::Regex::new(&r.pattern).with_context(|| {
                        format!("grpo.rules[{i}]: pattern {:?} is not a regex", r.pattern)
                    })?),
                    _ => None,
                };
                Ok((r.kind, r.pattern.clone(), re, r.weight))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            rules,
            length_penalty: settings.length_penalty,
        })
    }

    fn score(&self, answer: &Answer) -> f64 {
        // `0.0 -`: without a penalty `-0.0 * n` would make the reward of no hit -0.
        let mut reward = 0.0 - self.length_penalty * answer.tokens as f64;
        for (kind, pattern, re, weight) in &self.rules {
            let text = &answer.text;
            let hit = match kind {
                RuleKind::Contains => text.contains(pattern.as_str()),
                RuleKind::Exact => text.trim() == pattern.trim(),
                RuleKind::Regex => re.as_ref().is_some_and(|re| re.is_match(text)),
                RuleKind::Reference => answer
                    .reference
                    .as_deref()
                    .is_some_and(|r| text.contains(r.trim())),
            };
            if hit {
                reward += weight;
            }
        }
        reward
    }
}

/// A reward as the `sample` lines show it, to three decimals; one that rounds to zero shows
/// as `0.000`, never `-0.000`.
pub fn shown(reward: f64) -> String {
    let text = format!("{reward:.3}");
    match text.strip_prefix('-') {
        Some(rest) if rest.bytes().all(|b| b == b'0' || b == b'.') => rest.to_string(),
        _ => text,
    }
}

/// Runs `argv` with one `{"prompt", "answer"}` JSON line per answer on stdin and reads one
/// score per answer from stdout; a protocol error names the command and the line.
pub fn command_scores(argv: &[String], answers: &[Answer]) -> Result<Vec<f64>> {
    let shown = argv.join(" ");
    let (program, args) = argv.split_first().context("grpo.command is empty")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting the reward command `{shown}`"))?;
    let mut input = String::new();
    for a in answers {
        let line = match &a.reference {
            Some(r) => serde_json::json!({"prompt": a.prompt, "answer": a.text, "reference": r}),
            None => serde_json::json!({"prompt": a.prompt, "answer": a.text}),
        };
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().context("the reward command's stdin")?;
    // Written from a thread so a command that answers while reading cannot deadlock us.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .with_context(|| format!("running the reward command `{shown}`"))?;
    let _ = writer.join();
    if !out.status.success() {
        bail!(
            "the reward command `{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(
        lines.len() == answers.len(),
        "the reward command `{shown}` wrote {} score lines for {} answers (one per input line expected)",
        lines.len(),
        answers.len()
    );
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            value
                .as_f64()
                .or_else(|| value["score"].as_f64())
                .filter(|x| x.is_finite())
                .with_context(|| {
                    format!(
                        "the reward command `{shown}`, output line {}: {line:?} is not a number or {{\"score\": number}}",
                        i + 1
                    )
                })
        })
        .collect()
}

/// Every configured source of reward.
#[derive(Debug)]
pub struct Rewards {
    rules: Rules,
    command: Vec<String>,
    command_weight: f64,
    model: Option<(LanguageModel, f64)>,
}

impl Rewards {
    /// Compiles the rules and loads the reward model (on `device`); `vocab` is the policy's,
    /// which the reward model must share (it scores the same token ids).
    pub fn new(settings: &GrpoSettings, device: Device, vocab: i64) -> Result<Self> {
        let model = match &settings.reward_model {
            Some(dir) => Some((
                load_reward_model(dir, device, vocab)?,
                settings.reward_model_weight,
            )),
            None => None,
        };
        Ok(Self {
            rules: Rules::new(settings)?,
            command: settings.command.clone(),
            command_weight: settings.command_weight,
            model,
        })
    }

    /// The reward of each answer; `packed` holds (prompt, answer) sequences in the same
    /// order, for the reward model.
    pub fn score(&self, answers: &[Answer], packed: &PackedBatch) -> Result<Vec<f64>> {
        let mut rewards: Vec<f64> = answers.iter().map(|a| self.rules.score(a)).collect();
        if !self.command.is_empty() {
            let scores = command_scores(&self.command, answers)?;
            for (r, s) in rewards.iter_mut().zip(scores) {
                *r += self.command_weight * s;
            }
        }
        if let Some((model, weight)) = &self.model {
            let scores = tch::no_grad(|| sequence_scores(model, packed))?;
            let scores = Vec::<f64>::try_from(
                scores
                    .f_to_kind(tch::Kind::Double)?
                    .f_to_device(Device::Cpu)?,
            )?;
            for (r, s) in rewards.iter_mut().zip(scores) {
                *r += weight * s;
            }
        }
        Ok(rewards)
    }
}

fn load_reward_model(dir: &Path, device: Device, vocab: i64) -> Result<LanguageModel> {
    let (model, _) = crate::io::load::load_dir(dir, device, Precision::Auto)
        .with_context(|| format!("loading grpo.reward_model {}", dir.display()))?;
    ensure!(
        model.has_score_head(),
        "grpo.reward_model {} is not a reward model (no score head): train one with `trainer reward`",
        dir.display()
    );
    ensure!(
        model.config().vocab_size == vocab,
        "grpo.reward_model {} has a vocabulary of {} tokens, the policy {}: it must score the same token ids",
        dir.display(),
        model.config().vocab_size,
        vocab
    );
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Answer {
        Answer {
            prompt: "What rolls?".into(),
            text: text.into(),
            tokens: 3,
            reference: None,
        }
    }

    /// An answer that matches no rule, without a length penalty, scores 0 and shows as
    /// `0.000` (it was -0, shown `-0.000`); so does a penalty that rounds to zero.
    #[test]
    fn a_reward_of_zero_shows_without_a_sign() -> Result<()> {
        let rules = |penalty: f64| -> Result<Rules> {
            let settings: GrpoSettings = toml::from_str(&format!(
                "length_penalty = {penalty:?}\n[[rules]]\nkind = \"contains\"\npattern = \"ball\"\n"
            ))?;
            Rules::new(&settings)
        };
        let none = rules(0.0)?.score(&answer("a cube"));
        assert!(none == 0.0 && none.is_sign_positive(), "{none:?}");
        assert_eq!(shown(none), "0.000");
        let tiny = rules(1e-4)?.score(&answer("a cube"));
        assert!(tiny < 0.0, "{tiny}");
        assert_eq!(shown(tiny), "0.000");
        assert_eq!(shown(rules(0.1)?.score(&answer("a cube"))), "-0.300");
        assert_eq!(shown(rules(0.0)?.score(&answer("a ball"))), "1.000");
        assert_eq!(shown(-0.0), "0.000");
        Ok(())
    }
}
