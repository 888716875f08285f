//! What a `clean` run (or one task of it) did: counts, timings and problems, printed and
//! saved as `summary.json` (or as the task's done marker).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Counts and timings of a run, printed and saved as `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub inputs: usize,
    pub inputs_resumed: usize,
    pub docs_in: u64,
    pub docs_out: u64,
    pub skipped_records: u64,
    /// HTML pages whose markup the extractor repaired (misnested or unmatched end tags).
    #[serde(default)]
    pub odd_markup_pages: u64,
    pub read_issues: u64,
    /// Stage name -> documents it dropped (first failing stage only).
    pub dropped_by: BTreeMap<String, u64>,
    pub text_bytes_in: u64,
    pub text_bytes_out: u64,
    /// Bytes of the input files as stored (compressed WARC, JSONL, ...), for the MB/s of raw
    /// input a crawl is measured in.
    #[serde(default)]
    pub input_bytes: u64,
    pub seconds: BTreeMap<String, f64>,
    /// Seconds per stage of the read/filter pass, summed over threads (see
    /// `InputDone::stage_seconds`); with `text_bytes_in`, each stage's MB per thread-second.
    #[serde(default)]
    pub stage_seconds: BTreeMap<String, f64>,
    /// The first read problems, with file and record/line.
    pub issues: Vec<String>,
    /// Present when the config has a `[tokenize]` table.
    pub tokenize: Option<crate::tokenize::pretrain::TokenizeSummary>,
    /// Object storage traffic of a task (in its done marker) or of all tasks (the finish
    /// step's summary); absent for local runs.
    #[serde(default, skip_serializing_if = "crate::storage::Transfer::is_zero")]
    pub object_store: crate::storage::Transfer,
    /// In a split run's task markers: the inputs the clean stage listed, which the later
    /// stages take from the marker they read rather than listing the inputs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs_listed: Option<usize>,
}

impl RunSummary {
    /// A short human-readable report.
    pub fn render(&self) -> String {
        let mut s = format!(
            "inputs {} ({} resumed), documents in {}, kept {}, unreadable records {}, non-text records {}\n",
            self.inputs,
            self.inputs_resumed,
            self.docs_in,
            self.docs_out,
            self.read_issues,
            self.skipped_records
        );
        if self.odd_markup_pages > 0 {
            s.push_str(&format!(
                "  HTML pages with odd markup (repaired) {}\n",
                self.odd_markup_pages
            ));
        }
        for (stage, n) in &self.dropped_by {
            s.push_str(&format!("  dropped by {stage:<18} {n}\n"));
        }
        let secs: f64 = self.seconds.values().sum();
        s.push_str(&format!(
            "text in {:.1} MB, out {:.1} MB; {:.1} s ({:.2} MB/s)\n",
            self.text_bytes_in as f64 / 1e6,
            self.text_bytes_out as f64 / 1e6,
            secs,
            self.text_bytes_in as f64 / 1e6 / secs.max(1e-9)
        ));
        s.push_str(&format!(
            "raw input {:.1} MB as stored ({:.2} MB/s)\n",
            self.input_bytes as f64 / 1e6,
            self.input_bytes as f64 / 1e6 / secs.max(1e-9)
        ));
        let t = &self.object_store;
        if !t.is_zero() {
            // What the cost model counts, per input byte: the input objects read (each byte
            // once when nothing is retried), then the work files of earlier stages and the
            // markers; and requests per MB read.
            let per_input = match self.input_bytes {
                0 => String::new(),
                n => format!(
                    "inputs {:.2} + work files and markers {:.2} bytes per input byte, ",
                    t.input_bytes_read as f64 / n as f64,
                    (t.bytes_read - t.input_bytes_read.min(t.bytes_read)) as f64 / n as f64
                ),
            };
            s.push_str(&format!(
                "object store: read {:.1} MB in {} GETs, {} LISTs and {} HEADs ({per_input}{:.3} requests per MB), wrote {:.1} MB in {} PUTs and {} multipart requests\n",
                t.bytes_read as f64 / 1e6,
                t.get_requests,
                t.list_requests,
                t.head_requests,
                t.read_side_requests() as f64 / (t.bytes_read as f64 / 1e6).max(1e-9),
                t.bytes_written as f64 / 1e6,
                t.put_requests,
                t.multipart_requests
            ));
        }
        for issue in self.issues.iter().take(10) {
            s.push_str(&format!("  problem: {issue}\n"));
        }
        if self.issues.len() > 10 {
            s.push_str(&format!(
                "  ... and {} more in summary.json\n",
                self.issues.len() - 10
            ));
        }
        s
    }
}
