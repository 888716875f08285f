//! Data parallelism for the [`crate::engine::Engine`]: every rank runs the same model on its
//! own rows of each step's global batch ([`crate::engine::MicroBatch`]), and after backward
//! the gradients are summed across ranks in flattened buckets of about 25 MB (tch offers no
//! per-parameter backward hooks, so every bucket starts once backward is done). Each rank
//! divides its loss by the step's global number of units before backward, so the sum is the
//! one-process gradient; the global gradient norm, clipping and AdamW then run identically
//! on every rank and the weights stay equal without being sent again.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use crate::dist::consistency::{check_same, flatten};
use crate::dist::{ProcessGroup, ReduceOp, World};
use crate::engine::config::RunConfig;
use crate::post::config::PostSettings;

/// Gradient bytes per all-reduce.
pub const BUCKET_BYTES: usize = 25 << 20;

/// This process's rank in a data-parallel job and the group it talks through.
#[derive(Debug)]
pub struct DataParallel {
    group: ProcessGroup,
    world: World,
}

impl DataParallel {
    /// Joins the job the environment describes (torchrun or srun); None for one process.
    /// CUDA runs get NCCL for their tensors, beside Gloo for the CPU's.
    pub fn from_env(timeout_s: u64, device: Device) -> Result<Option<Self>> {
        let Some(world) = World::from_env()? else {
            return Ok(None);
        };
        let timeout = Duration::from_secs(timeout_s.max(1));
        let group = ProcessGroup::join(&world, timeout, device.is_cuda()).with_context(|| {
            format!(
                "rank {} of {} joining the process group at {}:{}",
                world.rank, world.size, world.master_addr, world.master_port
            )
        })?;
        tracing::info!(
            rank = world.rank,
            world = world.size,
            "joined the process group"
        );
        Ok(Some(Self { group, world }))
    }

    /// The device of this rank: GPU `LOCAL_RANK` when the run is on CUDA, counted among the
    /// GPUs the process sees (a launcher that gives each rank one GPU, as `srun
    /// --gpus-per-task 1` does, leaves it GPU 0).
    pub fn device(parallel: Option<&Self>, device: Device) -> Device {
        match (parallel, device) {
            (Some(dp), Device::Cuda(_)) => {
                let visible = tch::Cuda::device_count().max(1) as usize;
                Device::Cuda(dp.world.local_rank % visible)
            }
            _ => device,
        }
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    pub fn rank(&self) -> u64 {
        self.world.rank as u64
    }

    pub fn size(&self) -> u64 {
        self.world.size as u64
    }

    pub fn group(&self) -> &ProcessGroup {
        &self.group
    }

    /// Publishes the step this rank works on (named in other ranks' timeout errors).
    pub fn set_progress(&self, step: u64) {
        self.group.set_progress(step);
    }

    /// Element-wise sums of `values` across the ranks (in f64).
    pub fn sum(&self, values: &[f64]) -> Result<Vec<f64>> {
        let t = Tensor::f_from_slice(values)?;
        self.group.all_reduce(&t, ReduceOp::Sum)?;
        Ok(Vec::<f64>::try_from(&t)?)
    }

    /// Sums the gradients of `params` across the ranks, bucket by bucket.
    pub fn all_reduce_grads(&self, params: &[(String, Tensor)]) -> Result<()> {
        let grads: Vec<Tensor> = params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(Tensor::defined)
            .collect();
        tch::no_grad(|| {
            for bucket in buckets(&grads) {
                let flat = Tensor::f_cat(
                    &bucket
                        .iter()
                        .map(|g| g.f_reshape([-1]))
                        .collect::<Result<Vec<_>, _>>()?,
                    0,
                )?;
                self.group.all_reduce(&flat, ReduceOp::Sum)?;
                let mut offset = 0;
                for g in bucket {
                    let n = g.numel() as i64;
                    let mut g = g.shallow_clone();
                    g.f_copy_(&flat.f_narrow(0, offset, n)?.f_view_as(&g)?)?;
                    offset += n;
                }
            }
            Ok(())
        })
    }

    /// Waits until every rank is here.
    pub fn barrier(&self) -> Result<()> {
        Ok(self.group.barrier()?)
    }

    /// Copies rank 0's `tensors` into every rank's (after initialisation or a resume, so
    /// every rank starts from the same weights whatever their seeds or files).
    pub fn broadcast_from_main(&self, tensors: &[Tensor]) -> Result<()> {
        self.broadcast_from(0, tensors)
    }

    /// Copies rank `root`'s `tensors` into every rank's, bucket by bucket (every rank passes
    /// tensors of the same shapes in the same order).
    pub fn broadcast_from(&self, root: u64, tensors: &[Tensor]) -> Result<()> {
        tch::no_grad(|| {
            for bucket in buckets(tensors) {
                let flat = Tensor::f_cat(
                    &bucket
                        .iter()
                        .map(|t| t.f_reshape([-1]))
                        .collect::<Result<Vec<_>, _>>()?,
                    0,
                )?;
                self.group.broadcast(&flat, root as usize)?;
                let mut offset = 0;
                for t in bucket {
                    let n = t.numel() as i64;
                    let mut t = t.shallow_clone();
                    t.f_copy_(&flat.f_narrow(0, offset, n)?.f_view_as(&t)?)?;
                    offset += n;
                }
            }
            Ok(())
        })
    }

    /// Rank 0's tensor on every rank: `main` is Some on rank 0 (any shape, f32 on the CPU
    /// after transfer), ignored elsewhere.
    pub fn share_from_main(&self, main: Option<&Tensor>) -> Result<Tensor> {
        let shape = match (self.world.is_main(), main) {
            (true, Some(t)) => t.size(),
            (true, None) => anyhow::bail!("rank 0 has nothing to share"),
            _ => Vec::new(),
        };
        let mut header = shape.clone();
        header.resize(8, -1);
        header.insert(0, shape.len() as i64);
        let header_t = Tensor::f_from_slice(&header)?;
        self.group.broadcast(&header_t, 0)?;
        let header = Vec::<i64>::try_from(&header_t)?;
        let dims: Vec<i64> = header[1..1 + header[0] as usize].to_vec();
        let t = match main {
            Some(t) if self.world.is_main() => t
                .f_to_device(Device::Cpu)?
                .f_to_kind(Kind::Float)?
                .f_contiguous()?,
            _ => Tensor::f_zeros(&dims, (Kind::Float, Device::Cpu))?,
        };
        self.group.broadcast(&t, 0)?;
        Ok(t)
    }

    /// Refuses a job whose ranks were started differently: the same resolved config, the
    /// same post-training settings, the same datasets (their manifests) and the same resume
    /// step on every rank.
    pub fn check_same_start(
        &self,
        config: &RunConfig,
        post: Option<&PostSettings>,
        step: u64,
    ) -> Result<()> {
        let mut fields = Vec::new();
        flatten(&json!({"config": config, "post": post}), "", &mut fields);
        let datasets: Vec<(String, String)> = fields
            .iter()
            .filter(|(k, _)| k.contains(".data."))
            .filter_map(|(k, v)| {
                let dir = std::path::PathBuf::from(serde_json::from_str::<String>(v).ok()?);
                let manifest = dir.join(format::MANIFEST_FILE);
                let hash = format::sha256_file(&manifest).ok()?;
                Some((format!("{k} (dataset manifest)"), hash))
            })
            .collect();
        fields.extend(datasets);
        fields.push(("resumed step".into(), step.to_string()));
        check_same(&self.group, &fields)
    }
}

/// Consecutive tensors grouped into buckets of at most [`BUCKET_BYTES`] (or one tensor
/// when it alone is larger), each bucket of one dtype and one device.
fn buckets(tensors: &[Tensor]) -> Vec<Vec<&Tensor>> {
    let mut out: Vec<Vec<&Tensor>> = Vec::new();
    let mut bytes = 0;
    for t in tensors {
        let size = t.numel() * t.kind().elt_size_in_bytes();
        let fits = out.last().is_some_and(|b: &Vec<&Tensor>| {
            let first = b[0];
            first.kind() == t.kind() && first.device() == t.device() && bytes + size <= BUCKET_BYTES
        });
        if fits {
            bytes += size;
            if let Some(b) = out.last_mut() {
                b.push(t);
            }
        } else {
            out.push(vec![t]);
            bytes = size;
        }
    }
    out
}
