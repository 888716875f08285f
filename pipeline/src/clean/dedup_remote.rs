//! The dedup stages of a split run whose output is `s3://`: a stage fetches what it reads
//! into a scratch copy of the output (same relative paths), runs there as on a local output,
//! and uploads what it wrote; the caller writes its done marker after that.
//!
//! Reads are ranged and only of what a task needs: a `pairs` task reads, per input, the
//! keys file's header and then its partitions (one contiguous range: the files are sorted by
//! partition and a task's partitions are contiguous), and only the signatures of documents
//! in a group of its partitions, nearby ones coalesced ([`SIGNATURE_GAP`]); both land at
//! their own offsets in a sparse local copy, so the local code reads them unchanged. A
//! `pairs` task uploads its partitions' pairs files as one object, which `components` reads
//! whole and splits back. The clean stage uploads each input's kept documents compressed
//! ([`upload_work`]), which `survivors` decompresses.

use std::io::Write as _;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use super::dedup_tasks::{components, pairs, signatures_needed, survivors, task_partitions};
use super::stages::Stage;
use super::summary::RunSummary;
use crate::config::{KeptFormat, PipelineConfig};
use crate::dedup::partition::{
    KeyKind, keys_header_len, kind_of, partition_bytes, partitions, signature_bytes, write_atomic,
};
use crate::readers::expand_inputs;
use crate::shard::TaskSlice;
use crate::storage::{self, RemoteObject};

/// Signatures of one input closer than this are read in one request: a signature is a few
/// hundred bytes, so reading documents one by one would be one GET each.
pub const SIGNATURE_GAP: u64 = 64 << 10;
/// zstd level of the kept documents in transit (compressing is ~1% of a clean task's CPU).
const KEPT_LEVEL: i32 = 3;

/// A local copy of part of a remote output.
struct Scratch {
    url: String,
    local: PathBuf,
}

impl Scratch {
    fn object(&self, rel: &str) -> Result<RemoteObject> {
        RemoteObject::parse(&format!("{}/{rel}", self.url))
    }

    fn fetch(&self, rel: &str) -> Result<()> {
        let local = self.local.join(rel);
        if local.exists() {
            return Ok(());
        }
        create_parent(&local)?;
        self.object(rel)?.download(&local)?;
        Ok(())
    }

    /// Fetches `ranges` of `rel` into its local copy at the same offsets (a sparse file).
    fn fetch_ranges(&self, rel: &str, ranges: &[Range<u64>]) -> Result<Vec<Vec<u8>>> {
        let local = self.local.join(rel);
        create_parent(&local)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&local)
            .with_context(|| format!("opening {}", local.display()))?;
        let blocks = self.object(rel)?.read_ranges(ranges)?;
        for (range, bytes) in ranges.iter().zip(&blocks) {
            ensure!(
                bytes.len() as u64 == range.end - range.start,
                "{}/{rel}: bytes {}..{} asked, {} came (is it truncated?)",
                self.url,
                range.start,
                range.end,
                bytes.len()
            );
            file.write_all_at(bytes, range.start)
                .with_context(|| format!("writing {}", local.display()))?;
        }
        Ok(blocks)
    }

    fn upload(&self, rel: &str) -> Result<()> {
        self.object(rel)?.upload(&self.local.join(rel))
    }
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

/// Uploads a clean task's work files (`local`, its `OUT/work`) to `url`: each input's kept
/// documents compressed (`input-NNNNN.kept.jsonl.zst`), without the staged inputs and the
/// per-document keys (only this task read them, to write the partitioned keys files).
pub(super) fn upload_work(local: &Path, url: &str) -> Result<()> {
    let base = url.trim_end_matches('/');
    for rel in storage::list_files(local)? {
        if rel.starts_with("inputs/") || rel.ends_with(".keys.bin") || rel.ends_with(".lock") {
            continue;
        }
        let path = local.join(&rel);
        if rel.ends_with(".kept.jsonl") {
            let packed = path.with_extension("jsonl.zst.partial");
            compress(&path, &packed)?;
            RemoteObject::parse(&format!("{base}/{rel}.zst"))?.upload(&packed)?;
            std::fs::remove_file(&packed).ok();
        } else {
            RemoteObject::parse(&format!("{base}/{rel}"))?.upload(&path)?;
        }
    }
    Ok(())
}

fn compress(from: &Path, to: &Path) -> Result<()> {
    let mut input =
        std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let output = std::fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let mut encoder = zstd::Encoder::new(output, KEPT_LEVEL)?;
    std::io::copy(&mut input, &mut encoder)
        .and_then(|_| encoder.finish())
        .and_then(|mut f| f.flush())
        .with_context(|| format!("compressing {} into {}", from.display(), to.display()))
}

fn decompress(from: &Path, to: &Path) -> Result<()> {
    let input = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let mut output =
        std::fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    zstd::stream::copy_decode(input, &mut output)
        .with_context(|| format!("decompressing {} into {}", from.display(), to.display()))
}

/// The object a pairs task uploads: its partitions' pairs files, one after another.
fn pairs_pack(task: TaskSlice) -> String {
    format!(
        "work/dedup/pairs-task-{:05}-of-{:05}.bin",
        task.index(),
        task.count()
    )
}

/// Packs `(partition, file)`s as: count (u32), then per file partition (u32) and length
/// (u64), then the files' bytes.
fn pack(files: &[(usize, PathBuf)], to: &Path) -> Result<()> {
    let mut head = (files.len() as u32).to_le_bytes().to_vec();
    let mut body = Vec::new();
    for (p, path) in files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        head.extend_from_slice(&(*p as u32).to_le_bytes());
        head.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        body.extend_from_slice(&bytes);
    }
    head.extend_from_slice(&body);
    write_atomic(to, &head)
}

/// Writes each pairs file of a pack into `dir`.
fn unpack(pack: &Path, dir: &Path) -> Result<()> {
    let bytes = std::fs::read(pack).with_context(|| format!("reading {}", pack.display()))?;
    let truncated = || format!("{} is truncated", pack.display());
    let count = u32::from_le_bytes(bytes.get(..4).with_context(truncated)?.try_into()?) as usize;
    let mut at = 4 + 12 * count;
    for i in 0..count {
        let entry = bytes.get(4 + 12 * i..16 + 12 * i).with_context(truncated)?;
        let p = u32::from_le_bytes(entry[..4].try_into()?);
        let len = u64::from_le_bytes(entry[4..].try_into()?) as usize;
        let body = bytes.get(at..at + len).with_context(truncated)?;
        write_atomic(&dir.join(format!("pairs-{p:04}.bin")), body)?;
        at += len;
    }
    Ok(())
}

/// Runs task `task` of `stage` (not `clean`) for a remote output.
pub(super) fn run_remote(
    config: &PipelineConfig,
    stage: Stage,
    task: TaskSlice,
) -> Result<RunSummary> {
    let url = config
        .output
        .dir
        .to_string_lossy()
        .trim_end_matches('/')
        .to_string();
    let label = task.marker(stage.name());
    let scratch = Scratch {
        local: storage::scratch_dir(&format!("{url}#{label}")),
        url,
    };
    let mut local = config.clone();
    local.output.dir = scratch.local.clone();
    let inputs = expand_inputs(&config.input.paths, config.input.reader.format)?.len();
    for i in 0..inputs {
        scratch.fetch(&format!("work/input-{i:05}.done.json"))?;
    }
    let dedup_dir = scratch.local.join("work/dedup");
    let mut written = Vec::new();
    let summary = match stage {
        Stage::Clean | Stage::Tokenize => anyhow::bail!("not a dedup stage"),
        Stage::Pairs => {
            let mine = task_partitions(config, task);
            fetch_for_pairs(config, &local, &scratch, task, inputs, &mine)?;
            let summary = pairs(&local, task)?;
            let files: Vec<(usize, PathBuf)> = mine
                .iter()
                .map(|&p| (p, dedup_dir.join(format!("pairs-{p:04}.bin"))))
                .collect();
            pack(&files, &scratch.local.join(pairs_pack(task)))?;
            written.push(pairs_pack(task));
            summary
        }
        Stage::Components => {
            for t in 0..task.count() {
                let rel = pairs_pack(TaskSlice::new(t, task.count())?);
                scratch.fetch(&rel)?;
                unpack(&scratch.local.join(&rel), &dedup_dir)?;
            }
            let summary = components(&local)?;
            written.extend((0..inputs).map(|i| format!("work/dedup/clusters-{i:05}.bin")));
            summary
        }
        Stage::Survivors => {
            let ext = match config.output.kept_format {
                KeptFormat::Jsonl => "jsonl.zst",
                KeptFormat::Parquet => "parquet",
            };
            for i in (0..inputs).filter(|&i| task.owns(i)) {
                scratch.fetch(&format!("work/input-{i:05}.rows.jsonl.zst"))?;
                scratch.fetch(&format!("work/dedup/clusters-{i:05}.bin"))?;
                let kept = format!("work/input-{i:05}.kept.jsonl");
                scratch.fetch(&format!("{kept}.zst"))?;
                decompress(
                    &scratch.local.join(format!("{kept}.zst")),
                    &scratch.local.join(&kept),
                )?;
                written.push(format!("kept/part-{i:05}.{ext}"));
                written.push(format!("docs-{i:05}.parquet"));
            }
            survivors(&local, task)?
        }
    };
    for rel in &written {
        scratch.upload(rel)?;
    }
    std::fs::remove_dir_all(&scratch.local).ok();
    Ok(summary)
}

/// What a pairs task reads: per input, the keys file's header and this task's partitions
/// `mine` (contiguous, so one range), then the signatures of the documents in a group.
fn fetch_for_pairs(
    config: &PipelineConfig,
    local: &PipelineConfig,
    scratch: &Scratch,
    task: TaskSlice,
    inputs: usize,
    mine: &[usize],
) -> Result<()> {
    let (Some(&first), Some(&last)) = (mine.first(), mine.last()) else {
        return Ok(());
    };
    let options = &config.dedup;
    let header_len = keys_header_len(options.minhash.bands);
    debug_assert!(mine.windows(2).all(|w| w[1] == w[0] + 1));
    debug_assert!(mine.iter().all(|&p| p < partitions(options.minhash.bands)));
    for i in 0..inputs {
        let rel = format!("work/dedup/keys-{i:05}.bin");
        let header_range = 0..header_len;
        let header = scratch.fetch_ranges(&rel, std::slice::from_ref(&header_range))?;
        let what = format!("{}/{rel}", scratch.url);
        let range = partition_bytes(&header[0], &what, first, last)?;
        scratch.fetch_ranges(&rel, std::slice::from_ref(&range))?;
    }
    let checks = options.minhash.min_similarity > 0.0
        && mine.iter().any(|&p| kind_of(p) == KeyKind::MinHash);
    if checks {
        let width = options.minhash.bands * options.minhash.rows;
        for (i, docs) in signatures_needed(local, task)?.iter().enumerate() {
            let ranges: Vec<Range<u64>> = docs.iter().map(|&d| signature_bytes(width, d)).collect();
            let ranges = storage::coalesce(&ranges, SIGNATURE_GAP);
            if !ranges.is_empty() {
                scratch.fetch_ranges(&format!("work/dedup/sigs-{i:05}.bin"), &ranges)?;
            }
        }
    }
    Ok(())
}
