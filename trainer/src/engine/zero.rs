//! ZeRO stage 1 (`train.zero = 1`) over [`DataParallel`]: each trainable parameter has one
//! owner rank (greedy by size over the sorted names, so every rank computes the same map);
//! only the owner keeps its AdamW moments and applies its update, then every parameter is
//! broadcast from its owner, so the weights stay equal on every rank. The gradients are
//! still summed on every rank (the global norm needs them all). In a checkpoint each rank
//! writes the moments it owns as its own file and rank 0 a manifest over them
//! ([`crate::io::optim_shards`]); reading merges them, which is why a sharded run resumes with
//! any number of ranks, sharded or not.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use tch::Tensor;

use std::path::Path;

use crate::engine::optim::AdamW;
use crate::engine::parallel::DataParallel;
use crate::io::checkpoint::{self, OptimizerState};
use crate::io::optim_shards;

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
}

/// This rank's part of a ZeRO-1 checkpoint of `step` under `root`: rank 0 creates the
/// temporary directory, every rank writes the moments it owns into it, and once all have,
/// rank 0 goes on to write the rest with [`OptimizerState::Sharded`].
pub fn write_shards(
    dp: &DataParallel,
    root: &Path,
    step: u64,
    optim: &AdamW,
) -> Result<OptimizerState> {
    if dp.world().is_main() {
        checkpoint::begin(root, step)?;
    }
    dp.barrier()
        .with_context(|| format!("step {step}: waiting for rank 0 to start the checkpoint"))?;
    let tmp = checkpoint::tmp_dir(root, step);
    optim_shards::write_shard(&tmp, dp.rank(), dp.size(), &optim.state_tensors())?;
    dp.barrier()
        .with_context(|| format!("step {step}: waiting for every rank's optimizer shard"))?;
    Ok(OptimizerState::Sharded {
        world_size: dp.size(),
    })
}
