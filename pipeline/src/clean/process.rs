//! One document through extract (HTML deferred by the reader) -> normalize -> language id -> filters -> PII -> dedup keys. Pure and
//! thread-safe: batches of documents go through it on the rayon pool.

use std::time::Instant;

use super::work::{DocKeys, DocRow, KeptDoc};
use crate::config::PipelineConfig;
use crate::dedup::{MinHasher, exact_key};
use crate::document::Document;
use crate::filters;
use crate::langid;
use crate::normalize::normalize;
use crate::pii;

/// The per-document stages whose time a run reports (`summary.json` `stage_seconds`).
pub const STAGES: [&str; 6] = [
    "extract",
    "normalize",
    "langid",
    "filters",
    "pii",
    "dedup_keys",
];

/// What processing one document yields.
#[derive(Debug, Clone)]
pub struct Processed {
    pub row: DocRow,
    pub kept: Option<(KeptDoc, DocKeys)>,
    pub bytes_in: u64,
    /// HTML whose markup the extractor repaired.
    pub odd_markup: bool,
    /// Nanoseconds spent in each of [`STAGES`] on this document.
    pub stage_nanos: [u64; STAGES.len()],
}

/// Times consecutive stages of one document.
struct StageClock {
    last: Instant,
    nanos: [u64; STAGES.len()],
}

impl StageClock {
    fn start() -> Self {
        Self {
            last: Instant::now(),
            nanos: [0; STAGES.len()],
        }
    }

    /// Charges the time since the previous lap to `stage`.
    fn lap(&mut self, stage: usize) {
        let now = Instant::now();
        self.nanos[stage] += (now - self.last).as_nanos() as u64;
        self.last = now;
    }
}

/// The stage objects built once per run.
#[derive(Debug)]
pub struct Processor<'a> {
    config: &'a PipelineConfig,
    minhash: Option<MinHasher>,
    score_names: Vec<&'static str>,
}

impl<'a> Processor<'a> {
    pub fn new(config: &'a PipelineConfig) -> Self {
        Self {
            config,
            minhash: config
                .dedup
                .minhash
                .enabled
                .then(|| MinHasher::new(config.dedup.minhash.clone())),
            score_names: filters::score_names(),
        }
    }

    pub fn process(&self, doc: &Document) -> Processed {
        let config = self.config;
        let mut clock = StageClock::start();
        // HTML read by the WARC reader is extracted here, on the worker pool.
        let (extracted, odd_markup) = match &doc.html {
            Some(raw) => {
                match crate::extract::html_to_text(
                    &raw.bytes,
                    raw.charset.as_deref(),
                    doc.url.as_deref(),
                ) {
                    Ok(page) => (Some(page.text), page.odd_markup),
                    Err(_) => (Some(String::new()), false),
                }
            }
            None => (None, doc.odd_markup),
        };
        let source_text = extracted.as_deref().unwrap_or(&doc.text);
        clock.lap(0);
        let bytes_in = source_text.len() as u64;
        let text = normalize(source_text, &config.normalize);
        clock.lap(1);
        let language = config.langid.enabled.then(|| config.langid.identify(&text));
        clock.lap(2);
        let mut row = DocRow {
            id: doc.id.clone(),
            url: doc.url.clone(),
            source: doc.source.clone(),
            lang: language.as_ref().map(|l| l.label.clone()),
            lang_score: language.as_ref().and_then(langid::Identified::score),
            scores: vec![None; self.score_names.len()],
            dropped_by: None,
            drop_reason: None,
            chars: text.chars().count() as u64,
            pii_redactions: 0,
        };
        let drop = |stage: &str, reason: String, row: &mut DocRow| {
            if row.dropped_by.is_none() {
                row.dropped_by = Some(stage.to_string());
                row.drop_reason = Some(reason);
            }
        };
        if text.is_empty() {
            drop("empty", "no text after extraction".into(), &mut row);
        }
        if let Some(reason) = language.as_ref().and_then(|l| config.langid.verdict(l)) {
            drop("langid", reason, &mut row);
        }
        // Every filter runs on every document, so thresholds can be re-tuned from the docs
        // table without re-running; the first failing stage is the one recorded.
        let chinese = language
            .as_ref()
            .is_some_and(langid::Identified::guessed_chinese);
        let (filtered, outcomes) = config.filters.run(text, chinese);
        clock.lap(3);
        for outcome in &outcomes {
            for (name, value) in &outcome.verdict.scores {
                if let Some(i) = self.score_names.iter().position(|n| n == name) {
                    row.scores[i] = Some(*value);
                }
            }
            if let Some(reason) = &outcome.verdict.drop {
                drop(outcome.filter, reason.clone(), &mut row);
            }
        }
        if row.dropped_by.is_some() {
            return Processed {
                row,
                kept: None,
                bytes_in,
                odd_markup,
                stage_nanos: clock.nanos,
            };
        }
        let (text, redactions) = if config.pii.any() {
            // The filtered text itself when nothing was redacted, not a copy.
            let (redacted, count) = pii::redact_borrowed(&filtered, &config.pii);
            let redacted = match redacted {
                std::borrow::Cow::Owned(text) => Some(text),
                std::borrow::Cow::Borrowed(_) => None,
            };
            (redacted.unwrap_or(filtered), count)
        } else {
            (filtered, 0)
        };
        row.pii_redactions = redactions as u64;
        clock.lap(4);
        let sketch = self
            .minhash
            .as_ref()
            .and_then(|m| m.sketch(&text, chinese))
            .unwrap_or_default();
        let keys = DocKeys {
            exact: if config.dedup.exact {
                exact_key(&text)
            } else {
                0
            },
            bands: sketch.bands,
            signature: sketch.signature,
        };
        clock.lap(5);
        let kept = KeptDoc {
            id: doc.id.clone(),
            url: doc.url.clone(),
            source: doc.source.clone(),
            lang: row.lang.clone(),
            text,
        };
        Processed {
            row,
            kept: Some((kept, keys)),
            bytes_in,
            odd_markup,
            stage_nanos: clock.nanos,
        }
    }
}
