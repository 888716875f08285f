//! Bradley-Terry ranking of checkpoints from pairwise preference labels: `P(i beats j) =
//! p_i / (p_i + p_j)`, fitted by the MM algorithm (Hunter 2004), with bootstrap confidence
//! intervals (resampling the comparisons with a fixed seed, so the same labels always give
//! the same intervals). Ties count half a win to each side. One virtual tie between every
//! pair that was compared keeps the scores finite when a checkpoint always wins or loses.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use serde::Serialize;

/// One judged pair: `outcome` is 1 when `left` won, 0 when `right` won, 0.5 for a tie.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub left: String,
    pub right: String,
    pub outcome: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckpointScore {
    pub checkpoint: String,
    /// Log-strength, centred so the scores average 0; a difference d means the higher one
    /// wins with probability 1 / (1 + e^-d).
    pub score: f64,
    /// 95% bootstrap interval of `score`.
    pub ci_low: f64,
    pub ci_high: f64,
    /// The same on the Elo scale (400 / ln 10 per unit of score, centred on 1000).
    pub elo: f64,
    pub comparisons: usize,
    pub wins: f64,
    /// Share of bootstrap resamples in which this checkpoint scores above the next one in
    /// the ranking (absent for the last).
    pub p_above_next: Option<f64>,
}

const BOOTSTRAP_SAMPLES: usize = 200;
const SEED: u64 = 0x006a_6965_6c6f_6e67;

/// Scores by checkpoint for one set of comparisons.
pub fn fit(comparisons: &[Comparison]) -> BTreeMap<String, f64> {
    let mut names: Vec<&str> = comparisons
        .iter()
        .flat_map(|c| [c.left.as_str(), c.right.as_str()])
        .collect();
    names.sort_unstable();
    names.dedup();
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let k = names.len();
    let mut wins = vec![0.0; k];
    let mut games = vec![vec![0.0; k]; k];
    for c in comparisons {
        let (i, j) = (index[c.left.as_str()], index[c.right.as_str()]);
        wins[i] += c.outcome;
        wins[j] += 1.0 - c.outcome;
        games[i][j] += 1.0;
        games[j][i] += 1.0;
    }
    // The prior: one tie per compared pair.
    for (i, row) in games.iter_mut().enumerate() {
        for (j, g) in row.iter_mut().enumerate() {
            if i != j && *g > 0.0 {
                *g += 1.0;
                wins[i] += 0.5;
            }
        }
    }
    let mut p = vec![1.0; k];
    for _ in 0..1000 {
        let mut next = vec![0.0; k];
        for i in 0..k {
            let denom: f64 = (0..k)
                .filter(|&j| j != i && games[i][j] > 0.0)
                .map(|j| games[i][j] / (p[i] + p[j]))
                .sum();
            next[i] = if denom > 0.0 { wins[i] / denom } else { p[i] };
        }
        let mean_log = next.iter().map(|x: &f64| x.ln()).sum::<f64>() / k as f64;
        let scale = (-mean_log).exp();
        let mut delta: f64 = 0.0;
        for i in 0..k {
            let v = next[i] * scale;
            delta = delta.max((v - p[i]).abs());
            p[i] = v;
        }
        if delta < 1e-10 {
            break;
        }
    }
    names
        .iter()
        .zip(p)
        .map(|(n, p)| (n.to_string(), p.ln()))
        .collect()
}

/// The ranking, best first, with bootstrap intervals.
pub fn rank(comparisons: &[Comparison]) -> Vec<CheckpointScore> {
    let scores = fit(comparisons);
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    let mut samples: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut resampled = Vec::with_capacity(comparisons.len());
    let mut boot_fits = Vec::with_capacity(BOOTSTRAP_SAMPLES);
    for _ in 0..BOOTSTRAP_SAMPLES {
        resampled.clear();
        for _ in 0..comparisons.len() {
            resampled.push(comparisons[rng.gen_range(0..comparisons.len())].clone());
        }
        let fit = fit(&resampled);
        for (name, score) in &fit {
            if let Some((key, _)) = scores.get_key_value(name) {
                samples.entry(key.as_str()).or_default().push(*score);
            }
        }
        boot_fits.push(fit);
    }
    let mut counts: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for c in comparisons {
        let l = counts.entry(&c.left).or_default();
        l.0 += 1;
        l.1 += c.outcome;
        let r = counts.entry(&c.right).or_default();
        r.0 += 1;
        r.1 += 1.0 - c.outcome;
    }
    let mut out: Vec<CheckpointScore> = scores
        .iter()
        .map(|(name, &score)| {
            let mut s = samples.get(name.as_str()).cloned().unwrap_or_default();
            s.sort_by(f64::total_cmp);
            let (comparisons, wins) = counts.get(name.as_str()).copied().unwrap_or_default();
            CheckpointScore {
                checkpoint: name.clone(),
                score,
                ci_low: crate::stats::agreement::quantile(&s, 0.025).unwrap_or(score),
                ci_high: crate::stats::agreement::quantile(&s, 0.975).unwrap_or(score),
                elo: 1000.0 + score * 400.0 / std::f64::consts::LN_10,
                comparisons,
                wins,
                p_above_next: None,
            }
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    for i in 0..out.len().saturating_sub(1) {
        let (hi, lo) = (&out[i].checkpoint, &out[i + 1].checkpoint);
        let both: Vec<bool> = boot_fits
            .iter()
            .filter_map(|f| Some(f.get(hi)? > f.get(lo)?))
            .collect();
        if !both.is_empty() {
            out[i].p_above_next =
                Some(both.iter().filter(|b| **b).count() as f64 / both.len() as f64);
        }
    }
    out
}
