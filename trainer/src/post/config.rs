//! Configuration of the post-training commands (`trainer sft`, `dpo`, `reward`, `kto`): the
//! sections a pretraining config has, minus `[model]` (the architecture comes from
//! `init_from`), plus `[lora]`, `[dpo]`, `[reward]` and `[kto]`. Resolved against the starting model
//! it becomes a [`RunConfig`] and the [`PostSettings`] that a checkpoint records beside it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::engine::config::{
    CheckpointConfig, DataConfig, EvalConfig, ModelConfig, OptimConfig, RunConfig, SampleSettings,
    TrainSettings,
};
use crate::model::lora::LoraConfig;

/// Which post-training objective a run optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Sft,
    Dpo,
    Reward,
    Kto,
    Grpo,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Sft => "sft",
            Task::Dpo => "dpo",
            Task::Reward => "reward",
            Task::Kto => "kto",
            Task::Grpo => "grpo",
        }
    }
}

/// `[dpo]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpoSettings {
    /// Strength of the pull towards the reference model (the KL penalty's inverse temperature).
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// Where reference log-probabilities are cached; default: `refcache` beside `train.out`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
}

fn default_beta() -> f64 {
    0.1
}

impl Default for DpoSettings {
    fn default() -> Self {
        Self {
            beta: default_beta(),
            cache_dir: None,
        }
    }
}

/// `[kto]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KtoSettings {
    /// Strength of the pull towards the reference model, as in DPO.
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// Weight of a thumbs-up example's loss (TRL's `desirable_weight`).
    #[serde(default = "default_weight")]
    pub desirable_weight: f64,
    /// Weight of a thumbs-down example's loss (TRL's `undesirable_weight`); with unequal
    /// counts, TRL suggests weights so that `desirable_weight * n_up / (undesirable_weight *
    /// n_down)` lies in [1, 4/3].
    #[serde(default = "default_weight")]
    pub undesirable_weight: f64,
    /// Where reference log-probabilities are cached; default: `refcache` beside `train.out`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
}

fn default_weight() -> f64 {
    1.0
}

impl Default for KtoSettings {
    fn default() -> Self {
        Self {
            beta: default_beta(),
            desirable_weight: default_weight(),
            undesirable_weight: default_weight(),
            cache_dir: None,
        }
    }
}

/// `[grpo]`: online RL on prompts, answers sampled from the policy and scored by rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpoSettings {
    /// Answers sampled per prompt (G).
    #[serde(default = "default_group")]
    pub group_size: usize,
    #[serde(default = "default_new_tokens")]
    pub max_new_tokens: usize,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Weight of the KL penalty to the reference model (TRL's `beta`).
    #[serde(default = "default_grpo_beta")]
    pub beta: f64,
    /// The policy ratio is clipped to [1 - epsilon, 1 + epsilon].
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// RLOO: each answer's baseline is the mean reward of the others of its group (no
    /// division by the spread) instead of GRPO's group normalisation.
    #[serde(default)]
    pub rloo: bool,
    /// Reward rules, summed with their weights.
    #[serde(default)]
    pub rules: Vec<RewardRule>,
    /// Reward subtracted per answer token.
    #[serde(default)]
    pub length_penalty: f64,
    /// An external scorer: the program and its arguments. It reads one JSON line per answer
    /// (`{"prompt", "answer"}`) on stdin and writes one score per line (a number or
    /// `{"score": number}`) on stdout, in order; its scores times `command_weight` are added.
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default = "default_weight")]
    pub command_weight: f64,
    /// A reward model (`trainer reward` checkpoint) whose scores times `reward_model_weight`
    /// are added.
    #[serde(default)]
    pub reward_model: Option<PathBuf>,
    #[serde(default = "default_weight")]
    pub reward_model_weight: f64,
    /// Every N steps a `sample` metrics line shows a prompt's answers and rewards; 0: never.
    #[serde(default = "default_sample_every")]
    pub sample_every: u64,
    /// Optimizer steps on each generation's answers (TRL's `num_iterations`): 1 samples
    /// anew every step; k reuses a generation's answers and sampling log-probs for k steps.
    #[serde(default = "default_updates")]
    pub updates_per_generation: u64,
}

fn default_updates() -> u64 {
    1
}

fn default_sample_every() -> u64 {
    10
}

/// One rule of `[[grpo.rules]]`: `weight` when the answer's text matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardRule {
    /// `contains` (substring), `exact` (the whole answer, trimmed), `regex`, or
    /// `reference` (the answer contains its prompt's `meta.reference`; no pattern).
    pub kind: RuleKind,
    #[serde(default)]
    pub pattern: String,
    #[serde(default = "default_weight")]
    pub weight: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    Contains,
    Exact,
    Regex,
    Reference,
}

fn default_group() -> usize {
    4
}
fn default_new_tokens() -> usize {
    32
}
fn default_temperature() -> f64 {
    1.0
}
fn default_grpo_beta() -> f64 {
    0.04
}
fn default_epsilon() -> f64 {
    0.2
}

/// `[reward]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSettings {
    /// Without `data.valid`: the fraction of pairs held out for accuracy, chosen by a hash
    /// of `pair_id` (so the split does not depend on order or shard layout).
    #[serde(default = "default_valid_fraction")]
    pub valid_fraction: f64,
}

fn default_valid_fraction() -> f64 {
    0.1
}

impl Default for RewardSettings {
    fn default() -> Self {
        Self {
            valid_fraction: default_valid_fraction(),
        }
    }
}

/// What a post-training checkpoint records besides its [`RunConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostSettings {
    pub task: Task,
    /// The starting model (a checkpoint or an export-hf directory), made absolute.
    pub init_from: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpo: Option<DpoSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<RewardSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kto: Option<KtoSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpo: Option<GrpoSettings>,
}

/// Fields of `[data]` that only pretraining reads: a post-training config that sets one is
/// refused rather than silently ignored.
const PRETRAIN_ONLY_DATA_FIELDS: [&str; 1] = ["doc_start_fraction"];

/// A `trainer sft|dpo|reward|kto|grpo` configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostConfig {
    /// The starting model: a checkpoint directory (`.../step-N`) or an export-hf directory.
    pub init_from: PathBuf,
    /// `train`/`valid` are `sft` datasets for sft and `preference` datasets for dpo and
    /// reward; `seq_len` is the length of a packed row.
    pub data: DataConfig,
    pub optim: OptimConfig,
    pub train: TrainSettings,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    #[serde(default)]
    pub dpo: Option<DpoSettings>,
    #[serde(default)]
    pub reward: Option<RewardSettings>,
    #[serde(default)]
    pub kto: Option<KtoSettings>,
    #[serde(default)]
    pub grpo: Option<GrpoSettings>,
}

impl PostConfig {
    /// Reads a TOML file for `task`; errors name the file and the bad field.
    pub fn load(path: &Path, task: Task) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::parse(&text, task).with_context(|| format!("config {}", path.display()))
    }

    pub fn parse(text: &str, task: Task) -> Result<Self> {
        let config: PostConfig = toml::from_str(text)?;
        // `[data]` shares pretraining's fields, where `doc_start_fraction` has a default, so
        // the parsed value cannot say whether it was set: look in the file's own table.
        let table: toml::Table = toml::from_str(text)?;
        if let Some(field) = PRETRAIN_ONLY_DATA_FIELDS
            .iter()
            .find(|f| table.get("data").and_then(|d| d.get(**f)).is_some())
        {
            bail!(
                "data.{field} applies to `trainer pretrain` only (post-training rows are whole examples); remove it from this {} config",
                task.as_str()
            );
        }
        config.validate(task)?;
        Ok(config)
    }

    /// Checks what does not need the model: sections belong to the task, values in range.
    pub fn validate(&self, task: Task) -> Result<()> {
        if self.dpo.is_some() && task != Task::Dpo {
            bail!(
                "[dpo] applies to `trainer dpo` only; remove it from this {} config",
                task.as_str()
            );
        }
        if self.reward.is_some() && task != Task::Reward {
            bail!(
                "[reward] applies to `trainer reward` only; remove it from this {} config",
                task.as_str()
            );
        }
        if self.kto.is_some() && task != Task::Kto {
            bail!(
                "[kto] applies to `trainer kto` only; remove it from this {} config",
                task.as_str()
            );
        }
        if self.grpo.is_some() != (task == Task::Grpo) {
            bail!("`trainer grpo` needs a [grpo] section, and only it takes one");
        }
        if let Some(grpo) = &self.grpo {
            ensure!(grpo.group_size >= 2, "grpo.group_size must be >= 2");
            ensure!(grpo.max_new_tokens > 0, "grpo.max_new_tokens must be > 0");
            ensure!(grpo.temperature > 0.0, "grpo.temperature must be > 0");
            ensure!(grpo.beta >= 0.0, "grpo.beta must be >= 0");
            ensure!(grpo.epsilon > 0.0, "grpo.epsilon must be > 0");
            ensure!(
                grpo.updates_per_generation >= 1,
                "grpo.updates_per_generation must be >= 1"
            );
            for (i, rule) in grpo.rules.iter().enumerate() {
                ensure!(
                    (rule.kind == RuleKind::Reference) == rule.pattern.is_empty(),
                    "grpo.rules[{i}]: a {} rule {}",
                    format!("{:?}", rule.kind).to_lowercase(),
                    if rule.kind == RuleKind::Reference {
                        "takes no pattern (it looks for the prompt's meta.reference)"
                    } else {
                        "needs a pattern"
                    }
                );
            }
            ensure!(
                !grpo.rules.is_empty() || !grpo.command.is_empty() || grpo.reward_model.is_some(),
                "[grpo] needs a reward: [[grpo.rules]], command or reward_model"
            );
        }
        if let Some(lora) = &self.lora {
            lora.validate()?;
        }
        if let Some(kto) = &self.kto {
            ensure!(kto.beta > 0.0, "kto.beta must be > 0, got {}", kto.beta);
            for (name, w) in [
                ("desirable_weight", kto.desirable_weight),
                ("undesirable_weight", kto.undesirable_weight),
            ] {
                ensure!(w > 0.0 && w.is_finite(), "kto.{name} must be > 0, got {w}");
            }
        }
        if let Some(dpo) = &self.dpo {
            ensure!(dpo.beta > 0.0, "dpo.beta must be > 0, got {}", dpo.beta);
        }
        if let Some(reward) = &self.reward {
            ensure!(
                (0.0..1.0).contains(&reward.valid_fraction),
                "reward.valid_fraction must be in [0, 1), got {}",
                reward.valid_fraction
            );
        }
        ensure!(self.data.seq_len > 0, "data.seq_len must be > 0");
        Ok(())
    }

    /// The run configuration for a model of architecture `model`, and the settings a
    /// checkpoint records beside it.
    pub fn resolve(&self, task: Task, model: ModelConfig) -> Result<(RunConfig, PostSettings)> {
        let sample = SampleSettings {
            every: self.grpo.as_ref().map_or(0, |g| g.sample_every),
            ..SampleSettings::default()
        };
        let run = RunConfig {
            model,
            data: self.data.clone(),
            optim: self.optim.clone(),
            train: self.train.clone(),
            checkpoint: self.checkpoint.clone(),
            eval: self.eval.clone(),
            sample,
        };
        run.validate_settings()?;
        let init_from = std::path::absolute(&self.init_from)
            .with_context(|| format!("resolving init_from {}", self.init_from.display()))?;
        let post = PostSettings {
            task,
            init_from,
            lora: self.lora.clone(),
            dpo: (task == Task::Dpo).then(|| self.dpo.clone().unwrap_or_default()),
            reward: (task == Task::Reward).then(|| self.reward.clone().unwrap_or_default()),
            kto: (task == Task::Kto).then(|| self.kto.clone().unwrap_or_default()),
            grpo: self.grpo.clone(),
        };
        Ok((run, post))
    }
}
