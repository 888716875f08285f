//! A remote object read as it arrives, from one GET, by a reader that takes its bytes once
//! from start to end: no scratch copy, and processing starts with the first bytes instead of
//! once the whole object is on disk (`[run] stream_inputs`).

use std::io::Read;
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};
use object_store::GetOptions;

use super::RemoteObject;
use super::remote::{counted_get, read_body, runtime};
use super::transfer;

/// Body chunks held between the GET and the reader (object_store hands over chunks of up
/// to ~64 KiB): a few MB that keep the connection busy while the reader works.
const STREAM_CHUNKS: usize = 128;

#[derive(Debug)]
enum Piece {
    Chunk(Vec<u8>),
    End,
    Failed(String),
}

/// The object's bytes, in order, as a [`Read`]. A failed GET (after `object_store`'s
/// retries, which resume a dropped body from the byte reached) is an I/O error to the reader,
/// which readers report as a damaged file; [`StreamFailure::take`] tells the two apart, so
/// a network failure fails the task instead of passing for a bad input.
#[derive(Debug)]
pub struct RemoteStream {
    pieces: Receiver<Piece>,
    current: Vec<u8>,
    at: usize,
    ended: bool,
    failure: StreamFailure,
}

/// Where a [`RemoteStream`]'s failure is kept for its owner to check after reading.
#[derive(Debug, Clone, Default)]
pub struct StreamFailure(Arc<Mutex<Option<String>>>);

impl StreamFailure {
    /// The stream's failure, if it had one.
    pub fn take(&self) -> Option<anyhow::Error> {
        self.0.lock().ok()?.take().map(|m| anyhow!(m))
    }

    fn set(&self, message: String) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(message);
        }
    }
}

impl RemoteObject {
    /// Starts reading the object in one GET on a thread of its own; the bytes come through
    /// the returned stream as they arrive (counted as input bytes read).
    pub fn open_stream(&self) -> Result<RemoteStream> {
        let store = self.store()?;
        let rt = runtime()?;
        let (tx, rx) = sync_channel(STREAM_CHUNKS);
        let (key, url) = (self.key().clone(), self.url().to_string());
        std::thread::Builder::new()
            .name("object-stream".into())
            .spawn(move || {
                // Bytes that came, and whether the reader stopped taking them (then nothing
                // more is fetched, and there is no one to tell how the GET ended).
                let (mut came, mut stopped) = (0u64, false);
                let read = rt.block_on(async {
                    let result = counted_get(&*store, &key, GetOptions::default()).await?;
                    read_body(result, |chunk| {
                        came += chunk.len() as u64;
                        stopped = tx.send(Piece::Chunk(chunk.to_vec())).is_err();
                        anyhow::ensure!(!stopped, "the reader stopped");
                        Ok(())
                    })
                    .await
                });
                let last = match read {
                    Err(e) if !stopped => Piece::Failed(format!("reading {url}: {e:#}")),
                    _ => {
                        transfer::count_input(came);
                        Piece::End
                    }
                };
                let _ = tx.send(last);
            })
            .map_err(|e| anyhow!("starting the reader of {}: {e}", self.url()))?;
        Ok(RemoteStream {
            pieces: rx,
            current: Vec::new(),
            at: 0,
            ended: false,
            failure: StreamFailure::default(),
        })
    }
}

impl RemoteStream {
    /// A handle on the stream's failure, to check once the reader is done with it.
    pub fn failure(&self) -> StreamFailure {
        self.failure.clone()
    }
}

impl Read for RemoteStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            let message = match self.pieces.recv() {
                Ok(Piece::Chunk(chunk)) => {
                    (self.current, self.at) = (chunk, 0);
                    continue;
                }
                Ok(Piece::End) => {
                    self.ended = true;
                    return Ok(0);
                }
                Ok(Piece::Failed(message)) => message,
                Err(_) => "the object's reader thread stopped before its end".to_string(),
            };
            self.failure.set(message.clone());
            return Err(std::io::Error::other(message));
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
