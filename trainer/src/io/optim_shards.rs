//! The optimizer state of a ZeRO-1 checkpoint: each rank writes the AdamW moments it owns as
//! its own safetensors file into the checkpoint's temporary directory, then rank 0 checks
//! that every shard is there and complete and writes `optimizer.shards.json` (file, rank,
//! size, sha256 and tensor names of each shard) before the directory is renamed into place.
//! Reading merges the shards back into the one-process map, so a checkpoint saved by N
//! sharded ranks resumes with any number of ranks, sharded or not (each rank then keeps the
//! moments it owns in the new layout).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::Tensor;

use crate::io::safetensors::{read_safetensors, write_safetensors};

/// The manifest of a sharded optimizer state, in a checkpoint directory.
pub const MANIFEST_FILE: &str = "optimizer.shards.json";
const FORMAT: &str = "jielong-optimizer-shards/1";

/// `optimizer.shards.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// Ranks of the job that wrote the shards (one file each).
    pub world_size: u64,
    pub shards: Vec<ShardEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    pub rank: u64,
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    /// `exp_avg.NAME` / `exp_avg_sq.NAME` of the parameters this rank owned.
    pub tensors: Vec<String>,
}

/// The file rank `rank` of `world_size` writes its moments to.
pub fn shard_file(rank: u64, world_size: u64) -> String {
    format!("optimizer-rank-{rank:05}-of-{world_size:05}.safetensors")
}

/// Writes this rank's moments into the checkpoint's temporary directory `tmp`.
pub fn write_shard(
    tmp: &Path,
    rank: u64,
    world_size: u64,
    tensors: &[(String, Tensor)],
) -> Result<()> {
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&tmp.join(shard_file(rank, world_size)), tensors, &meta)
        .with_context(|| format!("rank {rank} writing its optimizer shard"))
}

/// Checks the shards of all `world_size` ranks in `tmp` (present, readable header) and writes
/// the manifest over them. A shard missing here means rank 0 cannot see the other ranks'
/// files: the run's output directory must be on a filesystem every node shares.
pub fn write_manifest(tmp: &Path, world_size: u64) -> Result<()> {
    let mut shards = Vec::new();
    for rank in 0..world_size {
        let file = shard_file(rank, world_size);
        let path = tmp.join(&file);
        if !path.exists() {
            bail!(
                "rank {rank}'s optimizer shard {} is not there after every rank wrote its own: \
                 train.out must be on a filesystem every node of the job sees",
                path.display()
            );
        }
        let (bytes, sha256) = hash_file(&path)?;
        shards.push(ShardEntry {
            rank,
            file,
            bytes,
            sha256,
            tensors: header_names(&path)?,
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        world_size,
        shards,
    };
    let path = tmp.join(MANIFEST_FILE);
    let bytes = serde_json::to_vec_pretty(&manifest)?;
    let mut f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut f, &bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Every shard of checkpoint `dir` checked against its manifest entry (size, sha256, tensor
/// names; no tensor in two shards) and merged into one map.
pub fn read(dir: &Path) -> Result<BTreeMap<String, Tensor>> {
    let path = dir.join(MANIFEST_FILE);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: Manifest =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    ensure!(
        manifest.format == FORMAT,
        "{}: format {:?}, this trainer reads {FORMAT:?}",
        path.display(),
        manifest.format
    );
    let ranks: Vec<u64> = manifest.shards.iter().map(|s| s.rank).collect();
    ensure!(
        ranks == (0..manifest.world_size).collect::<Vec<_>>(),
        "{}: lists the shards of ranks {ranks:?} for a world of {}",
        path.display(),
        manifest.world_size
    );
    let mut merged = BTreeMap::new();
    for shard in &manifest.shards {
        let file = dir.join(&shard.file);
        let (bytes, sha256) = hash_file(&file)?;
        ensure!(
            bytes == shard.bytes && sha256 == shard.sha256,
            "{} is {bytes} bytes with sha256 {sha256}; {MANIFEST_FILE} says {} bytes, {}: \
             the file was changed or cut short",
            file.display(),
            shard.bytes,
            shard.sha256
        );
        let tensors = read_safetensors(&file)?;
        let names: Vec<&String> = tensors.keys().collect();
        let mut listed: Vec<&String> = shard.tensors.iter().collect();
        listed.sort();
        ensure!(
            names == listed,
            "{} holds other tensors than {MANIFEST_FILE} lists",
            file.display()
        );
        for (name, t) in tensors {
            if merged.insert(name.clone(), t).is_some() {
                bail!(
                    "{name} is in more than one optimizer shard of {}",
                    dir.display()
                );
            }
        }
    }
    Ok(merged)
}

fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// The tensor names in a safetensors file's header, sorted (the data is not read).
fn header_names(path: &Path) -> Result<Vec<String>> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .with_context(|| format!("{}: no safetensors header", path.display()))?;
    let len = u64::from_le_bytes(len);
    ensure!(
        len < 1 << 30,
        "{}: corrupt safetensors header",
        path.display()
    );
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)
        .with_context(|| format!("{}: safetensors header cut short", path.display()))?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .with_context(|| format!("{}: corrupt safetensors header", path.display()))?;
    let mut names: Vec<String> = header
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k != "__metadata__")
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(rank: u64) -> Vec<(String, Tensor)> {
        let t = Tensor::from_slice(&[rank as f32, 1.5, -2.0]);
        vec![
            (format!("exp_avg.w{rank}"), t.shallow_clone()),
            (format!("exp_avg_sq.w{rank}"), t * 2.0),
        ]
    }

    #[test]
    fn shards_merge_back_and_a_changed_or_missing_one_is_refused_by_name() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        write_shard(dir, 1, 2, &shard(1)).expect("rank 1");
        let err = format!("{:#}", write_manifest(dir, 2).expect_err("rank 0 missing"));
        assert!(
            err.contains("rank 0's optimizer shard") && err.contains("every node"),
            "{err}"
        );
        write_shard(dir, 0, 2, &shard(0)).expect("rank 0");
        write_manifest(dir, 2).expect("manifest");
        let merged = read(dir).expect("read");
        let names: Vec<&str> = merged.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["exp_avg.w0", "exp_avg.w1", "exp_avg_sq.w0", "exp_avg_sq.w1"]
        );
        assert!(merged["exp_avg_sq.w1"].equal(&Tensor::from_slice(&[2.0f32, 3.0, -4.0])));

        // One byte of rank 1's moments changed after the manifest was written.
        let path = dir.join(shard_file(1, 2));
        let mut bytes = fs::read(&path).expect("shard");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        fs::write(&path, &bytes).expect("write");
        let err = format!("{:#}", read(dir).expect_err("changed"));
        assert!(
            err.contains(&shard_file(1, 2)) && err.contains("changed or cut short"),
            "{err}"
        );
    }
}
