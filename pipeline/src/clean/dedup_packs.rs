//! How a clean task's dedup work files travel through object storage: packed per task, so
//! that a later task reads a handful of objects per clean task whatever the number of
//! inputs, and each in one or two large ranged reads. On disk (and in a local run) the files
//! stay per input; a remote task unpacks what it fetched into sparse local copies of them.
//!
//! - `work/dedup/keys-task-TTTTT-of-NNNNN.bin`: the keys files of the task's inputs (in
//!   input order): their headers, each input's kept documents (u64), then partition by
//!   partition every input's triples. The header length follows from the config and the
//!   task's input count, and a run of contiguous partitions is one byte range, whatever the
//!   inputs; the kept counts number the documents, so a later stage needs no done records.
//! - `work/dedup/sigs-task-TTTTT-of-NNNNN.bin`: the signatures files of the task's inputs,
//!   one after another (each `4 + kept * width * 2` bytes: u16 check hashes).
//! - `work/kept-task-TTTTT-of-NNNNN.bin`: what the survivors task of the same index reads, as
//!   files packed by name ([`pack_files`]): its inputs' done records, rows and kept
//!   documents (compressed).

use std::io::{BufWriter, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use crate::dedup::partition::{HASH_BYTES, TRIPLE_BYTES as TRIPLE, keys_header_len, partitions};
use crate::shard::TaskSlice;

/// Needed signatures of one signatures pack closer than this are read in one request: a
/// signature is a few hundred bytes, so reading documents one by one would be a GET each.
pub const SIGNATURE_GAP: u64 = 64 << 10;
/// The inputs (numbers in the sorted listing) clean task `task` owns, ascending.
pub(super) fn task_inputs(inputs: usize, task: TaskSlice) -> Vec<usize> {
    (0..inputs).filter(|&i| task.owns(i)).collect()
}

pub(super) fn survivors_pack(task: TaskSlice) -> String {
    format!(
        "work/kept-task-{:05}-of-{:05}.bin",
        task.index(),
        task.count()
    )
}

pub(super) fn keys_pack(task: TaskSlice) -> String {
    format!(
        "work/dedup/keys-task-{:05}-of-{:05}.bin",
        task.index(),
        task.count()
    )
}

pub(super) fn sigs_pack(task: TaskSlice) -> String {
    format!(
        "work/dedup/sigs-task-{:05}-of-{:05}.bin",
        task.index(),
        task.count()
    )
}

fn done_file(work: &Path, input: usize) -> PathBuf {
    work.join(format!("input-{input:05}.done.json"))
}

fn keys_file(work: &Path, input: usize) -> PathBuf {
    work.join(format!("dedup/keys-{input:05}.bin"))
}

fn sigs_file(work: &Path, input: usize) -> PathBuf {
    work.join(format!("dedup/sigs-{input:05}.bin"))
}

/// Writes `bytes` at `at` of `path` (created if missing, never truncated: a sparse copy).
pub(super) fn write_at(path: &Path, at: u64, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all_at(bytes, at)
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes the three packs of `inputs` from the work directory `work` into it.
pub(super) fn write_packs(
    work: &Path,
    task: TaskSlice,
    inputs: &[usize],
    bands: usize,
) -> Result<()> {
    // A task with no input (more tasks than inputs) writes empty packs.
    let dedup = work.join("dedup");
    std::fs::create_dir_all(&dedup).with_context(|| format!("creating {}", dedup.display()))?;
    let kept: Vec<u64> = inputs
        .iter()
        .map(|&i| {
            let path = done_file(work, i);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let record: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            record["kept"]
                .as_u64()
                .with_context(|| format!("{} has no kept count", path.display()))
        })
        .collect::<Result<_>>()?;
    let to = work.join(sigs_pack(task).trim_start_matches("work/"));
    let mut out = BufWriter::new(
        std::fs::File::create(&to).with_context(|| format!("creating {}", to.display()))?,
    );
    for &i in inputs {
        let path = sigs_file(work, i);
        let mut file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        std::io::copy(&mut file, &mut out).with_context(|| format!("writing {}", to.display()))?;
    }
    out.flush()?;
    // Keys: every header, then partition-major, copied from the files in blocks (a clean
    // task's keys may be larger than memory should hold).
    let header = keys_header_len(bands) as usize;
    let mut files = Vec::with_capacity(inputs.len());
    for &i in inputs {
        let path = keys_file(work, i);
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut head = vec![0u8; header];
        file.read_exact_at(&mut head, 0)
            .with_context(|| format!("{} has no header", path.display()))?;
        let starts = parse_starts(&head, bands, &path.display().to_string())?;
        files.push((path, file, head, starts));
    }
    let to = work.join(keys_pack(task).trim_start_matches("work/"));
    let mut out = BufWriter::new(
        std::fs::File::create(&to).with_context(|| format!("creating {}", to.display()))?,
    );
    for (_, _, head, _) in &files {
        out.write_all(head)?;
    }
    for k in &kept {
        out.write_all(&k.to_le_bytes())?;
    }
    let mut block = vec![0u8; 1 << 20];
    for p in 0..partitions(bands) {
        for (path, file, _, s) in &files {
            let (mut at, end) = (
                header as u64 + s[p] * TRIPLE,
                header as u64 + s[p + 1] * TRIPLE,
            );
            while at < end {
                let n = ((end - at) as usize).min(block.len());
                file.read_exact_at(&mut block[..n], at)
                    .with_context(|| format!("{} is shorter than its index", path.display()))?;
                out.write_all(&block[..n])?;
                at += n as u64;
            }
        }
    }
    out.flush()
        .with_context(|| format!("writing {}", to.display()))
}

/// Each partition's first triple (and the end) from a keys file's header.
fn parse_starts(header: &[u8], bands: usize, what: &str) -> Result<Vec<u64>> {
    let count = partitions(bands);
    ensure!(
        header.len() as u64 == keys_header_len(bands),
        "{what}: the keys header is {} bytes, the config's {}",
        header.len(),
        keys_header_len(bands)
    );
    let stored = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    ensure!(
        stored == count,
        "{what} has {stored} partitions, the config {count}: rerun the clean stage"
    );
    let starts: Vec<u64> = header[4..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    ensure!(
        starts.first() == Some(&0) && starts.windows(2).all(|w| w[0] <= w[1]),
        "{what}: the partition index is not ascending"
    );
    Ok(starts)
}

/// Where a keys pack's partitions lie, from its header.
pub(super) struct KeysPack {
    inputs: Vec<usize>,
    bands: usize,
    headers: Vec<u8>,
    starts: Vec<Vec<u64>>,
    kept: Vec<u64>,
}

impl KeysPack {
    /// Bytes of the header of a pack of `inputs` inputs: their keys files' headers and kept
    /// counts.
    pub(super) fn header_len(inputs: usize, bands: usize) -> u64 {
        inputs as u64 * (keys_header_len(bands) + 8)
    }

    /// The inputs of the pack, ascending.
    pub(super) fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    /// Each input's kept documents.
    pub(super) fn kept(&self) -> &[u64] {
        &self.kept
    }

    pub(super) fn parse(
        headers: Vec<u8>,
        inputs: Vec<usize>,
        bands: usize,
        what: &str,
    ) -> Result<Self> {
        let len = keys_header_len(bands) as usize;
        ensure!(
            headers.len() as u64 == Self::header_len(inputs.len(), bands),
            "{what}: header of {} bytes, {} expected",
            headers.len(),
            Self::header_len(inputs.len(), bands)
        );
        let (keys, kept) = headers.split_at(len * inputs.len());
        let starts = keys
            .chunks_exact(len)
            .map(|h| parse_starts(h, bands, what))
            .collect::<Result<_>>()?;
        let kept = kept
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok(Self {
            inputs,
            bands,
            headers,
            starts,
            kept,
        })
    }

    /// Offset of partition `p`'s triples of the `j`-th input (`p` = the partition count:
    /// the end, with `j` = 0).
    fn offset(&self, p: usize, j: usize) -> u64 {
        // Every input's partitions before p (they start at triple 0), then this
        // partition's triples of the inputs before j.
        let before: u64 = self.starts.iter().map(|s| s[p]).sum();
        let here: u64 = self.starts[..j].iter().map(|s| s[p + 1] - s[p]).sum();
        Self::header_len(self.inputs.len(), self.bands) + (before + here) * TRIPLE
    }

    /// The byte range of partitions `first..=last` of every input.
    pub(super) fn range(&self, first: usize, last: usize) -> Range<u64> {
        self.offset(first, 0)..self.offset(last + 1, 0)
    }

    /// Writes each input's header and its part of `bytes` (this pack's `range(first, last)`)
    /// into sparse local keys files under `work`.
    pub(super) fn scatter(
        &self,
        bytes: &[u8],
        first: usize,
        last: usize,
        work: &Path,
    ) -> Result<()> {
        let len = keys_header_len(self.bands) as usize;
        let base = self.offset(first, 0);
        let header = len as u64;
        for (j, &input) in self.inputs.iter().enumerate() {
            let path = keys_file(work, input);
            write_at(&path, 0, &self.headers[j * len..(j + 1) * len])?;
            for p in first..=last {
                let s = &self.starts[j];
                let at = (self.offset(p, j) - base) as usize;
                let n = ((s[p + 1] - s[p]) * TRIPLE) as usize;
                let slice = bytes
                    .get(at..at + n)
                    .context("a keys pack range came back short")?;
                write_at(&path, header + s[p] * TRIPLE, slice)?;
            }
        }
        Ok(())
    }
}

/// Offsets of each input's signatures file in a signatures pack: `kept` documents each.
pub(super) fn sigs_offsets(kept: &[u64], width: usize) -> Vec<u64> {
    let mut at = 0;
    kept.iter()
        .map(|&k| {
            let start = at;
            at += 4 + k * width as u64 * HASH_BYTES;
            start
        })
        .collect()
}

/// Packs named files as: count (u32), then per file its name (u16 length, UTF-8) and byte
/// length (u64), then the files' bytes (streamed: they may be large). One object instead of
/// one per file: one request to write, one to read.
pub(super) fn pack_files(files: &[(String, PathBuf)], to: &Path) -> Result<()> {
    let mut head = (files.len() as u32).to_le_bytes().to_vec();
    for (name, path) in files {
        let len = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        head.extend_from_slice(&(name.len() as u16).to_le_bytes());
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(&len.to_le_bytes());
    }
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let mut out = BufWriter::new(file);
    out.write_all(&head)?;
    for (_, path) in files {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        std::io::copy(&mut file, &mut out).with_context(|| format!("writing {}", to.display()))?;
    }
    out.flush()
        .with_context(|| format!("writing {}", to.display()))
}

/// Writes each file of a [`pack_files`] pack into `dir` under its name (streamed, each
/// through a temp name); returns the names.
pub(super) fn unpack_files(pack: &Path, dir: &Path) -> Result<Vec<String>> {
    use std::io::Read;
    let truncated = || format!("{} is truncated", pack.display());
    let mut input = std::io::BufReader::new(
        std::fs::File::open(pack).with_context(|| format!("opening {}", pack.display()))?,
    );
    let mut word = [0u8; 4];
    input.read_exact(&mut word).with_context(truncated)?;
    let mut entries = Vec::new();
    for _ in 0..u32::from_le_bytes(word) {
        let mut short = [0u8; 2];
        input.read_exact(&mut short).with_context(truncated)?;
        let mut name = vec![0u8; u16::from_le_bytes(short) as usize];
        input.read_exact(&mut name).with_context(truncated)?;
        let name = String::from_utf8(name)
            .ok()
            .filter(|n| !n.is_empty() && !n.starts_with('/') && !n.contains(".."))
            .with_context(|| format!("{}: a file name is not a relative path", pack.display()))?;
        let mut long = [0u8; 8];
        input.read_exact(&mut long).with_context(truncated)?;
        entries.push((name, u64::from_le_bytes(long)));
    }
    for (name, len) in &entries {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let tmp = path.with_extension("unpacking");
        let mut out = BufWriter::new(
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        let copied = std::io::copy(&mut (&mut input).take(*len), &mut out)
            .with_context(|| format!("writing {}", tmp.display()))?;
        ensure!(copied == *len, "{}", truncated());
        out.flush()?;
        drop(out);
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming {}", tmp.display()))?;
    }
    Ok(entries.into_iter().map(|(name, _)| name).collect())
}

/// The path of input `input`'s signatures file under `work` (for the unpacking side).
pub(super) fn local_sigs(work: &Path, input: usize) -> PathBuf {
    sigs_file(work, input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::partition::{read_partition, write_keys_file, write_signatures};

    /// Three inputs' keys files packed, then a run of partitions read back from the pack
    /// (header, then one range) into sparse copies: those partitions read as the originals.
    #[test]
    fn a_range_of_a_keys_pack_gives_back_each_inputs_partitions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        let bands = 3;
        let task = TaskSlice::new(1, 2).expect("slice");
        let inputs = [1, 3, 5];
        for (n, &i) in inputs.iter().enumerate() {
            let docs = 5 + 7 * n as u64;
            let key = |d: u64, b: u64| {
                d.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .rotate_left(b as u32 * 7 + 3)
            };
            let exact: Vec<u64> = (0..docs).map(|d| key(d, 9)).collect();
            let near: Vec<Vec<u64>> = (0..docs)
                .map(|d| (0..bands as u64).map(|b| key(d, b)).collect())
                .collect();
            write_keys_file(&keys_file(&work, i), bands, Some(&exact), Some(&near)).expect("keys");
            let sigs: Vec<Vec<u16>> = (0..docs).map(|d| vec![d as u16; 4]).collect();
            write_signatures(&sigs_file(&work, i), 4, &sigs).expect("sigs");
            let done = format!("{{\"input\": {i}, \"kept\": {docs}}}");
            std::fs::write(done_file(&work, i), done).expect("done");
        }
        write_packs(&work, task, &inputs, bands).expect("packs");

        let pack =
            std::fs::read(work.join(keys_pack(task).trim_start_matches("work/"))).expect("pack");
        let header = KeysPack::header_len(inputs.len(), bands) as usize;
        let index = KeysPack::parse(pack[..header].to_vec(), inputs.to_vec(), bands, "pack")
            .expect("index");
        let (first, last) = (3, 9);
        let range = index.range(first, last);
        let copy = dir.path().join("copy");
        index
            .scatter(
                &pack[range.start as usize..range.end as usize],
                first,
                last,
                &copy,
            )
            .expect("scatter");
        let mut compared = 0;
        for &i in &inputs {
            for p in first..=last {
                let want = read_partition(&keys_file(&work, i), p, 100).expect("original");
                let got = read_partition(&keys_file(&copy, i), p, 100).expect("copy");
                assert_eq!(got, want, "input {i} partition {p}");
                compared += want.len();
            }
        }
        // 36 documents, 4 keys each: most fall in partitions 3..=9.
        assert!(compared > 40, "{compared} triples compared");
        // Every partition at once is the whole body.
        let all = index.range(0, partitions(bands) - 1);
        assert_eq!((all.start as usize, all.end as usize), (header, pack.len()));

        // Signatures: the packs are the files one after another, at the offsets the
        // documents' counts give; done records come back as written.
        let sigs = std::fs::read(work.join(sigs_pack(task).trim_start_matches("work/")))
            .expect("sigs pack");
        let offsets = sigs_offsets(&[5, 12, 19], 4);
        assert_eq!(offsets, [0, 4 + 5 * 8, 8 + 17 * 8]);
        assert_eq!(sigs.len() as u64, 12 + 36 * 8);
        assert_eq!(index.kept(), [5, 12, 19]);
        assert_eq!(index.inputs(), inputs);

        // Named files round-trip through one pack.
        let named = [
            ("input-00003.done.json".to_string(), done_file(&work, 3)),
            ("dedup/sigs-00005.bin".to_string(), sigs_file(&work, 5)),
        ];
        let packed = dir.path().join("named.bin");
        pack_files(&named, &packed).expect("pack");
        let out = dir.path().join("unpacked");
        let names = unpack_files(&packed, &out).expect("unpack");
        assert_eq!(names, [named[0].0.clone(), named[1].0.clone()]);
        for (name, path) in &named {
            assert_eq!(
                std::fs::read(out.join(name)).expect("unpacked"),
                std::fs::read(path).expect("original"),
                "{name}"
            );
        }
        // A pack cut short is refused, naming the pack.
        let bytes = std::fs::read(&packed).expect("pack");
        std::fs::write(&packed, &bytes[..bytes.len() - 3]).expect("cut");
        let err = unpack_files(&packed, &dir.path().join("cut")).expect_err("truncated");
        assert!(format!("{err:#}").contains("truncated"), "{err:#}");
    }
}
