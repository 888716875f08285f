//! Sorted runs of (band, key, doc) triples on disk and their k-way merge.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rayon::slice::ParallelSliceMut;

type Triple = (u32, u64, u64);
const TRIPLE_BYTES: usize = 4 + 8 + 8;

/// Buffers triples and spills them as sorted runs.
#[derive(Debug)]
pub struct RunWriter {
    dir: PathBuf,
    buffer: Vec<Triple>,
    capacity: usize,
    runs: Vec<PathBuf>,
}

impl RunWriter {
    pub fn new(dir: &Path, capacity: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            buffer: Vec::with_capacity(capacity.min(1 << 20)),
            capacity: capacity.max(1),
            runs: Vec::new(),
        })
    }

    pub fn push(&mut self, band: u32, key: u64, doc: u64) -> Result<()> {
        self.buffer.push((band, key, doc));
        if self.buffer.len() >= self.capacity {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.buffer.par_sort_unstable();
        let path = self.dir.join(format!("run-{:05}.bin", self.runs.len()));
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        for &(band, key, doc) in &self.buffer {
            out.write_all(&band.to_le_bytes())?;
            out.write_all(&key.to_le_bytes())?;
            out.write_all(&doc.to_le_bytes())?;
        }
        out.flush()
            .with_context(|| format!("writing {}", path.display()))?;
        self.buffer.clear();
        self.runs.push(path);
        Ok(())
    }

    /// Number of runs written so far (for the summary).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Merges every run in key order and calls `join(group, first, other)` for each document
    /// that shares a (band, key) with an earlier one; `group` numbers the (band, key) groups
    /// in merge order. Deletes the runs.
    pub fn merge(mut self, mut join: impl FnMut(u64, u64, u64)) -> Result<()> {
        let mut groups = Groups::default();
        if self.runs.is_empty() {
            // Everything fit in the buffer: merged in memory, no run on disk.
            self.buffer.par_sort_unstable();
            for &triple in &self.buffer {
                groups.push(triple, &mut join);
            }
            return Ok(());
        }
        self.spill()?;
        let mut readers: Vec<BufReader<File>> = self
            .runs
            .iter()
            .map(|p| File::open(p).map(|f| BufReader::with_capacity(1 << 16, f)))
            .collect::<std::io::Result<_>>()
            .context("opening dedup runs")?;
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some(t) = next_triple(r)? {
                heap.push(Reverse((t, i)));
            }
        }
        while let Some(Reverse((triple, i))) = heap.pop() {
            groups.push(triple, &mut join);
            if let Some(t) = next_triple(&mut readers[i])? {
                heap.push(Reverse((t, i)));
            }
        }
        for run in &self.runs {
            std::fs::remove_file(run).ok();
        }
        Ok(())
    }
}

/// Triples in sorted order to groups of one (band, key): the number of the group, its first
/// document and each later one go to `join`.
#[derive(Default)]
struct Groups {
    current: Option<(u32, u64, u64)>,
    count: u64,
}

impl Groups {
    fn push(&mut self, (band, key, doc): Triple, join: &mut impl FnMut(u64, u64, u64)) {
        match self.current {
            Some((b, k, first)) if b == band && k == key => join(self.count, first, doc),
            _ => {
                self.count += 1;
                self.current = Some((band, key, doc));
            }
        }
    }
}

fn next_triple(reader: &mut impl Read) -> Result<Option<Triple>> {
    let mut buf = [0u8; TRIPLE_BYTES];
    match reader.read_exact(&mut buf) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).context("reading a dedup run"),
    }
    let band = u32::from_le_bytes(buf[0..4].try_into()?);
    let key = u64::from_le_bytes(buf[4..12].try_into()?);
    let doc = u64::from_le_bytes(buf[12..20].try_into()?);
    Ok(Some((band, key, doc)))
}
