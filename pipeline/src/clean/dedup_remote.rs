//! The dedup stages of a split run whose output is `s3://`: a stage fetches what it reads
//! into a scratch copy of the output (same relative paths), runs there as on a local output,
//! and uploads what it wrote; the caller writes its done marker after that.
//!
//! Reads are ranged and only of what a task needs. A clean task uploads its inputs' done
//! records, keys and signatures packed per task ([`super::dedup_packs`]), so a later task
//! reads a few objects per clean task whatever the number of inputs. A `pairs` task reads,
//! per clean task, the keys pack's header and then its own partitions (one byte range: the
//! pack is partition-major and a task's partitions are contiguous), and only the signatures
//! of documents in a group of its partitions, nearby ones coalesced ([`SIGNATURE_GAP`]);
//! both are written at their offsets into sparse local copies of the per-input files, which
//! the local code reads unchanged. A `pairs` task uploads its partitions' pairs files as one
//! object, which `components` reads whole and splits back. The kept documents travel
//! zstd-compressed ([`upload_work`]); `survivors` decompresses them.

use std::io::{Read as _, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use super::dedup_packs::{
    KeysPack, done_pack, keys_pack, local_sigs, sigs_offsets, sigs_pack, task_inputs, unpack_done,
    write_at, write_packs,
};
use super::dedup_tasks::{components, pairs, signatures_needed, survivors, task_partitions};
use super::stages::Stage;
use super::summary::RunSummary;
use crate::config::{KeptFormat, PipelineConfig};
use crate::dedup::partition::{KeyKind, kind_of, signature_bytes};
use crate::readers::expand_inputs;
use crate::shard::TaskSlice;
use crate::storage::{self, RemoteObject};

/// Needed signatures of one signatures pack closer than this are read in one request: a
/// signature is a few hundred bytes, so reading documents one by one would be a GET each.
pub const SIGNATURE_GAP: u64 = 64 << 10;
/// zstd level of the kept documents in transit: 2.4x smaller on the bench corpus; the `zstd`
/// command takes 0.22 s for its 18 MB at this level (0.15 s at level 1 for 2.0x), against
/// about 3 CPU-s for the release clean run over it.
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

    /// The bytes of `ranges` of `rel`, checked to be whole.
    fn read_ranges(&self, rel: &str, ranges: &[Range<u64>]) -> Result<Vec<Vec<u8>>> {
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
        }
        Ok(blocks)
    }

    /// Every clean task's done records, unpacked into the local work directory.
    fn fetch_done(&self, inputs: usize, tasks: usize) -> Result<()> {
        for t in 0..tasks {
            let task = TaskSlice::new(t, tasks)?;
            let mine = task_inputs(inputs, task);
            if mine.is_empty() {
                continue;
            }
            let rel = done_pack(task);
            let pack = self.object(&rel)?.read_all()?;
            unpack_done(
                &pack,
                &mine,
                &self.local.join("work"),
                &format!("{}/{rel}", self.url),
            )?;
        }
        Ok(())
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

/// Uploads clean task `task`'s work files (`local`, its `OUT/work`) to `url`: its inputs'
/// done records, keys and signatures as packs (`super::dedup_packs`), each input's kept
/// documents compressed (`input-NNNNN.kept.jsonl.zst`) and its rows; not the staged inputs
/// nor the per-document keys (only this task read them, to write the keys files).
pub(super) fn upload_work(
    config: &PipelineConfig,
    task: TaskSlice,
    local: &Path,
    url: &str,
) -> Result<()> {
    // This task's inputs are those it wrote a done record for (listing the inputs again
    // would be one more request).
    let mine: Vec<usize> = storage::list_files(local)?
        .iter()
        .filter_map(|rel| {
            rel.strip_prefix("input-")?
                .strip_suffix(".done.json")?
                .parse()
                .ok()
        })
        .collect();
    ensure!(
        mine.iter().all(|&i| task.owns(i)),
        "{} holds done records of inputs task {} of {} does not own: {mine:?}",
        local.display(),
        task.index(),
        task.count()
    );
    write_packs(local, task, &mine, config.dedup.minhash.bands)?;
    let base = url.trim_end_matches('/');
    for rel in storage::list_files(local)? {
        let per_input_dedup = rel.starts_with("dedup/") && !rel.contains("-task-");
        if rel.starts_with("inputs/")
            || per_input_dedup
            || rel.ends_with(".keys.bin")
            || rel.ends_with(".lock")
        {
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
/// (u64), then the files' bytes (streamed: a task's pairs may be large).
fn pack(files: &[(usize, PathBuf)], to: &Path) -> Result<()> {
    let mut head = (files.len() as u32).to_le_bytes().to_vec();
    for (p, path) in files {
        let len = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        head.extend_from_slice(&(*p as u32).to_le_bytes());
        head.extend_from_slice(&len.to_le_bytes());
    }
    let file = std::fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let mut out = std::io::BufWriter::new(file);
    out.write_all(&head)?;
    for (_, path) in files {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        std::io::copy(&mut file, &mut out).with_context(|| format!("writing {}", to.display()))?;
    }
    out.flush()
        .with_context(|| format!("writing {}", to.display()))
}

/// Writes each pairs file of a pack into `dir` (streamed).
fn unpack(pack: &Path, dir: &Path) -> Result<()> {
    let truncated = || format!("{} is truncated", pack.display());
    let mut input = std::io::BufReader::new(
        std::fs::File::open(pack).with_context(|| format!("opening {}", pack.display()))?,
    );
    let mut word = [0u8; 4];
    input.read_exact(&mut word).with_context(truncated)?;
    let mut head = vec![0u8; 12 * u32::from_le_bytes(word) as usize];
    input.read_exact(&mut head).with_context(truncated)?;
    for entry in head.chunks_exact(12) {
        let p = u32::from_le_bytes(entry[..4].try_into()?);
        let len = u64::from_le_bytes(entry[4..].try_into()?);
        let path = dir.join(format!("pairs-{p:04}.bin"));
        let tmp = path.with_extension("unpacking");
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        let copied = std::io::copy(&mut (&mut input).take(len), &mut out)
            .with_context(|| format!("writing {}", tmp.display()))?;
        ensure!(copied == len, "{}", truncated());
        out.flush()?;
        drop(out);
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming {}", tmp.display()))?;
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
    scratch.fetch_done(inputs, task.count())?;
    let dedup_dir = scratch.local.join("work/dedup");
    let mut written = Vec::new();
    let summary = match stage {
        Stage::Clean | Stage::Tokenizer | Stage::Tokenize => anyhow::bail!("not a dedup stage"),
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

/// What a pairs task reads: per clean task, the keys pack's header and this task's
/// partitions `mine` (contiguous, so one range), then the signatures of the documents in a
/// group, coalesced; all written into sparse local copies of the per-input files.
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
    debug_assert!(mine.windows(2).all(|w| w[1] == w[0] + 1));
    let options = &config.dedup;
    let bands = options.minhash.bands;
    let work = scratch.local.join("work");
    let clean_tasks: Vec<TaskSlice> = (0..task.count())
        .map(|t| TaskSlice::new(t, task.count()))
        .collect::<Result<_>>()?;
    for &clean in &clean_tasks {
        let owned = task_inputs(inputs, clean);
        if owned.is_empty() {
            continue;
        }
        let rel = keys_pack(clean);
        let header = 0..KeysPack::header_len(owned.len(), bands);
        let header = scratch
            .read_ranges(&rel, std::slice::from_ref(&header))?
            .remove(0);
        let pack = KeysPack::parse(header, owned, bands, &format!("{}/{rel}", scratch.url))?;
        let range = pack.range(first, last);
        let bytes = scratch
            .read_ranges(&rel, std::slice::from_ref(&range))?
            .remove(0);
        pack.scatter(&bytes, first, last, &work)?;
    }
    let checks = options.minhash.min_similarity > 0.0
        && mine.iter().any(|&p| kind_of(p) == KeyKind::MinHash);
    if !checks {
        return Ok(());
    }
    let width = options.minhash.bands * options.minhash.rows;
    let needed = signatures_needed(local, task)?;
    let kept = |i: usize| -> Result<u64> {
        let path = work.join(format!("input-{i:05}.done.json"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let done: super::work::InputDone =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(done.kept)
    };
    for &clean in &clean_tasks {
        let owned = task_inputs(inputs, clean);
        let counts: Vec<u64> = owned.iter().map(|&i| kept(i)).collect::<Result<_>>()?;
        let offsets = sigs_offsets(&counts, width);
        // (input, document, its bytes in the pack), in pack order.
        let wanted: Vec<(usize, u64, Range<u64>)> = owned
            .iter()
            .zip(&offsets)
            .flat_map(|(&i, &at)| {
                needed[i].iter().map(move |&d| {
                    let r = signature_bytes(width, d);
                    (i, d, at + r.start..at + r.end)
                })
            })
            .collect();
        let ranges: Vec<Range<u64>> = wanted.iter().map(|w| w.2.clone()).collect();
        let ranges = storage::coalesce(&ranges, SIGNATURE_GAP);
        if ranges.is_empty() {
            continue;
        }
        let blocks = scratch.read_ranges(&sigs_pack(clean), &ranges)?;
        for (input, doc, r) in wanted {
            let b = ranges.partition_point(|x| x.end <= r.start);
            let at = (r.start - ranges[b].start) as usize;
            let bytes = blocks[b]
                .get(at..at + (r.end - r.start) as usize)
                .context("a signatures range came back short")?;
            write_at(
                &local_sigs(&work, input),
                signature_bytes(width, doc).start,
                bytes,
            )?;
        }
    }
    Ok(())
}
