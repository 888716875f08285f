//! TensorBoard event files beside metrics.jsonl, so `tensorboard --logdir runs/` shows every
//! run's curves: each number of a metrics line becomes a scalar `KIND/FIELD` (`train/loss`,
//! `eval/val_loss`, `train/tokens_per_s`, ...) at the line's step. The file is TFRecord
//! framing (length, masked CRC-32C of the length, data, masked CRC-32C of the data) around
//! `tensorflow.Event` protobuf messages, the few fields of which are declared here for prost.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use crc::{CRC_32_ISCSI, Crc};
use prost::Message;
use serde_json::Value;

const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// `tensorflow.Event` (tensorflow/core/util/event.proto): the fields written here.
#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary` with its scalar values.
#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    /// `simple_value`, one case of a oneof: written even when 0.
    #[prost(float, optional, tag = "2")]
    simple_value: Option<f32>,
}

/// An open event file.
#[derive(Debug)]
pub struct EventWriter {
    file: BufWriter<File>,
    path: PathBuf,
}

fn masked_crc(data: &[u8]) -> u32 {
    let crc = CRC32C.checksum(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// Creates `events.out.tfevents.<seconds>.<host>` in `dir` (a new file per process: on
    /// resume TensorBoard reads them all).
    pub fn create(dir: &Path) -> Result<Self> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let name = format!(
            "events.out.tfevents.{}.{host}.{}",
            now() as u64,
            std::process::id()
        );
        let path = dir.join(name);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = Self {
            file: BufWriter::new(file),
            path,
        };
        writer.write_event(&Event {
            wall_time: now(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the numbers of a metrics line as scalars `KIND/FIELD` at its `step`.
    pub fn write_line(&mut self, line: &Value) -> Result<()> {
        let Some(step) = line["step"].as_i64() else {
            return Ok(());
        };
        let kind = line["kind"].as_str().unwrap_or("metrics");
        let Some(fields) = line.as_object() else {
            return Ok(());
        };
        let value: Vec<SummaryValue> = fields
            .iter()
            .filter(|(k, _)| *k != "step")
            .filter_map(|(k, v)| {
                Some(SummaryValue {
                    tag: format!("{kind}/{k}"),
                    simple_value: Some(v.as_f64()? as f32),
                })
            })
            .collect();
        if value.is_empty() {
            return Ok(());
        }
        self.write_event(&Event {
            wall_time: now(),
            step,
            what: Some(What::Summary(Summary { value })),
        })
    }

    fn write_event(&mut self, event: &Event) -> Result<()> {
        let data = event.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend_from_slice(&len);
        record.extend_from_slice(&masked_crc(&len).to_le_bytes());
        record.extend_from_slice(&data);
        record.extend_from_slice(&masked_crc(&data).to_le_bytes());
        self.file
            .write_all(&record)
            .and_then(|()| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}
