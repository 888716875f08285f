//! The dedup stages of a split run whose output is `s3://`: a stage fetches what it reads
//! into a scratch copy of the output (same relative paths), runs there as on a local output,
//! and uploads what it wrote; the caller writes its done marker after that.
//!
//! Reads are few and only of what a task needs ([`super::dedup_packs`]): a clean task
//! uploads three packs, so a later task reads a few objects per clean task whatever the
//! number of inputs. A `pairs` task reads, per clean task, the keys pack's header (the keys
//! files' headers and kept counts) and then its own partitions (one byte range: the pack is
//! partition-major and a task's partitions are contiguous), written at their offsets into
//! sparse local copies of the per-input files, which the local code reads unchanged. It
//! uploads its exact partitions' pairs files as one object (the first also every input's
//! kept count) and its groups file. A `ship` or `check` task reads its section of every
//! groups file (and a check task of every shipped file: one ranged read each, the offsets
//! and 64 KiB past them, and a second for the rest of a section that ends further) and the
//! signatures of its own documents it needs, nearby ones coalesced ([`SIGNATURE_GAP`]).
//! `components` reads the pairs packs and edges files whole;
//! it uploads one clusters pack per survivors task, and a survivors task reads it and its
//! clean task's kept pack (done records, rows, kept documents zstd-compressed): two objects.

use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use super::dedup_checks::{
    Needed, check, check_needs, checked_partition, checks_similarity, edges_file, forwarded_groups,
    groups_file, groups_writers, read_groups, ship, ship_needs, shipped_file,
};
use super::dedup_keys::{Numbering, task_partitions};
use super::dedup_packs::{
    KeysPack, SIGNATURE_GAP, keys_pack, local_sigs, pack_files, sigs_offsets, sigs_pack,
    survivors_pack, task_inputs, unpack_files, write_at, write_packs,
};
use super::dedup_sections::{SECTION_PREFETCH, section_header_len, section_range};
use super::dedup_tasks::{components, pairs, survivors};
use super::stages::Stage;
use super::summary::RunSummary;
use super::work::InputDone;
use crate::config::{KeptFormat, PipelineConfig};
use crate::dedup::partition::signature_bytes;
use crate::shard::TaskSlice;
use crate::storage::{self, RemoteObject};

/// zstd level of the kept documents in transit: 2.4x smaller on the bench corpus; the `zstd`
/// command takes 0.22 s for its 18 MB at this level (0.15 s at level 1 for 2.0x), against
/// about 3 CPU-s for the release clean run over it.
const KEPT_LEVEL: i32 = 3;
/// Window of the kept documents in transit (2^27 = 128 MiB, zstd's default decoding limit),
/// with long-distance matching: near-duplicates anywhere in an input's kept text are matched,
/// not only those in level 3's 2 MiB window. On the bench corpus (whose near-duplicates are
/// mostly within 2 MiB) 2.4% fewer bytes for 8% more compression CPU (`zstd -T1`, 200 MB of
/// kept text: 83.7 -> 81.7 MB, 1.97 -> 2.19 CPU-s); each side holds the window, at most
/// 128 MiB and no larger than the input's kept text.
const KEPT_WINDOW_LOG: u32 = 27;

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

    /// Every clean task's keys pack header (one ranged GET each), and from their kept
    /// counts the documents' numbering.
    fn keys_headers(&self, inputs: usize, tasks: usize, bands: usize) -> Result<KeysHeaders> {
        let mut packs = Vec::new();
        let mut kept = vec![0u64; inputs];
        for t in 0..tasks {
            let clean = TaskSlice::new(t, tasks)?;
            let owned = task_inputs(inputs, clean);
            if owned.is_empty() {
                continue;
            }
            let rel = keys_pack(clean);
            let header = 0..KeysPack::header_len(owned.len(), bands);
            let header = self
                .read_ranges(&rel, std::slice::from_ref(&header))?
                .remove(0);
            let pack = KeysPack::parse(header, owned, bands, &format!("{}/{rel}", self.url))?;
            for (&i, &k) in pack.inputs().iter().zip(pack.kept()) {
                kept[i] = k;
            }
            packs.push((clean, pack));
        }
        Ok(KeysHeaders {
            packs,
            numbering: Numbering::from_kept(kept),
        })
    }

    /// Fetches the pack `rel` and unpacks its files into `dir`; returns their names.
    fn fetch_pack(&self, rel: &str, dir: &Path) -> Result<Vec<String>> {
        self.fetch(rel)?;
        unpack_files(&self.local.join(rel), dir)
    }

    /// Section `task.index()` of the sectioned file `rel` (of `task.count()` sections):
    /// its header and the section's bytes, written at their offsets into a sparse local
    /// copy, where the local code reads them.
    fn fetch_section(&self, rel: &str, task: TaskSlice) -> Result<()> {
        let k = task.index();
        // The offsets and what follows them, in one GET (less when the file is shorter).
        let head = self
            .object(rel)?
            .read_prefix(section_header_len(k) + SECTION_PREFETCH)?;
        let name = format!("{}/{rel}", self.url);
        let range = section_range(&head, k, task.count(), &name)?;
        let local = self.local.join(rel);
        create_parent(&local)?;
        write_at(&local, 0, &head)?;
        // The rest of the section, when it ends past what came.
        let rest = range.start.max(head.len() as u64)..range.end;
        if rest.end > rest.start {
            let bytes = self
                .read_ranges(rel, std::slice::from_ref(&rest))?
                .remove(0);
            write_at(&local, rest.start, &bytes)?;
        }
        Ok(())
    }

    /// This task's section of every pairs task's groups file.
    fn fetch_groups(&self, config: &PipelineConfig, task: TaskSlice) -> Result<()> {
        for writer in groups_writers(config, task.count())? {
            self.fetch_section(&groups_file(writer), task)?;
        }
        Ok(())
    }

    /// The signatures `needed` of this task's documents, from its clean task's signatures
    /// pack (nearby ones coalesced, [`SIGNATURE_GAP`]), written into sparse local copies of
    /// the per-input signatures files.
    fn fetch_own_signatures(
        &self,
        config: &PipelineConfig,
        task: TaskSlice,
        needed: &Needed,
    ) -> Result<()> {
        let width = config.dedup.minhash.bands * config.dedup.minhash.rows;
        let work = self.local.join("work");
        let kept: Vec<u64> = needed.iter().map(|((_, _, kept), _)| *kept).collect();
        let offsets = sigs_offsets(&kept, width);
        // (input, document, its bytes in the pack), in pack order.
        let wanted: Vec<(usize, u64, Range<u64>)> = needed
            .iter()
            .zip(&offsets)
            .flat_map(|(((i, _, _), docs), &at)| {
                docs.iter().map(move |&d| {
                    let r = signature_bytes(width, d);
                    (*i, d, at + r.start..at + r.end)
                })
            })
            .collect();
        let ranges: Vec<Range<u64>> = wanted.iter().map(|w| w.2.clone()).collect();
        let ranges = storage::coalesce(&ranges, SIGNATURE_GAP);
        if ranges.is_empty() {
            return Ok(());
        }
        let blocks = self.read_ranges(&sigs_pack(task), &ranges)?;
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
        Ok(())
    }

    fn upload(&self, rel: &str) -> Result<()> {
        self.object(rel)?.upload(&self.local.join(rel))
    }
}

/// The keys pack headers of every clean task with an input, and the numbering they give.
struct KeysHeaders {
    packs: Vec<(TaskSlice, KeysPack)>,
    numbering: Numbering,
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

/// Uploads clean task `task`'s work files (`local`, its `OUT/work`) to `url` as three packs
/// (`super::dedup_packs`): keys, signatures, and for the survivors task its inputs' done
/// records, rows and kept documents (compressed). Not the staged inputs, nor the per-input
/// files (only this task read them, to write the packs).
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
    let mut files = Vec::new();
    for &i in &mine {
        let kept = local.join(format!("input-{i:05}.kept.jsonl"));
        let packed = local.join(format!("input-{i:05}.kept.jsonl.zst"));
        compress(&kept, &packed)?;
        for name in [
            format!("input-{i:05}.done.json"),
            format!("input-{i:05}.rows.jsonl.zst"),
            format!("input-{i:05}.kept.jsonl.zst"),
        ] {
            files.push((name.clone(), local.join(name)));
        }
    }
    let survivors = survivors_pack(task);
    let survivors = survivors.trim_start_matches("work/");
    pack_files(&files, &local.join(survivors))?;
    let base = url.trim_end_matches('/');
    for rel in [keys_pack(task), sigs_pack(task)] {
        let rel = rel.trim_start_matches("work/");
        RemoteObject::parse(&format!("{base}/{rel}"))?.upload(&local.join(rel))?;
    }
    RemoteObject::parse(&format!("{base}/{survivors}"))?.upload(&local.join(survivors))
}

fn compress(from: &Path, to: &Path) -> Result<()> {
    let mut input =
        std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let output = std::fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let mut encoder = zstd::Encoder::new(output, KEPT_LEVEL)?;
    encoder.long_distance_matching(true)?;
    encoder.window_log(KEPT_WINDOW_LOG)?;
    // The size known up front, zstd shrinks the window to it (a 25 MB input holds 32 MiB).
    encoder.set_pledged_src_size(Some(input.metadata()?.len()))?;
    std::io::copy(&mut input, &mut encoder)
        .and_then(|_| encoder.finish())
        .and_then(|mut f| f.flush())
        .with_context(|| format!("compressing {} into {}", from.display(), to.display()))
}

fn decompress(from: &Path, to: &Path) -> Result<()> {
    let input = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let mut output =
        std::fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let mut decoder = zstd::Decoder::new(input)?;
    decoder.window_log_max(KEPT_WINDOW_LOG)?;
    std::io::copy(&mut decoder, &mut output)
        .map(drop)
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

/// The object a components task uploads for survivors task `task`: its inputs' clusters
/// files and first document numbers.
fn clusters_pack(task: TaskSlice) -> String {
    format!(
        "work/dedup/clusters-task-{:05}-of-{:05}.bin",
        task.index(),
        task.count()
    )
}

/// The file in a clusters pack with its inputs' first document numbers (JSON).
const FIRST_DOCS: &str = "first-docs.json";
/// The file in the first pairs task's pack with every input's kept documents (JSON).
const KEPT: &str = "kept.json";

/// Runs task `task` of `stage` (not `clean`) for a remote output of `inputs` inputs.
pub(super) fn run_remote(
    config: &PipelineConfig,
    stage: Stage,
    task: TaskSlice,
    inputs: usize,
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
    let bands = config.dedup.minhash.bands;
    let work = scratch.local.join("work");
    let dedup_dir = work.join("dedup");
    let mut written = Vec::new();
    let summary = match stage {
        Stage::Clean | Stage::Tokenizer | Stage::Tokenize | Stage::Shards => {
            anyhow::bail!("not a dedup stage")
        }
        Stage::Pairs => {
            let headers = scratch.keys_headers(inputs, task.count(), bands)?;
            let mine = task_partitions(config, task);
            fetch_for_pairs(&scratch, &headers, &mine)?;
            let summary = pairs(&local, task, &headers.numbering)?;
            let mut files: Vec<(String, PathBuf)> = mine
                .iter()
                .filter(|&&p| !checked_partition(config, p))
                .map(|&p| format!("pairs-{p:04}.bin"))
                .map(|name| (name.clone(), dedup_dir.join(name)))
                .collect();
            if mine.iter().any(|&p| checked_partition(config, p)) {
                written.push(groups_file(task));
            }
            if task.index() == 0 {
                // The numbering, for `components` (which reads this pack anyway).
                let kept = dedup_dir.join(KEPT);
                std::fs::write(&kept, serde_json::to_vec(&headers.numbering.kept)?)
                    .with_context(|| format!("writing {}", kept.display()))?;
                files.push((KEPT.to_string(), kept));
            }
            pack_files(&files, &scratch.local.join(pairs_pack(task)))?;
            written.push(pairs_pack(task));
            summary
        }
        Stage::Ship => {
            scratch.fetch_groups(config, task)?;
            let sections = read_groups(&local, task)?;
            scratch.fetch_own_signatures(config, task, &ship_needs(&sections)?)?;
            ship(&local, task, &sections)?;
            written.push(shipped_file(task));
            RunSummary::default()
        }
        Stage::Check => {
            for t in 0..task.count() {
                scratch.fetch_section(&shipped_file(TaskSlice::new(t, task.count())?), task)?;
            }
            let groups = forwarded_groups(&local, task)?;
            scratch.fetch_own_signatures(config, task, &check_needs(&groups)?)?;
            check(&local, task, &groups)?;
            written.push(edges_file(task));
            RunSummary::default()
        }
        Stage::Components => {
            for t in 0..task.count() {
                let slice = TaskSlice::new(t, task.count())?;
                scratch.fetch_pack(&pairs_pack(slice), &dedup_dir)?;
                if checks_similarity(config) {
                    scratch.fetch(&edges_file(slice))?;
                }
            }
            let path = dedup_dir.join(KEPT);
            let kept = read_numbers(&path)?;
            ensure!(
                kept.len() == inputs,
                "{}: kept counts of {} inputs, {inputs} listed",
                path.display(),
                kept.len()
            );
            let numbering = Numbering::from_kept(kept);
            let summary = components(&local, task.count(), &numbering)?;
            // One pack per survivors task: its inputs' clusters and first document numbers.
            for t in 0..task.count() {
                let slice = TaskSlice::new(t, task.count())?;
                let owned = task_inputs(inputs, slice);
                let first: Vec<u64> = owned.iter().map(|&i| numbering.first_doc[i]).collect();
                let first_docs = dedup_dir.join(format!("first-docs-{t:05}.json"));
                std::fs::write(&first_docs, serde_json::to_vec(&first)?)
                    .with_context(|| format!("writing {}", first_docs.display()))?;
                let mut files: Vec<(String, PathBuf)> = owned
                    .iter()
                    .map(|&i| format!("clusters-{i:05}.bin"))
                    .map(|name| (name.clone(), dedup_dir.join(name)))
                    .collect();
                files.push((FIRST_DOCS.to_string(), first_docs));
                pack_files(&files, &scratch.local.join(clusters_pack(slice)))?;
                written.push(clusters_pack(slice));
            }
            summary
        }
        Stage::Survivors => {
            let ext = match config.output.kept_format {
                KeptFormat::Jsonl => "jsonl.zst",
                KeptFormat::Parquet => "parquet",
            };
            let owned = task_inputs(inputs, task);
            let mut mine = Vec::with_capacity(owned.len());
            if !owned.is_empty() {
                scratch.fetch_pack(&survivors_pack(task), &work)?;
                scratch.fetch_pack(&clusters_pack(task), &dedup_dir)?;
                let path = dedup_dir.join(FIRST_DOCS);
                let first = read_numbers(&path)?;
                ensure!(
                    first.len() == owned.len(),
                    "{}/{}: {} first document numbers for the task's {} inputs",
                    scratch.url,
                    clusters_pack(task),
                    first.len(),
                    owned.len()
                );
                for (&i, first) in owned.iter().zip(first) {
                    let path = work.join(format!("input-{i:05}.done.json"));
                    let done: InputDone = std::fs::read(&path)
                        .map_err(anyhow::Error::from)
                        .and_then(|b| Ok(serde_json::from_slice(&b)?))
                        .with_context(|| format!("reading {}", path.display()))?;
                    let kept = work.join(format!("input-{i:05}.kept.jsonl"));
                    decompress(&kept.with_extension("jsonl.zst"), &kept)?;
                    written.push(format!("kept/part-{i:05}.{ext}"));
                    written.push(format!("docs-{i:05}.parquet"));
                    mine.push((i, done, first));
                }
            }
            survivors(&local, &mine)?
        }
    };
    for rel in &written {
        scratch.upload(rel)?;
    }
    std::fs::remove_dir_all(&scratch.local).ok();
    Ok(summary)
}

/// What a pairs task reads after the keys pack headers (`headers`): per clean task this
/// task's partitions `mine` (contiguous, so one range), written into sparse local copies of
/// the per-input keys files.
fn fetch_for_pairs(scratch: &Scratch, headers: &KeysHeaders, mine: &[usize]) -> Result<()> {
    let (Some(&first), Some(&last)) = (mine.first(), mine.last()) else {
        return Ok(());
    };
    debug_assert!(mine.windows(2).all(|w| w[1] == w[0] + 1));
    let work = scratch.local.join("work");
    for (clean, pack) in &headers.packs {
        let range = pack.range(first, last);
        let bytes = scratch
            .read_ranges(&keys_pack(*clean), std::slice::from_ref(&range))?
            .remove(0);
        pack.scatter(&bytes, first, last, &work)?;
    }
    Ok(())
}

/// A JSON list of numbers a stage wrote into its pack (kept counts, first document numbers).
fn read_numbers(path: &Path) -> Result<Vec<u64>> {
    std::fs::read(path)
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(serde_json::from_slice(&b)?))
        .with_context(|| format!("reading {}", path.display()))
}
