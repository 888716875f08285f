//! Objects in S3-compatible storage through `object_store`: one client per bucket (built from
//! the `AWS_*` variables, with retries and backoff), driven from synchronous code by a small
//! shared tokio runtime. Counts bytes and requests so benchmarks can report them.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    WriteMultipart,
};

use super::{READ_BLOCK, WRITE_PART};

/// Bytes and requests moved by this process, for benchmarks and summaries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transfer {
    /// Every byte read: inputs, work files of earlier stages, markers.
    pub bytes_read: u64,
    /// The part of `bytes_read` that is input objects (the corpus itself).
    #[serde(default)]
    pub input_bytes_read: u64,
    /// GET and LIST requests.
    pub read_requests: u64,
    /// HEAD requests (does a marker exist, how large is an object), billed like GETs.
    #[serde(default)]
    pub head_requests: u64,
    pub bytes_written: u64,
    pub write_requests: u64,
}

impl Transfer {
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// What moved between `start` (an earlier [`transfer_totals`]) and these totals.
    pub fn since(&self, start: &Transfer) -> Transfer {
        Transfer {
            bytes_read: self.bytes_read.saturating_sub(start.bytes_read),
            input_bytes_read: self.input_bytes_read.saturating_sub(start.input_bytes_read),
            read_requests: self.read_requests.saturating_sub(start.read_requests),
            head_requests: self.head_requests.saturating_sub(start.head_requests),
            bytes_written: self.bytes_written.saturating_sub(start.bytes_written),
            write_requests: self.write_requests.saturating_sub(start.write_requests),
        }
    }

    pub fn add(&mut self, other: &Transfer) {
        self.bytes_read += other.bytes_read;
        self.input_bytes_read += other.input_bytes_read;
        self.read_requests += other.read_requests;
        self.head_requests += other.head_requests;
        self.bytes_written += other.bytes_written;
        self.write_requests += other.write_requests;
    }
}

static BYTES_READ: AtomicU64 = AtomicU64::new(0);
static INPUT_BYTES_READ: AtomicU64 = AtomicU64::new(0);
static READ_REQUESTS: AtomicU64 = AtomicU64::new(0);
static HEAD_REQUESTS: AtomicU64 = AtomicU64::new(0);
static BYTES_WRITTEN: AtomicU64 = AtomicU64::new(0);
static WRITE_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// What this process has moved so far.
pub fn transfer_totals() -> Transfer {
    Transfer {
        bytes_read: BYTES_READ.load(Ordering::Relaxed),
        input_bytes_read: INPUT_BYTES_READ.load(Ordering::Relaxed),
        read_requests: READ_REQUESTS.load(Ordering::Relaxed),
        head_requests: HEAD_REQUESTS.load(Ordering::Relaxed),
        bytes_written: BYTES_WRITTEN.load(Ordering::Relaxed),
        write_requests: WRITE_REQUESTS.load(Ordering::Relaxed),
    }
}

fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("object-store")
        .enable_all()
        .build()
        .context("starting the object storage runtime")?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Counts `bytes` just read as input (already in `bytes_read`).
pub(super) fn count_input(bytes: u64) {
    INPUT_BYTES_READ.fetch_add(bytes, Ordering::Relaxed);
}

/// One client per bucket, built on first use.
fn store(bucket: &str) -> Result<Arc<dyn ObjectStore>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    let mut stores = stores
        .lock()
        .map_err(|_| anyhow!("object store cache poisoned"))?;
    if let Some(s) = stores.get(bucket) {
        return Ok(s.clone());
    }
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: 10,
        retry_timeout: Duration::from_secs(180),
    };
    let built = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry)
        .build()
        .with_context(|| format!("configuring access to s3://{bucket} from the AWS_* variables"))?;
    let built: Arc<dyn ObjectStore> = Arc::new(built);
    stores.insert(bucket.to_string(), built.clone());
    Ok(built)
}

/// One object, `s3://bucket/key`.
#[derive(Debug, Clone)]
pub struct RemoteObject {
    url: String,
    bucket: String,
    key: ObjectPath,
}

impl RemoteObject {
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| anyhow!("{url:?} is not an s3:// URL"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("{url:?} names no bucket");
        }
        Ok(Self {
            url: url.to_string(),
            bucket: bucket.to_string(),
            key: ObjectPath::from(key.trim_matches('/')),
        })
    }

    pub fn file_name(&self) -> String {
        self.key.filename().unwrap_or("object").to_string()
    }

    fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        store(&self.bucket)
    }

    pub fn exists(&self) -> Result<bool> {
        let store = self.store()?;
        HEAD_REQUESTS.fetch_add(1, Ordering::Relaxed);
        match runtime()?.block_on(store.head(&self.key)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("looking up {}", self.url)),
        }
    }

    /// Copies the object to `local` in ranged GETs of `READ_BLOCK` bytes, through a temp file
    /// renamed at the end; returns its size.
    pub fn download(&self, local: &Path) -> Result<u64> {
        let store = self.store()?;
        let rt = runtime()?;
        HEAD_REQUESTS.fetch_add(1, Ordering::Relaxed);
        let size = rt
            .block_on(store.head(&self.key))
            .with_context(|| format!("looking up {}", self.url))?
            .size;
        let partial = local.with_extension("partial");
        let mut file = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&partial)
                .with_context(|| format!("creating {}", partial.display()))?,
        );
        self.read_blocks(&store, rt, 0..size, |block| {
            file.write_all(block)
                .with_context(|| format!("writing {}", partial.display()))
        })?;
        file.flush()?;
        drop(file);
        std::fs::rename(&partial, local)
            .with_context(|| format!("renaming {} into place", partial.display()))?;
        Ok(size)
    }

    /// The bytes of `ranges` (sorted, not overlapping), each in one ranged GET per
    /// `READ_BLOCK` bytes: callers coalesce nearby ranges first (`storage::coalesce`).
    pub fn read_ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Vec<u8>>> {
        let store = self.store()?;
        let rt = runtime()?;
        let mut out = Vec::with_capacity(ranges.len());
        for range in ranges {
            let mut bytes = Vec::with_capacity((range.end - range.start) as usize);
            self.read_blocks(&store, rt, range.clone(), |block| {
                bytes.extend_from_slice(block);
                Ok(())
            })?;
            out.push(bytes);
        }
        Ok(out)
    }

    /// Reads `range` in ranged GETs of at most `READ_BLOCK` bytes, counted, handing each block
    /// to `each` in order.
    fn read_blocks(
        &self,
        store: &Arc<dyn ObjectStore>,
        rt: &tokio::runtime::Runtime,
        range: Range<u64>,
        mut each: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut at = range.start;
        while at < range.end {
            let end = (at + READ_BLOCK as u64).min(range.end);
            let block = rt
                .block_on(store.get_range(&self.key, at..end))
                .with_context(|| format!("reading bytes {at}..{end} of {}", self.url))?;
            READ_REQUESTS.fetch_add(1, Ordering::Relaxed);
            BYTES_READ.fetch_add(block.len() as u64, Ordering::Relaxed);
            each(&block)?;
            at = end;
        }
        Ok(())
    }

    /// The whole object (for small files: markers, summaries).
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let store = self.store()?;
        let rt = runtime()?;
        let bytes = rt
            .block_on(async { store.get(&self.key).await?.bytes().await })
            .with_context(|| format!("reading {}", self.url))?;
        READ_REQUESTS.fetch_add(1, Ordering::Relaxed);
        BYTES_READ.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes.to_vec())
    }

    /// Uploads a local file as a multipart upload of `WRITE_PART` parts (aborted on error, so
    /// no partial object appears).
    pub fn upload(&self, local: &Path) -> Result<()> {
        let store = self.store()?;
        let rt = runtime()?;
        let mut file =
            std::fs::File::open(local).with_context(|| format!("opening {}", local.display()))?;
        rt.block_on(async {
            let upload = store.put_multipart(&self.key).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, WRITE_PART);
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        writer.abort().await.ok();
                        return Err(anyhow::Error::from(e));
                    }
                };
                writer.wait_for_capacity(4).await?;
                writer.write(&buf[..n]);
                BYTES_WRITTEN.fetch_add(n as u64, Ordering::Relaxed);
            }
            writer.finish().await?;
            WRITE_REQUESTS.fetch_add(1, Ordering::Relaxed);
            anyhow::Ok(())
        })
        .with_context(|| format!("uploading {} to {}", local.display(), self.url))
    }

    /// Writes the whole object in one request, replacing it.
    pub fn put(&self, bytes: Vec<u8>) -> Result<()> {
        let store = self.store()?;
        let len = bytes.len() as u64;
        runtime()?
            .block_on(store.put(&self.key, PutPayload::from(bytes)))
            .with_context(|| format!("writing {}", self.url))?;
        WRITE_REQUESTS.fetch_add(1, Ordering::Relaxed);
        BYTES_WRITTEN.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes the object; one that does not exist is not an error.
    pub fn delete(&self) -> Result<()> {
        let store = self.store()?;
        match runtime()?.block_on(store.delete(&self.key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting {}", self.url)),
        }
    }

    /// Creates the object only if it does not exist yet (a done marker). Stores without
    /// conditional puts get a plain put.
    pub fn create(&self, bytes: Vec<u8>) -> Result<()> {
        let store = self.store()?;
        let rt = runtime()?;
        let len = bytes.len() as u64;
        let payload = PutPayload::from(bytes);
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let created = rt.block_on(store.put_opts(&self.key, payload.clone(), options));
        WRITE_REQUESTS.fetch_add(1, Ordering::Relaxed);
        BYTES_WRITTEN.fetch_add(len, Ordering::Relaxed);
        match created {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                bail!("{} already exists: another task wrote it first", self.url)
            }
            Err(object_store::Error::NotImplemented { .. }) => rt
                .block_on(store.put(&self.key, payload))
                .map(|_| ())
                .with_context(|| format!("writing {}", self.url)),
            Err(e) => Err(e).with_context(|| format!("writing {}", self.url)),
        }
    }
}

/// Lists the objects a pattern names, sorted by key. A pattern without glob characters is
/// one object, or a "directory" prefix whose objects `keep` accepts; with glob characters,
/// the listing starts at the literal prefix before the first of them.
pub fn expand(pattern: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<String>> {
    let object = RemoteObject::parse(pattern)?;
    let key = pattern
        .strip_prefix("s3://")
        .and_then(|r| r.split_once('/'))
        .map(|(_, k)| k)
        .unwrap_or("");
    let globbed = key.contains(['*', '?', '[']);
    if !globbed && !key.is_empty() && !key.ends_with('/') && object.exists()? {
        return Ok(vec![pattern.to_string()]);
    }
    let literal = match key.find(['*', '?', '[']) {
        Some(i) => &key[..key[..i].rfind('/').map_or(0, |j| j + 1)],
        None => key,
    };
    let matcher = if globbed {
        Some(
            glob::Pattern::new(key)
                .with_context(|| format!("input pattern {pattern:?} is not a valid glob"))?,
        )
    } else {
        None
    };
    let prefix = ObjectPath::from(literal.trim_matches('/'));
    let store = object.store()?;
    let mut keys: Vec<String> = runtime()?
        .block_on(async {
            let mut listing = store.list(Some(&prefix));
            let mut keys = Vec::new();
            while let Some(meta) = listing.next().await {
                keys.push(meta?.location.to_string());
            }
            Ok::<_, object_store::Error>(keys)
        })
        .with_context(|| format!("listing {pattern}"))?;
    READ_REQUESTS.fetch_add(1, Ordering::Relaxed);
    keys.retain(|k| match &matcher {
        Some(m) => m.matches_with(
            k,
            glob::MatchOptions {
                require_literal_separator: true,
                ..glob::MatchOptions::default()
            },
        ),
        None => keep(k),
    });
    keys.sort();
    Ok(keys
        .into_iter()
        .map(|k| format!("s3://{}/{k}", object.bucket))
        .collect())
}
