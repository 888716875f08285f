//! AdamW over named tensors, written here because tch's optimizer cannot save its state:
//! the moments live in a map keyed by parameter name, so they go into a checkpoint and come
//! back bit for bit. Weight decay applies to matrices only (embeddings and projections), not
//! to norm gains. Also: the learning-rate schedules and global-norm gradient clipping.
//!
//! tch 0.24 exposes neither `_fused_adamw_` nor the `_foreach_` kernels, so the update is a
//! handful of in-place ops per tensor on every device.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use tch::{Kind, TchError, Tensor};

use crate::engine::config::{OptimConfig, Schedule};

/// Learning rate at optimizer step `step` (1-based) of `total`.
pub fn learning_rate(config: &OptimConfig, step: u64, total: u64) -> f64 {
    let (lr, min_lr) = (config.lr, config.min_lr);
    let warmup = config.warmup_steps;
    if warmup > 0 && step <= warmup {
        return lr * step as f64 / warmup as f64;
    }
    let after = (step - warmup) as f64;
    let span = total.saturating_sub(warmup).max(1) as f64;
    match config.schedule {
        Schedule::Constant => lr,
        Schedule::Cosine => {
            let progress = (after / span).clamp(0.0, 1.0);
            min_lr + 0.5 * (lr - min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
        }
        Schedule::Wsd => {
            let decay = (config.decay_fraction * total as f64).round().max(1.0);
            let decay_start = total as f64 - decay;
            if (step as f64) <= decay_start {
                lr
            } else {
                let progress = ((step as f64 - decay_start) / decay).clamp(0.0, 1.0);
                lr + (min_lr - lr) * progress
            }
        }
    }
}

/// Moments of one parameter.
#[derive(Debug)]
struct Moments {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// AdamW with decoupled weight decay.
#[derive(Debug)]
pub struct AdamW {
    params: Vec<(String, Tensor)>,
    state: BTreeMap<String, Moments>,
    /// Updates applied so far (bias correction uses it).
    steps: u64,
    /// Sharded (ZeRO-1): only the parameters with moments here are updated by this rank.
    sharded: bool,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    /// `params` in a fixed order (sorted by name), each a trainable leaf tensor.
    pub fn new(params: Vec<(String, Tensor)>, config: &OptimConfig) -> Result<Self> {
        let state = params
            .iter()
            .map(|(name, p)| {
                Ok((
                    name.clone(),
                    Moments {
                        exp_avg: p.f_zeros_like()?,
                        exp_avg_sq: p.f_zeros_like()?,
                    },
                ))
            })
            .collect::<Result<_, TchError>>()?;
        Ok(Self {
            params,
            state,
            steps: 0,
            sharded: false,
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.eps,
            weight_decay: config.weight_decay,
        })
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// Sets every gradient to zero (allocated gradients are kept).
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// The global L2 norm of all gradients: the norm of the per-tensor norms (one host sync).
    pub fn grad_norm(&self) -> Result<f64> {
        let norms = self
            .params
            .iter()
            .filter_map(|(_, p)| {
                let g = p.grad();
                g.defined().then(|| g.f_norm()?.f_to_kind(Kind::Float))
            })
            .collect::<Result<Vec<_>, TchError>>()?;
        if norms.is_empty() {
            return Ok(0.0);
        }
        Ok(f64::try_from(Tensor::f_stack(&norms, 0)?.f_norm()?)?)
    }

    /// Scales gradients so their global norm is at most `max_norm` (given the norm).
    pub fn clip_grads(&mut self, norm: f64, max_norm: f64) -> Result<()> {
        if max_norm <= 0.0 || norm <= max_norm {
            return Ok(());
        }
        let scale = max_norm / (norm + 1e-6);
        tch::no_grad(|| -> Result<()> {
            for (_, p) in &self.params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.f_mul_scalar_(scale)?;
                }
            }
            Ok(())
        })
    }

    /// One AdamW update at learning rate `lr`.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let bias1 = 1.0 - b1.powi(t);
        let bias2_sqrt = (1.0 - b2.powi(t)).sqrt();
        let step_size = lr / bias1;
        tch::no_grad(|| -> Result<()> {
            for (name, p) in &mut self.params {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let Some(m) = self.state.get_mut(name.as_str()) else {
                    if self.sharded {
                        continue;
                    }
                    bail!("no optimizer state for {name}");
                };
                if p.dim() >= 2 && self.weight_decay > 0.0 {
                    let _ = p.f_mul_scalar_(1.0 - lr * self.weight_decay)?;
                }
                let _ = m.exp_avg.f_lerp_(&grad, 1.0 - b1)?;
                let _ = m.exp_avg_sq.f_mul_scalar_(b2)?;
                let _ = m
                    .exp_avg_sq
                    .f_addcmul_(&grad.f_mul_scalar(1.0 - b2)?, &grad)?;
                // p -= step_size * m / (sqrt(v) / sqrt(bias2) + eps), with one temporary:
                // the denominator is divided by -step_size so addcdiv_ applies the update.
                let mut denom = m.exp_avg_sq.f_sqrt()?;
                let _ = denom.f_div_scalar_(bias2_sqrt)?;
                let _ = denom.f_add_scalar_(self.eps)?;
                let _ = denom.f_div_scalar_(-step_size)?;
                let _ = p.f_addcdiv_(&m.exp_avg, &denom)?;
            }
            Ok(())
        })
    }

    /// Keeps the moments of the parameters `owned` says are this rank's and drops the others:
    /// from then on [`AdamW::step`] updates only those (ZeRO-1).
    pub fn shard(&mut self, owned: impl Fn(&str) -> bool) {
        self.state.retain(|name, _| owned(name));
        self.sharded = true;
    }

    /// Whether this rank holds the moments of parameter `name`.
    pub fn holds(&self, name: &str) -> bool {
        self.state.contains_key(name)
    }

    /// The moments of parameter `name`, when this rank holds them.
    pub fn moments(&self, name: &str) -> Option<[&Tensor; 2]> {
        self.state.get(name).map(|m| [&m.exp_avg, &m.exp_avg_sq])
    }

    /// The moments as named tensors (`exp_avg.NAME`, `exp_avg_sq.NAME`), for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.state
            .iter()
            .flat_map(|(name, m)| {
                [
                    (format!("exp_avg.{name}"), m.exp_avg.shallow_clone()),
                    (format!("exp_avg_sq.{name}"), m.exp_avg_sq.shallow_clone()),
                ]
            })
            .collect()
    }

    /// Restores the moments saved by [`AdamW::state_tensors`] and the update count.
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, steps: u64) -> Result<()> {
        ensure!(
            tensors.len() == 2 * self.state.len(),
            "optimizer state holds {} tensors, the model needs {}",
            tensors.len(),
            2 * self.state.len()
        );
        tch::no_grad(|| -> Result<()> {
            for (name, m) in &mut self.state {
                for (prefix, dst) in [
                    ("exp_avg", &mut m.exp_avg),
                    ("exp_avg_sq", &mut m.exp_avg_sq),
                ] {
                    let key = format!("{prefix}.{name}");
                    let src = tensors
                        .get(&key)
                        .with_context(|| format!("optimizer state lacks {key}"))?;
                    ensure!(
                        src.size() == dst.size(),
                        "optimizer tensor {key} has shape {:?}, expected {:?}",
                        src.size(),
                        dst.size()
                    );
                    dst.f_copy_(src)?;
                }
            }
            Ok(())
        })?;
        self.steps = steps;
        Ok(())
    }
}
