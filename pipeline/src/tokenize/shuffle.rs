//! The global shuffle of `[tokenize.shuffle]`: a document goes to bucket
//! `hash(id, seed) mod buckets`, and bucket b, its documents ordered by a second seeded hash
//! of the id (ties in input order), is written as part b of the dataset
//! (`shard-BBBBB-IIIII.arrow`). Memory holds one bucket at a time.
//!
//! A split run does it in two stages. Tokenize task t writes its training documents, each
//! tagged with its input's number, to `work/shuffle-task-TTTTT-of-NNNNN.bin`: one zstd
//! frame per bucket, the buckets in the order of the shards tasks that read them (bucket b
//! is read by task b mod N), so that a shards task's buckets are one byte range of each
//! pack; the marker records every bucket's range. Shards task s then reads that range of
//! each of the N packs (one ranged GET each), and writes its buckets as their parts: the
//! tags put every bucket's documents back in input order, so the shards are the bytes the
//! one-process run writes, whatever N. `--finish` writes the manifest over them.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::LoadedTokenizer;
use super::encoded::{Encoded, read_record, write_record};
use super::parts::PartSink;
use super::pretrain::{TokenizeOptions, TokenizeSummary};
use super::task_markers::{
    TokenizeDone, check, is_remote, localized, read_done, resolved, scratch, task_markers,
};
use crate::readers::InputConfig;
use crate::shard::TaskSlice;
use crate::storage::{self, RemoteObject};

/// The bucket document `id` goes to.
pub(super) fn bucket_of(id: &str, seed: u64, buckets: usize) -> usize {
    (xxh3_64_with_seed(id.as_bytes(), seed) % buckets as u64) as usize
}

/// Orders one bucket's documents, given in input order with their inputs' numbers, as the
/// shuffle writes them: by a seeded hash of the id, then the id, then the input (documents
/// without an id field can share one across inputs); the sort is stable, so documents equal
/// in all three keep their order in the input.
pub(super) fn shuffle_bucket(docs: &mut [(u32, Encoded)], seed: u64) {
    docs.sort_by_cached_key(|(input, d)| {
        (
            xxh3_64_with_seed(d.id.as_bytes(), seed ^ 0x5bd1_e995),
            d.id.clone(),
            *input,
        )
    });
}

/// Makes room for the bucket files: up to two sets of `buckets` open at once (the training
/// and validation splits of a one-process run). The soft limit on open files is raised
/// toward the hard one when it is lower than they need (Linux's usual soft limit of 1,024 is
/// under a crawl's bucket count, the hard one rarely), else a clear error.
pub(super) fn allow_open_files(buckets: usize) -> Result<()> {
    let needed = 2 * buckets as u64 + 256;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur >= needed
    {
        return Ok(());
    }
    ensure!(
        limit.rlim_max >= needed,
        "tokenize.shuffle.buckets = {buckets} keeps up to {needed} files open, and this process may open at most {} (`ulimit -Hn`): use fewer buckets or raise the limit",
        limit.rlim_max
    );
    limit.rlim_cur = needed;
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        bail!(
            "raising the open files limit to {needed} for {buckets} shuffle buckets: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The pack tokenize task `task` writes its training documents to.
pub(super) fn pack_path(output: &Path, task: TaskSlice) -> PathBuf {
    output.join(format!(
        "work/shuffle-task-{:05}-of-{:05}.bin",
        task.index(),
        task.count()
    ))
}

/// A tokenize task's training documents by bucket: a local file per bucket while it
/// encodes, then one pack.
pub(super) struct TaskBuckets {
    dir: PathBuf,
    files: Vec<BufWriter<File>>,
    seed: u64,
}

impl TaskBuckets {
    /// Bucket files in `dir` (emptied first: a killed attempt's are not trusted).
    pub(super) fn create(dir: &Path, buckets: usize, seed: u64) -> Result<Self> {
        allow_open_files(buckets)?;
        std::fs::remove_dir_all(dir).ok();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = (0..buckets)
            .map(|b| {
                let path = dir.join(format!("{b:05}.bin"));
                File::create(&path)
                    .map(|f| BufWriter::with_capacity(1 << 16, f))
                    .with_context(|| format!("creating {}", path.display()))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            seed,
        })
    }

    /// Document `doc` of input number `input`.
    pub(super) fn push(&mut self, input: usize, doc: &Encoded) -> Result<()> {
        let b = bucket_of(&doc.id, self.seed, self.files.len());
        let file = &mut self.files[b];
        file.write_all(&(input as u32).to_le_bytes())?;
        write_record(file, doc)
    }

    /// Writes the pack `to` (a `.partial` renamed when complete and synced): bucket b's
    /// records as one zstd frame (none when it is empty), in the order the `tasks` shards
    /// tasks read them. Returns every bucket's byte range in the pack.
    pub(super) fn pack(self, to: &Path, tasks: usize) -> Result<Vec<[u64; 2]>> {
        let buckets = self.files.len();
        for mut f in self.files {
            f.flush()?;
        }
        let partial = to.with_extension("partial");
        let mut out = BufWriter::new(
            File::create(&partial).with_context(|| format!("creating {}", partial.display()))?,
        );
        let mut ranges = vec![[0u64; 2]; buckets];
        let mut at = 0u64;
        for b in read_order(buckets, tasks) {
            let path = self.dir.join(format!("{b:05}.bin"));
            let records =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let frame = if records.is_empty() {
                Vec::new()
            } else {
                zstd::bulk::compress(&records, 1)?
            };
            out.write_all(&frame)?;
            ranges[b] = [at, at + frame.len() as u64];
            at += frame.len() as u64;
            std::fs::remove_file(&path).ok();
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
            .and_then(|()| std::fs::rename(&partial, to))
            .with_context(|| format!("writing {}", to.display()))?;
        std::fs::remove_dir_all(&self.dir).ok();
        Ok(ranges)
    }
}

/// The buckets in the order of the shards tasks that read them: task 0's (0, N, 2N, ...),
/// then task 1's, and so on.
fn read_order(buckets: usize, tasks: usize) -> impl Iterator<Item = usize> {
    (0..tasks.min(buckets)).flat_map(move |s| (s..buckets).step_by(tasks))
}

/// Where one tokenize task's pack can be read locally: `file` holds the pack from byte
/// `base` on (the pack itself, or the range of it a remote shards task fetched).
struct PackPiece {
    file: File,
    path: PathBuf,
    base: u64,
    ranges: Vec<[u64; 2]>,
}

impl PackPiece {
    /// Bucket `b`'s documents in this pack, with their inputs' numbers.
    fn bucket(&self, b: usize) -> Result<Vec<(u32, Encoded)>> {
        let [start, end] = self.ranges[b];
        let mut frame = vec![0u8; (end - start) as usize];
        self.file
            .read_exact_at(&mut frame, start - self.base)
            .with_context(|| format!("reading {}", self.path.display()))?;
        if frame.is_empty() {
            return Ok(Vec::new());
        }
        let mut reader = BufReader::new(
            zstd::stream::read::Decoder::new(frame.as_slice())
                .with_context(|| format!("reading {}", self.path.display()))?,
        );
        let mut docs = Vec::new();
        let mut tag = [0u8; 4];
        loop {
            match reader.read_exact(&mut tag) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(docs),
                Err(e) => {
                    return Err(e).with_context(|| format!("reading {}", self.path.display()));
                }
            }
            let doc = read_record(&mut reader, &self.path)?
                .with_context(|| format!("{}: a record cut short", self.path.display()))?;
            docs.push((u32::from_le_bytes(tag), doc));
        }
    }
}

/// Shards task `task`: the buckets b with b mod N its index, from every tokenize task's
/// pack, written as their parts of the training split; then its marker
/// (`tasks/shards-...json` in the dataset's directory, listing the shards).
pub fn shards_task(
    input: &InputConfig,
    options: &TokenizeOptions,
    task: TaskSlice,
) -> Result<TokenizeSummary> {
    check(options)?;
    let Some(shuffle) = &options.shuffle else {
        bail!(
            "the shards stage is for [tokenize.shuffle]: without one the tokenize tasks write the shards"
        );
    };
    let config = resolved(input, options);
    let marker = options.output.join(task.marker("shards"));
    if storage::exists(&marker)? {
        tracing::info!("{} exists: this task is done", marker.display());
        return Ok(read_done(&marker, &config)?.summary);
    }
    let n = task.count();
    let mut ranges = Vec::with_capacity(n);
    for (t, done) in task_markers(options, &config, "tokenize", n)?
        .into_iter()
        .enumerate()
    {
        ensure!(
            done.buckets.len() == shuffle.buckets,
            "tokenize task {t} of {n} lists {} shuffle buckets, the config {}: rerun the tokenize tasks",
            done.buckets.len(),
            shuffle.buckets
        );
        ranges.push(done.buckets);
    }
    let owned: Vec<usize> = (0..shuffle.buckets).filter(|&b| task.owns(b)).collect();
    if owned.is_empty() {
        tracing::warn!(
            "shards task {} of {n} has no bucket to write: tokenize.shuffle.buckets ({}) is under the number of tasks",
            task.index(),
            shuffle.buckets
        );
    }
    let remote = is_remote(input, options);
    let scratch = scratch(options, &task.marker("shards"));
    let local = if remote {
        std::fs::remove_dir_all(&scratch).ok();
        localized(options, &scratch)?
    } else {
        options.clone()
    };
    let pieces = ranges
        .into_iter()
        .enumerate()
        .map(|(t, ranges)| {
            piece(
                options,
                TaskSlice::new(t, n)?,
                ranges,
                &owned,
                &scratch.join("packs"),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let tokenizer = LoadedTokenizer::load(&local.tokenizer)?;
    let mut shards = Vec::new();
    for &b in &owned {
        let mut docs = Vec::new();
        for piece in &pieces {
            docs.extend(piece.bucket(b)?);
        }
        shuffle_bucket(&mut docs, shuffle.seed);
        let mut sink = PartSink::new(
            &local.output.join("train"),
            tokenizer.spec.clone(),
            options.max_shard_tokens,
        );
        sink.start(b)?;
        for (_, doc) in &docs {
            sink.push(doc)?;
        }
        let written = sink.finish()?;
        // A remote dataset's shards go up bucket by bucket, each local copy removed after:
        // the scratch disk holds one bucket's shards, not the task's share.
        if storage::is_remote_path(&options.output) {
            for shard in &written {
                let copy = local.output.join("train").join(&shard.file);
                let url = options.output.join("train").join(&shard.file);
                RemoteObject::parse(&url.to_string_lossy())?.upload(&copy)?;
                std::fs::remove_file(&copy).ok();
            }
        }
        shards.extend(written);
    }
    let done = TokenizeDone {
        config,
        summary: TokenizeSummary::default(),
        shards,
        buckets: Vec::new(),
    };
    done.claim(&marker)?;
    if remote {
        std::fs::remove_dir_all(&scratch).ok();
    }
    Ok(done.summary)
}

/// Tokenize task `from`'s pack, readable locally for the buckets `owned` (which the pack
/// holds as one byte range): the pack itself when the output is local, else that range
/// fetched in one GET into `dir`.
fn piece(
    options: &TokenizeOptions,
    from: TaskSlice,
    ranges: Vec<[u64; 2]>,
    owned: &[usize],
    dir: &Path,
) -> Result<PackPiece> {
    let path = pack_path(&options.output, from);
    if !storage::is_remote_path(&options.output) {
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        return Ok(PackPiece {
            file,
            path,
            base: 0,
            ranges,
        });
    }
    let start = owned.iter().map(|&b| ranges[b][0]).min().unwrap_or(0);
    let end = owned.iter().map(|&b| ranges[b][1]).max().unwrap_or(0);
    let bytes = RemoteObject::parse(&path.to_string_lossy())?
        .read_ranges(std::slice::from_ref(&(start..end)))?
        .pop()
        .unwrap_or_default();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let local = dir.join(format!("{:05}.bin", from.index()));
    std::fs::write(&local, &bytes).with_context(|| format!("writing {}", local.display()))?;
    Ok(PackPiece {
        file: File::open(&local).with_context(|| format!("opening {}", local.display()))?,
        path,
        base: start,
        ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shards_task_reads_its_buckets_as_one_run_of_the_pack() {
        let order: Vec<usize> = read_order(7, 3).collect();
        assert_eq!(order, vec![0, 3, 6, 1, 4, 2, 5]);
        // More tasks than buckets: the extra tasks own none.
        assert_eq!(read_order(2, 5).collect::<Vec<_>>(), vec![0, 1]);
    }
}
