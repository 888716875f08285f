//! Where inputs and outputs live: local paths or object storage (`s3://bucket/key`, through
//! the `object_store` crate). Readers and writers keep working on local files: a remote input
//! is fetched into a scratch directory in one streamed GET (never one per record; a larger
//! object in ranged GETs of 64 MiB, 4 at a time) ahead of its turn ([`fetch`]), and a
//! remote output directory is written locally and then uploaded (one PUT up to 16 MB, else a
//! multipart upload), its done marker or manifest last, created only if absent.
//! Credentials, region and endpoint come from the usual `AWS_*` variables; throttling and
//! dropped connections are retried with backoff (`object_store::RetryConfig`).

mod fetch;
mod remote;
mod stream;
mod transfer;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use fetch::{
    FETCH_AHEAD, StagedInput, each_staged, fetch_input, in_order_ahead, input_size, stage_input,
    staged_path,
};
pub use remote::{RemoteObject, Scheme};
pub use stream::{RemoteStream, StreamFailure};
pub use transfer::{Transfer, transfer_totals};

/// Bytes per part of a multipart upload (a smaller file is one PUT).
pub const WRITE_PART: usize = 16 << 20;

/// Ranges of one object closer than this are read as one (the gap read and dropped): a GET's
/// latency (tens of ms on S3) costs about what transferring a MiB does.
pub const RANGE_GAP: u64 = 1 << 20;

/// Sorted `ranges` merged where they overlap or lie closer than `gap` bytes.
pub fn coalesce(ranges: &[std::ops::Range<u64>], gap: u64) -> Vec<std::ops::Range<u64>> {
    let mut out: Vec<std::ops::Range<u64>> = Vec::new();
    for r in ranges.iter().filter(|r| r.end > r.start) {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(gap) => last.end = last.end.max(r.end),
            _ => out.push(r.clone()),
        }
    }
    out
}

/// Whether `path` names an object in a store rather than a local file.
pub fn is_remote(path: &str) -> bool {
    Scheme::of(path).is_some()
}

/// `is_remote` for a path held as a `Path`.
pub fn is_remote_path(path: &Path) -> bool {
    is_remote(&path.to_string_lossy())
}

/// A local directory for the staged copies of `url`'s files: `JIELONG_SCRATCH` (or the system
/// temp directory) + a hash of the URL, so a rerun on the same machine finds its work again.
pub fn scratch_dir(url: &str) -> PathBuf {
    let root = std::env::var_os("JIELONG_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("jielong-scratch"));
    root.join(format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(url.as_bytes())
    ))
}

/// Expands remote patterns (`s3://bucket/prefix/`, `s3://bucket/dir/*.jsonl.zst`, or one
/// object), in order, into object URLs (each pattern's sorted), like
/// `readers::expand_inputs` does for local ones; objects named one by one are checked by
/// listing their parent once, not by a HEAD each (see [`remote::expand_all`]).
pub fn expand_remote_all(
    patterns: &[String],
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<Vec<String>>> {
    remote::expand_all(patterns, keep)
}

/// Whether the file at `path` (local or remote) exists.
pub fn exists(path: &Path) -> Result<bool> {
    if is_remote_path(path) {
        RemoteObject::parse(&path.to_string_lossy())?.exists()
    } else {
        Ok(path.exists())
    }
}

/// Reads a whole small file (a done marker, a summary), local or remote.
pub fn read_small(path: &Path) -> Result<Vec<u8>> {
    if is_remote_path(path) {
        RemoteObject::parse(&path.to_string_lossy())?.read_all()
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Writes a done marker: locally by rename (atomic), remotely with a conditional create, so
/// of two tasks given the same index only one can claim it. Locally the marker must never
/// outlive what it vouches for: the task's files were each synced before their rename, but a
/// rename is only durable once its directory is, so the filesystem is synced (`syncfs`, every
/// directory the task renamed into) before the marker appears, and the marker's directory
/// after.
pub fn write_marker(path: &Path, bytes: &[u8]) -> Result<()> {
    if is_remote_path(path) {
        RemoteObject::parse(&path.to_string_lossy())?.create(bytes.to_vec())
    } else {
        write_local(path, bytes, true)
    }
}

/// Writes a small file (a summary, a running or failed marker), replacing it: locally by
/// rename, remotely in one put.
pub fn write_small(path: &Path, bytes: &[u8]) -> Result<()> {
    if is_remote_path(path) {
        RemoteObject::parse(&path.to_string_lossy())?.put(bytes.to_vec())
    } else {
        write_local(path, bytes, false)
    }
}

/// Writes `bytes` to a temporary name, syncs it and renames it over `path`; with `durable`,
/// the filesystem is synced first and the directory after.
fn write_local(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A temp name of this writer's own: two processes given the same task write the same
    // markers.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}-{n}.tmp", std::process::id()));
    let sync_dir = |whole_filesystem: bool| -> std::io::Result<()> {
        let handle = std::fs::File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })?;
        if whole_filesystem {
            // SAFETY: syncfs only reads the descriptor, which `handle` keeps open.
            let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&handle)) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        handle.sync_all()
    };
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()
    });
    written
        .and_then(|()| if durable { sync_dir(true) } else { Ok(()) })
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| if durable { sync_dir(false) } else { Ok(()) })
        .with_context(|| format!("writing {}", path.display()))
}

/// Removes a file (local or remote); a missing one is not an error.
pub fn remove(path: &Path) -> Result<()> {
    if is_remote_path(path) {
        return RemoteObject::parse(&path.to_string_lossy())?.delete();
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The names of the files directly in directory `dir` (local or remote), sorted; none when
/// it does not exist.
pub fn list_names(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = if is_remote_path(dir) {
        let prefix = format!("{}/", dir.to_string_lossy().trim_end_matches('/'));
        remote::expand(&prefix, |_| true)?
            .into_iter()
            .filter_map(|url| url.strip_prefix(&prefix).map(str::to_string))
            .filter(|name| !name.contains('/'))
            .collect()
    } else {
        match std::fs::read_dir(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            listing => listing
                .with_context(|| format!("listing {}", dir.display()))?
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
        }
    };
    names.sort();
    Ok(names)
}

/// Uploads every file under `local` to the remote directory `url`, skipping the top-level
/// entries named in `skip`; files named in `last` (done markers, manifests, at any depth) go
/// after all the others, so a reader that sees them sees everything.
pub fn upload_dir(local: &Path, url: &str, skip: &[&str], last: &[&str]) -> Result<()> {
    let mut files = Vec::new();
    collect_files(local, local, &mut files)?;
    files.retain(|rel| {
        let first = rel.split('/').next().unwrap_or_default();
        !skip.contains(&first)
    });
    let is_last = |rel: &String| last.contains(&rel.rsplit('/').next().unwrap_or_default());
    let (finals, others): (Vec<String>, Vec<String>) = files.into_iter().partition(is_last);
    let base = url.trim_end_matches('/');
    for rel in others.iter().chain(finals.iter()) {
        RemoteObject::parse(&format!("{base}/{rel}"))?.upload(&local.join(rel))?;
    }
    Ok(())
}

/// The files under local directory `dir`, as sorted relative paths with `/`.
pub fn list_files(dir: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    Ok(files)
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::coalesce;

    #[test]
    fn coalesce_merges_ranges_closer_than_the_gap_only() {
        let ranges = [
            0..10,
            12..20,
            20..25,
            100..110,
            109..130,
            200..200,
            300..301,
        ];
        assert_eq!(coalesce(&ranges, 2), vec![0..25, 100..130, 300..301]);
        assert_eq!(
            coalesce(&ranges, 1),
            vec![0..10, 12..25, 100..130, 300..301]
        );
        assert_eq!(coalesce(&ranges, 1000), vec![0..301]);
        assert!(coalesce(&[], 5).is_empty());
    }
}
