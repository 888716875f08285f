//! Preference pairs as packed batches (chosen and rejected answers after the same prompt)
//! and the held-out evaluation DPO and the reward model share.

use anyhow::Result;
use serde_json::json;
use tch::{Device, Tensor};

use crate::engine::{Evaluation, NamedSums};
use crate::post::data::{self, PackedBatch, Pair, Sequence};

/// Packs pairs `rows` of `pairs` as (chosen, rejected) sequences, in pair order.
pub fn pack_pairs(
    pairs: &[Pair],
    rows: &[usize],
    row_len: usize,
    device: Device,
) -> Result<PackedBatch> {
    let seqs: Vec<Sequence> = rows.iter().flat_map(|&i| pairs[i].sequences()).collect();
    let refs: Vec<&Sequence> = seqs.iter().collect();
    data::pack(&refs, row_len, device)
}

/// Adds `sums` into `totals` by name (held-out evaluations, on the host).
pub fn accumulate(totals: &mut Vec<(&'static str, f64)>, sums: NamedSums) -> Result<()> {
    for (name, value) in sums {
        let value = f64::try_from(value)?;
        match totals.iter_mut().find(|(n, _)| *n == name) {
            Some((_, acc)) => *acc += value,
            None => totals.push((name, value)),
        }
    }
    Ok(())
}

/// Evaluates `count` held-out pairs in chunks of `per_batch`: `terms` gives a chunk's summed
/// loss and named sums; the evaluation holds their means as `val_NAME` and `val_pairs`.
pub fn pair_evaluation(
    count: usize,
    per_batch: usize,
    mut terms: impl FnMut(&[usize]) -> Result<(Tensor, NamedSums)>,
) -> Result<Option<Evaluation>> {
    if count == 0 {
        return Ok(None);
    }
    let indices: Vec<usize> = (0..count).collect();
    let (mut loss, mut totals) = (0.0, Vec::new());
    for chunk in indices.chunks(per_batch.max(1)) {
        let (l, sums) = terms(chunk)?;
        loss += f64::try_from(l)?;
        accumulate(&mut totals, sums)?;
    }
    let n = count as f64;
    let mut eval = Evaluation {
        loss: loss / n,
        ..Evaluation::default()
    };
    for (name, value) in totals {
        eval.fields.insert(format!("val_{name}"), json!(value / n));
    }
    eval.fields.insert("val_pairs".into(), json!(count));
    Ok(Some(eval))
}
