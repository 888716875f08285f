//! `trainer bench`: tokens/s, MFU (on CUDA) and peak memory of the real training step for a
//! config, on a synthetic dataset of uniformly random tokens written with `format`'s
//! `ShardWriter` (so the data path is the one pretraining uses). `bench/reference/pytorch_reference.py`
//! runs the same model and loop in PyTorch eager for comparison.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use format::{DatasetKind, PretrainDoc, ShardWriter, TokenizerSpec};
use serde::Serialize;

use crate::engine::config::RunConfig;
use crate::engine::seed::mix;
use crate::engine::{Faults, Resume};
use crate::pretrain::Trainer;

/// Vocabulary of the synthetic data when the config takes it from the dataset.
pub const DEFAULT_VOCAB: i64 = 32_000;

/// What a benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub params: i64,
    pub device: String,
    pub compute: String,
    pub threads: i32,
    pub seq_len: i64,
    pub micro_batch_size: i64,
    pub grad_accum: i64,
    pub tokens_per_step: i64,
    pub steps: u64,
    pub tokens_per_s: f64,
    pub step_ms: f64,
    /// Timed tokens per second of this process's CPU time (user + system): steadier than
    /// wall time on a shared machine.
    pub tokens_per_cpu_s: f64,
    /// Model FLOPs utilisation against `train.gpu_peak_tflops` (CUDA only).
    pub mfu: Option<f64>,
    pub final_loss: f64,
    /// Peak resident memory of this process (VmHWM).
    pub peak_rss_mib: f64,
    /// Processes of the job (torchrun, srun); `tokens_per_s` and `tokens_per_step` are the
    /// whole job's.
    pub ranks: u64,
    /// Time per step in collectives (the gradient all-reduce and the loss sums).
    pub comm_ms: f64,
}

impl BenchReport {
    /// What `trainer bench` prints without `--json`, for the run of `config`.
    pub fn render(&self, config: &Path) -> String {
        format!(
            "{}: {} params on {} ({}), {} threads, {} tokens/step (seq {} x micro {} x accum {})\n  {:.0} tokens/s, {:.1} ms/step over {} steps{}; peak RSS {:.0} MiB\n",
            config.display(),
            self.params,
            self.device,
            self.compute,
            self.threads,
            self.tokens_per_step,
            self.seq_len,
            self.micro_batch_size,
            self.grad_accum,
            self.tokens_per_s,
            self.step_ms,
            self.steps,
            self.mfu
                .map_or(String::new(), |m| format!(", MFU {:.1}%", m * 100.0)),
            self.peak_rss_mib
        ) + &if self.ranks > 1 {
            format!(
                "  {} ranks (tokens/s of the job), {:.1} ms/step in collectives\n",
                self.ranks, self.comm_ms
            )
        } else {
            String::new()
        }
    }
}

/// Peak resident set size in MiB from /proc (0 where unavailable).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// User + system CPU seconds of this process, from /proc (0 where unavailable).
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Writes `tokens` uniformly random ids in documents of 2048 (EOS last) under `dir`.
pub fn synthetic_dataset(dir: &Path, vocab: u32, tokens: usize, seed: u64) -> Result<()> {
    let stub = dir.join("stub-tokenizer.json");
    std::fs::create_dir_all(dir)?;
    std::fs::write(&stub, b"{\"note\": \"random ids, no tokenizer\"}")?;
    let spec = TokenizerSpec {
        path: stub,
        vocab_size: vocab,
        special_tokens: BTreeMap::from([("eos".to_string(), 0)]),
    };
    let mut writer = ShardWriter::builder(dir.join("data"), DatasetKind::Pretrain, spec)
        .build()
        .context("writing the synthetic dataset")?;
    let doc_len = 2048;
    for d in 0..tokens.div_ceil(doc_len) {
        let mut ids: Vec<u32> = (0..doc_len - 1)
            .map(|i| 1 + (mix(&[seed, d as u64, i as u64]) % u64::from(vocab - 1)) as u32)
            .collect();
        ids.push(0);
        writer.write(PretrainDoc {
            doc_id: &format!("random-{d}"),
            source: "random",
            tokens: &ids,
        })?;
    }
    writer.finish()?;
    Ok(())
}

/// Runs `warmup` untimed steps then `steps` timed ones of `config` on random data.
pub fn run(mut config: RunConfig, warmup: u64, steps: u64) -> Result<BenchReport> {
    ensure!(steps > 0, "bench needs at least one timed step");
    // The ranks of a job share one synthetic dataset (their configs must match): rank 0
    // writes it, the others wait for its manifest.
    let world = crate::dist::World::from_env()?;
    let tmp = match &world {
        Some(w) => job_dir(w)?,
        None => tempdir()?,
    };
    if config.model.vocab_size == 0 {
        config.model.vocab_size = DEFAULT_VOCAB;
    }
    let window = (config.data.seq_len + 1) as usize;
    let tokens = (window * 64).max(1 << 20);
    let manifest = tmp.join("data").join(format::MANIFEST_FILE);
    if world.as_ref().is_none_or(crate::dist::World::is_main) {
        synthetic_dataset(&tmp, config.model.vocab_size as u32, tokens, 0)?;
    } else {
        let waited = Instant::now();
        while !manifest.exists() {
            ensure!(
                waited.elapsed().as_secs() < 300,
                "rank 0 wrote no synthetic dataset at {} in 5 minutes",
                tmp.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    config.data.train = tmp.join("data");
    config.data.valid = None;
    config.train.out = tmp.join("out");
    config.train.steps = warmup + steps;
    let mut trainer = Trainer::new(config.clone(), Resume::No, Faults::default())?;
    for _ in 0..warmup {
        trainer.train_step()?;
    }
    let started = Instant::now();
    let cpu_started = process_cpu_seconds();
    let mut last = None;
    let mut comm = 0.0;
    for _ in 0..steps {
        let report = trainer.train_step()?;
        comm += report.comm_seconds;
        last = Some(report);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds() - cpu_started;
    let device = trainer.model().device();
    let ranks = world.as_ref().map_or(1, |w| w.size as u64);
    let tokens_per_step = config.tokens_per_step() * ranks as i64;
    let tokens_per_s = (tokens_per_step as u64 * steps) as f64 / seconds;
    let flops = trainer
        .model()
        .config()
        .flops_per_token(config.data.seq_len);
    let report = BenchReport {
        params: trainer.model().num_params(),
        device: format!("{device:?}"),
        compute: format!("{:?}", trainer.model().kind()),
        threads: tch::get_num_threads(),
        seq_len: config.data.seq_len,
        micro_batch_size: config.train.micro_batch_size,
        grad_accum: config.train.grad_accum,
        tokens_per_step,
        steps,
        tokens_per_s,
        step_ms: seconds * 1e3 / steps as f64,
        tokens_per_cpu_s: (tokens_per_step as u64 * steps) as f64 / cpu_seconds.max(1e-9),
        mfu: device
            .is_cuda()
            .then(|| tokens_per_s * flops / (config.train.gpu_peak_tflops * 1e12 * ranks as f64)),
        final_loss: last.map_or(f64::NAN, |r| r.loss),
        peak_rss_mib: peak_rss_mib(),
        ranks,
        comm_ms: comm * 1e3 / steps as f64,
    };
    drop(trainer);
    if world.as_ref().is_none_or(crate::dist::World::is_main) {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(report)
}

/// The directory the ranks of a job share under the system temp dir (named by the
/// rendezvous address, which no two running jobs share on one machine).
fn job_dir(world: &crate::dist::World) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "jielong-bench-job-{}-{}",
        world.master_addr, world.master_port
    ));
    if world.is_main() && dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A fresh directory under the system temp dir.
fn tempdir() -> Result<std::path::PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("jielong-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
