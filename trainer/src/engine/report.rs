//! What a training step and a finished run report.

use std::path::PathBuf;

/// One optimizer step's numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub skipped: bool,
    pub seconds: f64,
    /// Of `seconds`, the time spent in collectives (0 alone).
    pub comm_seconds: f64,
    /// Tokens of the whole job.
    pub tokens: u64,
    /// The objective's further per-step metrics.
    pub metrics: Vec<(&'static str, f64)>,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    pub steps: u64,
    pub final_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub tokens: u64,
    pub seconds: f64,
    pub last_checkpoint: Option<PathBuf>,
}

impl Summary {
    /// What the training commands print when a run ends.
    pub fn render(&self) -> String {
        let mut s = format!(
            "trained to step {} in {:.1}s ({} tokens this run, {:.0} tokens/s); final loss {}, validation loss {}\n",
            self.steps,
            self.seconds,
            self.tokens,
            self.tokens as f64 / self.seconds.max(1e-9),
            self.final_loss.map_or("-".into(), |l| format!("{l:.4}")),
            self.val_loss.map_or("-".into(), |l| format!("{l:.4}")),
        );
        if let Some(dir) = &self.last_checkpoint {
            s.push_str(&format!("checkpoint: {}\n", dir.display()));
        }
        s
    }
}
