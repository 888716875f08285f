//! ZeRO stage 1 (`train.zero = 1`) over [`DataParallel`]: each trainable parameter has one
//! owner rank (greedy by size over the sorted names, so every rank computes the same map);
//! only the owner keeps its AdamW moments and applies its update, then every parameter is
//! broadcast from its owner, so the weights stay equal on every rank. The gradients are
//! still summed on every rank (the global norm needs them all). A checkpoint gathers the
//! moments back into the one-process format, which is why a sharded run resumes with any
//! number of ranks, sharded or not.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use tch::Tensor;

use crate::engine::optim::AdamW;
use crate::engine::parallel::DataParallel;

/// The owner rank of each trainable parameter.
#[derive(Debug, Clone)]
pub struct Owners(BTreeMap<String, u64>);

impl Owners {
    /// Parameters to `ranks` ranks, each to the rank with the fewest bytes so far (the
    /// largest first, so the shards come out even).
    pub fn new(params: &[(String, Tensor)], ranks: u64) -> Self {
        let mut by_size: Vec<(&String, usize)> = params
            .iter()
            .map(|(n, t)| (n, t.numel() * t.kind().elt_size_in_bytes()))
            .collect();
        by_size.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut load = vec![0usize; ranks.max(1) as usize];
        let mut owners = BTreeMap::new();
        for (name, bytes) in by_size {
            let rank = (0..load.len()).min_by_key(|&r| (load[r], r)).unwrap_or(0);
            load[rank] += bytes;
            owners.insert(name.clone(), rank as u64);
        }
        Self(owners)
    }

    pub fn owner(&self, name: &str) -> Option<u64> {
        self.0.get(name).copied()
    }

    /// Every parameter from its owner to all ranks (after this rank updated its own).
    pub fn gather_params(&self, dp: &DataParallel, params: &[(String, Tensor)]) -> Result<()> {
        for rank in 0..dp.size() {
            let mine: Vec<Tensor> = params
                .iter()
                .filter(|(n, _)| self.owner(n) == Some(rank))
                .map(|(_, t)| t.shallow_clone())
                .collect();
            dp.broadcast_from(rank, &mine)?;
        }
        Ok(())
    }

    /// Every parameter's moments on rank 0, named as [`AdamW::state_tensors`] names them
    /// (for a checkpoint in the one-process format); empty on the other ranks, which hold
    /// one other rank's shard at a time while it is sent.
    pub fn gather_moments(
        &self,
        dp: &DataParallel,
        optim: &AdamW,
    ) -> Result<Vec<(String, Tensor)>> {
        let mut gathered = BTreeMap::new();
        for rank in 0..dp.size() {
            let mut names = Vec::new();
            let mut tensors = Vec::new();
            for (name, p) in optim.params() {
                if self.owner(name) != Some(rank) {
                    continue;
                }
                let [m, v] = match optim.moments(name) {
                    Some([m, v]) => [m.shallow_clone(), v.shallow_clone()],
                    None => [p.f_zeros_like()?, p.f_zeros_like()?],
                };
                names.push(name.clone());
                tensors.push(m);
                tensors.push(v);
            }
            dp.broadcast_from(rank, &tensors)
                .with_context(|| format!("gathering the optimizer moments of rank {rank}"))?;
            if !dp.world().is_main() {
                // Only rank 0 writes: the others free each shard once it is sent.
                continue;
            }
            for (name, pair) in names.into_iter().zip(tensors.chunks(2)) {
                gathered.insert(name, [pair[0].shallow_clone(), pair[1].shallow_clone()]);
            }
        }
        // In the order of `AdamW::state_tensors`: by parameter name, each pair together.
        Ok(gathered
            .into_iter()
            .flat_map(|(name, [m, v])| {
                [
                    (format!("exp_avg.{name}"), m),
                    (format!("exp_avg_sq.{name}"), v),
                ]
            })
            .collect())
    }
}
