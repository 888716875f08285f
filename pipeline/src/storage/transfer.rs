//! What this process moved to and from object storage: counters the client adds to as it
//! goes, read by benchmarks and written into summaries and done markers.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes and requests moved by this process, for benchmarks and summaries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transfer {
    /// Every byte read: inputs, work files of earlier stages, markers.
    pub bytes_read: u64,
    /// The part of `bytes_read` that is input objects (the corpus itself).
    #[serde(default)]
    pub input_bytes_read: u64,
    /// GET and LIST requests (`get_requests` + `list_requests`).
    pub read_requests: u64,
    /// HEAD requests (does a marker exist), billed like GETs.
    #[serde(default)]
    pub head_requests: u64,
    /// GET requests, whole objects or ranges (each streamed: one per object or range read).
    #[serde(default)]
    pub get_requests: u64,
    /// LIST requests (one per page of up to 1000 keys).
    #[serde(default)]
    pub list_requests: u64,
    pub bytes_written: u64,
    /// Objects written (`put_requests` + one per multipart upload).
    pub write_requests: u64,
    /// Single PUT requests (small objects, markers, conditional creates).
    #[serde(default)]
    pub put_requests: u64,
    /// Requests of multipart uploads: create, each part, complete.
    #[serde(default)]
    pub multipart_requests: u64,
}

/// The counters of [`Transfer`], in field order.
const FIELDS: usize = 10;

impl Transfer {
    fn to_array(self) -> [u64; FIELDS] {
        [
            self.bytes_read,
            self.input_bytes_read,
            self.read_requests,
            self.head_requests,
            self.get_requests,
            self.list_requests,
            self.bytes_written,
            self.write_requests,
            self.put_requests,
            self.multipart_requests,
        ]
    }

    fn from_array(a: [u64; FIELDS]) -> Self {
        let [
            bytes_read,
            input_bytes_read,
            read_requests,
            head_requests,
            get_requests,
            list_requests,
            bytes_written,
            write_requests,
            put_requests,
            multipart_requests,
        ] = a;
        Self {
            bytes_read,
            input_bytes_read,
            read_requests,
            head_requests,
            get_requests,
            list_requests,
            bytes_written,
            write_requests,
            put_requests,
            multipart_requests,
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// Requests that read (GET, LIST, HEAD), what "requests per MB read" counts.
    pub fn read_side_requests(&self) -> u64 {
        self.read_requests + self.head_requests
    }

    /// What moved between `start` (an earlier [`transfer_totals`]) and these totals.
    pub fn since(&self, start: &Transfer) -> Transfer {
        let (a, b) = (self.to_array(), start.to_array());
        Self::from_array(std::array::from_fn(|i| a[i].saturating_sub(b[i])))
    }

    pub fn add(&mut self, other: &Transfer) {
        let (a, b) = (self.to_array(), other.to_array());
        *self = Self::from_array(std::array::from_fn(|i| a[i] + b[i]));
    }
}

pub(super) static BYTES_READ: AtomicU64 = AtomicU64::new(0);
static INPUT_BYTES_READ: AtomicU64 = AtomicU64::new(0);
pub(super) static HEAD_REQUESTS: AtomicU64 = AtomicU64::new(0);
pub(super) static GET_REQUESTS: AtomicU64 = AtomicU64::new(0);
pub(super) static LIST_REQUESTS: AtomicU64 = AtomicU64::new(0);
pub(super) static BYTES_WRITTEN: AtomicU64 = AtomicU64::new(0);
pub(super) static PUT_REQUESTS: AtomicU64 = AtomicU64::new(0);
pub(super) static MULTIPART_UPLOADS: AtomicU64 = AtomicU64::new(0);
pub(super) static MULTIPART_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// What this process has moved so far.
pub fn transfer_totals() -> Transfer {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (gets, lists, puts) = (
        load(&GET_REQUESTS),
        load(&LIST_REQUESTS),
        load(&PUT_REQUESTS),
    );
    Transfer {
        bytes_read: load(&BYTES_READ),
        input_bytes_read: load(&INPUT_BYTES_READ),
        read_requests: gets + lists,
        head_requests: load(&HEAD_REQUESTS),
        get_requests: gets,
        list_requests: lists,
        bytes_written: load(&BYTES_WRITTEN),
        write_requests: puts + load(&MULTIPART_UPLOADS),
        put_requests: puts,
        multipart_requests: load(&MULTIPART_REQUESTS),
    }
}

/// Counts `bytes` just read as input (already in `bytes_read`).
pub(super) fn count_input(bytes: u64) {
    INPUT_BYTES_READ.fetch_add(bytes, Ordering::Relaxed);
}
