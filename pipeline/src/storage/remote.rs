//! Objects in S3-compatible storage through `object_store`: one client per bucket (built from
//! the `AWS_*` variables, with retries and backoff), driven from synchronous code by a small
//! shared tokio runtime. Counts bytes and requests so benchmarks can report them.

use std::collections::HashMap;
use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, GetOptions, GetRange, GetResult, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig, WriteMultipart,
};

use super::WRITE_PART;
use super::transfer::{
    BYTES_READ, BYTES_WRITTEN, GET_REQUESTS, HEAD_REQUESTS, LIST_REQUESTS, MULTIPART_REQUESTS,
    MULTIPART_UPLOADS, PUT_REQUESTS,
};

/// Bytes per ranged GET of a download (an object up to this size is one GET): 0.125 GETs per
/// 8 MB of input, so the shuffles' requests keep the run under one per 8 MB.
pub const DOWNLOAD_PART: u64 = 64 << 20;
/// Ranged GETs of one download running at once.
pub const DOWNLOAD_STREAMS: usize = 4;

pub(super) fn runtime() -> Result<&'static tokio::runtime::Runtime> {
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

/// One client per bucket, built on first use.
fn store(scheme: Scheme, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    let mut stores = stores
        .lock()
        .map_err(|_| anyhow!("object store cache poisoned"))?;
    let name = format!("{}{bucket}", scheme.prefix());
    if let Some(s) = stores.get(&name) {
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
    let built: Arc<dyn ObjectStore> = match scheme {
        Scheme::S3 => Arc::new(
            AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry)
                .build()
                .with_context(|| {
                    format!("configuring access to {name} from the AWS_* variables")
                })?,
        ),
        Scheme::Azure => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .with_retry(retry)
                .build()
                .with_context(|| {
                    format!("configuring access to {name} from the AZURE_* variables")
                })?,
        ),
    };
    stores.insert(name, built.clone());
    Ok(built)
}

/// A GET, counted.
pub(super) async fn counted_get(
    store: &dyn ObjectStore,
    key: &ObjectPath,
    options: GetOptions,
) -> object_store::Result<GetResult> {
    let result = store.get_opts(key, options).await;
    GET_REQUESTS.fetch_add(1, Ordering::Relaxed);
    result
}

/// Hands a GET's body to `each` a chunk at a time as it arrives, counting the bytes (so a
/// large read holds only a chunk in memory); returns how many came.
pub(super) async fn read_body(
    result: GetResult,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let mut body = result.into_stream();
    let mut read = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        BYTES_READ.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        read += chunk.len() as u64;
        each(&chunk)?;
    }
    Ok(read)
}

/// The object stores a path may name, by its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `s3://bucket/key`: Amazon S3 or an S3-compatible server.
    S3,
    /// `az://container/key`: Azure Blob Storage (or its emulator, Azurite).
    Azure,
}

impl Scheme {
    pub const ALL: [Scheme; 2] = [Scheme::S3, Scheme::Azure];

    pub fn prefix(self) -> &'static str {
        match self {
            Scheme::S3 => "s3://",
            Scheme::Azure => "az://",
        }
    }

    /// The scheme `url` starts with, if any.
    pub fn of(url: &str) -> Option<Scheme> {
        Self::ALL.into_iter().find(|s| url.starts_with(s.prefix()))
    }
}

/// One object, `s3://bucket/key` or `az://container/key`.
#[derive(Debug, Clone)]
pub struct RemoteObject {
    url: String,
    scheme: Scheme,
    bucket: String,
    key: ObjectPath,
}

impl RemoteObject {
    pub fn parse(url: &str) -> Result<Self> {
        let scheme =
            Scheme::of(url).ok_or_else(|| anyhow!("{url:?} is not an s3:// or az:// URL"))?;
        let rest = &url[scheme.prefix().len()..];
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("{url:?} names no bucket");
        }
        Ok(Self {
            url: url.to_string(),
            scheme,
            bucket: bucket.to_string(),
            key: ObjectPath::from(key.trim_matches('/')),
        })
    }

    pub fn file_name(&self) -> String {
        self.key.filename().unwrap_or("object").to_string()
    }

    pub(super) fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        store(self.scheme, &self.bucket)
    }

    pub(super) fn key(&self) -> &ObjectPath {
        &self.key
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn exists(&self) -> Result<bool> {
        Ok(self.size()?.is_some())
    }

    /// The object's size, or `None` when it does not exist (one HEAD).
    pub fn size(&self) -> Result<Option<u64>> {
        let store = self.store()?;
        HEAD_REQUESTS.fetch_add(1, Ordering::Relaxed);
        match runtime()?.block_on(store.head(&self.key)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("looking up {}", self.url)),
        }
    }

    /// Copies the object to `local` through a temp file renamed at the end: one GET up to
    /// [`DOWNLOAD_PART`] bytes, else ranged GETs of that size, [`DOWNLOAD_STREAMS`] at a time
    /// (one stream from S3 runs at roughly 50-100 MB/s); returns its size.
    pub fn download(&self, local: &Path) -> Result<u64> {
        self.download_in_parts(local, DOWNLOAD_PART, DOWNLOAD_STREAMS)
            .map(|(size, _)| size)
    }

    /// [`RemoteObject::download`] in parts of `part` bytes, `streams` at a time; returns the
    /// size and the GETs made. The first GET (the first part) gives the size and ETag; the
    /// other parts are asked for only if the ETag still matches, so an object replaced
    /// meanwhile is an error, never a mix of two versions. Each part is written at its offset
    /// as it arrives.
    pub fn download_in_parts(&self, local: &Path, part: u64, streams: usize) -> Result<(u64, u64)> {
        use std::os::unix::fs::FileExt;
        let partial = local.with_extension("partial");
        let file = std::fs::File::create(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        let store = self.store()?;
        let part = part.max(1);
        let write_body = |result: GetResult| {
            let (file, partial) = (&file, &partial);
            let mut at = result.range.start;
            read_body(result, move |chunk| {
                file.write_all_at(chunk, at)
                    .with_context(|| format!("writing {}", partial.display()))?;
                at += chunk.len() as u64;
                Ok(())
            })
        };
        let (size, requests) = runtime()?
            .block_on(async {
                let get = |range: Range<u64>, if_match: Option<String>| {
                    let options = GetOptions {
                        range: Some(GetRange::Bounded(range)),
                        if_match,
                        ..GetOptions::default()
                    };
                    let store = store.clone();
                    async move { Ok(counted_get(&*store, &self.key, options).await?) }
                };
                let first = match get(0..part, None).await {
                    Ok(first) => first,
                    Err(e) => {
                        // An empty object has no range to serve (416): the one object a
                        // ranged first GET fails for, told apart by a HEAD.
                        HEAD_REQUESTS.fetch_add(1, Ordering::Relaxed);
                        return match store.head(&self.key).await {
                            Ok(meta) if meta.size == 0 => Ok((0, 1)),
                            _ => Err(e),
                        };
                    }
                };
                let (size, etag) = (first.meta.size, first.meta.e_tag.clone());
                let rest: Vec<Range<u64>> = (part..size)
                    .step_by(part as usize)
                    .map(|start| start..size.min(start + part))
                    .collect();
                let requests = 1 + rest.len() as u64;
                let rest = futures_util::stream::iter(rest)
                    .map(|range| {
                        let got = get(range, etag.clone());
                        async move { write_body(got.await?).await.map(drop) }
                    })
                    // With the first part's body: `streams` at once (two at least).
                    .buffer_unordered(streams.max(2) - 1)
                    .collect::<Vec<Result<()>>>();
                let (first, rest) = futures_util::future::join(write_body(first), rest).await;
                first?;
                rest.into_iter().collect::<Result<()>>()?;
                anyhow::Ok((size, requests))
            })
            .with_context(|| format!("reading {}", self.url))?;
        drop(file);
        std::fs::rename(&partial, local)
            .with_context(|| format!("renaming {} into place", partial.display()))?;
        Ok((size, requests))
    }

    /// The bytes of `ranges` (sorted, not overlapping), one GET each: callers coalesce
    /// nearby ranges first (`storage::coalesce`).
    pub fn read_ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(ranges.len());
        for range in ranges {
            out.push(if range.end > range.start {
                self.read(Some(range.clone()))?
            } else {
                Vec::new()
            });
        }
        Ok(out)
    }

    /// The object's first `len` bytes, or all of it when it is shorter, in one GET (a
    /// reader that does not know where its part ends reads a little past what it needs
    /// instead of making a second request).
    pub fn read_prefix(&self, len: u64) -> Result<Vec<u8>> {
        self.read(Some(0..len))
    }

    /// `range` of the object (all of it without one; less when it ends first), in one GET.
    fn read(&self, range: Option<Range<u64>>) -> Result<Vec<u8>> {
        let capacity = range.as_ref().map_or(0, |r| (r.end - r.start) as usize);
        let mut bytes = Vec::with_capacity(capacity);
        self.stream(range, |block| {
            bytes.extend_from_slice(block);
            Ok(())
        })?;
        Ok(bytes)
    }

    /// Reads `range` (the whole object without one) in one GET, counted, handing the body
    /// to `each` as it arrives, so a large read holds only a chunk in memory (`object_store`
    /// resumes a dropped body from the byte reached, checking the ETag); returns the bytes
    /// read. A sequential read of an object is one request whatever its size.
    fn stream(
        &self,
        range: Option<Range<u64>>,
        mut each: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        let store = self.store()?;
        let what = match &range {
            Some(r) => format!("bytes {}..{} of {}", r.start, r.end, self.url),
            None => self.url.clone(),
        };
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        runtime()?
            .block_on(async {
                let result = counted_get(&*store, &self.key, options).await?;
                read_body(result, &mut each).await
            })
            .with_context(|| format!("reading {what}"))
    }

    /// The whole object (for small files: markers, summaries).
    pub fn read_all(&self) -> Result<Vec<u8>> {
        self.read(None)
    }

    /// Uploads a local file: one PUT up to `WRITE_PART` bytes, else a multipart upload of
    /// `WRITE_PART` parts (aborted on error, so no partial object appears).
    pub fn upload(&self, local: &Path) -> Result<()> {
        let size = std::fs::metadata(local)
            .with_context(|| format!("opening {}", local.display()))?
            .len();
        if size <= WRITE_PART as u64 {
            let bytes =
                std::fs::read(local).with_context(|| format!("reading {}", local.display()))?;
            return self
                .put(bytes)
                .with_context(|| format!("uploading {}", local.display()));
        }
        let store = self.store()?;
        let rt = runtime()?;
        let mut file =
            std::fs::File::open(local).with_context(|| format!("opening {}", local.display()))?;
        rt.block_on(async {
            let upload = store.put_multipart(&self.key).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, WRITE_PART);
            let mut buf = vec![0u8; 1 << 20];
            let mut sent = 0u64;
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
                sent += n as u64;
                BYTES_WRITTEN.fetch_add(n as u64, Ordering::Relaxed);
            }
            writer.finish().await?;
            // Create, one request per part, complete.
            let parts = sent.div_ceil(WRITE_PART as u64).max(1);
            MULTIPART_REQUESTS.fetch_add(2 + parts, Ordering::Relaxed);
            MULTIPART_UPLOADS.fetch_add(1, Ordering::Relaxed);
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
        PUT_REQUESTS.fetch_add(1, Ordering::Relaxed);
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
        PUT_REQUESTS.fetch_add(1, Ordering::Relaxed);
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

/// Resolves input `patterns` in order, each to its objects (empty: none matched). A pattern
/// naming one object (no glob, not ending in `/`) is looked up in one listing of its parent
/// prefix, shared by every such pattern with the same bucket and parent (a LIST per 1,000
/// entries), not in a HEAD of its own: a crawl's path list of 10^5 WARC objects costs each
/// task ~10^2 requests, not 10^5. A name that is a prefix of keys there (a "directory" given
/// without its `/`) is expanded as one; globs and prefixes go through [`expand`].
pub fn expand_all(patterns: &[String], keep: impl Fn(&str) -> bool) -> Result<Vec<Vec<String>>> {
    let mut listings: HashMap<(String, String), Listing> = HashMap::new();
    let mut out = Vec::with_capacity(patterns.len());
    for pattern in patterns {
        let object = RemoteObject::parse(pattern)?;
        let key = key_of(pattern);
        if key.is_empty() || key.ends_with('/') || is_glob(key) {
            out.push(expand(pattern, &keep)?);
            continue;
        }
        let parent = &key[..key.rfind('/').map_or(0, |i| i + 1)];
        let at = (object.bucket.clone(), parent.to_string());
        if !listings.contains_key(&at) {
            let listing = list_level(&object, parent)
                .with_context(|| format!("listing s3://{}/{parent}", object.bucket))?;
            listings.insert(at.clone(), listing);
        }
        let listing = &listings[&at];
        out.push(if listing.objects.contains(key) {
            vec![pattern.clone()]
        } else if listing.prefixes.contains(key) {
            expand(&format!("{pattern}/"), &keep)?
        } else {
            Vec::new()
        });
    }
    Ok(out)
}

/// Sizes of the objects this process has listed, by URL: an input's size is known from the
/// listing that found it, so neither a progress bar's total nor a resumed input's check
/// costs a HEAD per input.
fn listed() -> &'static Mutex<HashMap<String, u64>> {
    static LISTED: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    LISTED.get_or_init(Default::default)
}

fn remember_sizes(sized: impl IntoIterator<Item = (String, u64)>) {
    if let Ok(mut listed) = listed().lock() {
        listed.extend(sized);
    }
}

/// The size of object `url` as a listing by this process found it, if one did.
pub fn listed_size(url: &str) -> Option<u64> {
    listed().lock().ok()?.get(url).copied()
}

/// The key part of an `s3://bucket/key` pattern, as written (empty for a bucket).
fn key_of(pattern: &str) -> &str {
    Scheme::of(pattern)
        .and_then(|s| pattern[s.prefix().len()..].split_once('/'))
        .map_or("", |(_, k)| k)
}

fn is_glob(key: &str) -> bool {
    key.contains(['*', '?', '['])
}

/// The keys of the objects right under a prefix, and of the prefixes one level down (both
/// without a trailing `/`).
#[derive(Debug, Default)]
struct Listing {
    objects: std::collections::HashSet<String>,
    prefixes: std::collections::HashSet<String>,
}

/// One level of `object`'s bucket under `parent` (empty or ending in `/`).
fn list_level(object: &RemoteObject, parent: &str) -> Result<Listing> {
    let store = object.store()?;
    let prefix = ObjectPath::from(parent.trim_end_matches('/'));
    let prefix = (!parent.is_empty()).then_some(&prefix);
    let result = runtime()?.block_on(store.list_with_delimiter(prefix))?;
    let entries = result.objects.len() + result.common_prefixes.len();
    // One request per page of 1000 entries (S3's page size).
    LIST_REQUESTS.fetch_add((entries as u64).div_ceil(1000).max(1), Ordering::Relaxed);
    let url = |key: &str| format!("{}{}/{key}", object.scheme.prefix(), object.bucket);
    remember_sizes(
        result
            .objects
            .iter()
            .map(|m| (url(m.location.as_ref()), m.size)),
    );
    Ok(Listing {
        objects: result
            .objects
            .into_iter()
            .map(|m| m.location.to_string())
            .collect(),
        prefixes: result
            .common_prefixes
            .into_iter()
            .map(|p| p.to_string())
            .collect(),
    })
}

/// Lists the objects a pattern names, sorted by key. A pattern without glob characters is
/// one object, or a "directory" prefix whose objects `keep` accepts; with glob characters,
/// the listing starts at the literal prefix before the first of them.
pub fn expand(pattern: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<String>> {
    let object = RemoteObject::parse(pattern)?;
    let key = key_of(pattern);
    let globbed = is_glob(key);
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
    let listed: Vec<(String, u64)> = runtime()?
        .block_on(async {
            let mut listing = store.list(Some(&prefix));
            let mut keys = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = meta?;
                keys.push((meta.location.to_string(), meta.size));
            }
            Ok::<_, object_store::Error>(keys)
        })
        .with_context(|| format!("listing {pattern}"))?;
    let url = |key: &str| format!("{}{}/{key}", object.scheme.prefix(), object.bucket);
    remember_sizes(listed.iter().map(|(k, size)| (url(k), *size)));
    let mut keys: Vec<String> = listed.into_iter().map(|(k, _)| k).collect();
    // One request per page of 1000 keys (S3's page size).
    LIST_REQUESTS.fetch_add((keys.len() as u64).div_ceil(1000).max(1), Ordering::Relaxed);
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
    Ok(keys.iter().map(|k| url(k)).collect())
}
