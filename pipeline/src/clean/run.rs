//! `pipeline clean CONFIG`: read -> extract -> normalize -> language id -> filters -> PII ->
//! dedup -> outputs, with a progress bar, a summary, and resume after a kill. Stage 1 runs
//! per input file (documents in parallel batches) and leaves per-input work files with a
//! done marker. Stage 2 merges every kept document's dedup keys through sorted runs on disk.
//! Stage 3 writes the kept documents and the docs tables.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use super::outputs::{DedupResult, kept_written_directly, work_files, write_outputs};
use super::process::{Processed, Processor, STAGES};
pub use super::summary::RunSummary;
use super::work::{
    InputDone, JsonlWriter, WORK_FORMAT, WorkFiles, read_keys, write_json_atomic, write_keys,
};
use crate::config::{KeptFormat, PipelineConfig};
use crate::dedup::{Clusters, RunWriter, estimated_similarity};
use crate::document::Document;
use crate::readers::{expand_inputs, read_in_batches};
use crate::shard::TaskSlice;
use crate::thread_cpu::thread_cpu;

/// A fingerprint of every setting that changes stage 1's output.
fn fingerprint(config: &PipelineConfig) -> Result<String> {
    let relevant = serde_json::json!({
        "reader": config.input.reader,
        "normalize": config.normalize,
        "langid": config.langid,
        "filters": config.filters,
        "pii": config.pii,
        "minhash": config.dedup.minhash,
        "minhash_signature": crate::dedup::minhash::SIGNATURE_SCHEME,
        "exact": config.dedup.exact,
        "work_format": WORK_FORMAT,
        "version": env!("CARGO_PKG_VERSION"),
    });
    Ok(format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(serde_json::to_string(&relevant)?.as_bytes())
    ))
}

/// The stages on local outputs for the inputs of `task` (all without one).
pub(crate) fn run_local(
    config: &PipelineConfig,
    show_progress: bool,
    task: Option<TaskSlice>,
) -> Result<RunSummary> {
    let threads = match config.run.threads {
        0 => default_threads(),
        n => n,
    };
    let at_once = super::at_once::inputs_at_once(config.run.inputs_at_once, threads);
    // With several inputs at once, the pool thread handing them out waits for free helpers
    // the whole of stage 1: one more thread, so `threads` still work.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads + usize::from(at_once > 1))
        .build()
        .context("starting the worker pool")?;
    pool.install(|| run_in_pool(&pool, at_once, config, show_progress, task))
}

/// Rayon's own choice: `RAYON_NUM_THREADS`, else one per core.
fn default_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn run_in_pool(
    pool: &rayon::ThreadPool,
    at_once: usize,
    config: &PipelineConfig,
    show_progress: bool,
    task: Option<TaskSlice>,
) -> Result<RunSummary> {
    let inputs = expand_inputs(&config.input.paths, config.input.reader.format)?;
    if inputs.is_empty() {
        bail!(
            "input.paths matched no readable file: {:?}",
            config.input.paths
        );
    }
    let out = &config.output.dir;
    let work = out.join("work");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    // Tasks of a split run share the output: one of them writes the config.
    if task.is_none_or(|t| t.index() == 0) {
        write_json_atomic(&out.join("config.json"), config)?;
    }
    let fingerprint = fingerprint(config)?;
    // Input numbers (global, so output names match the one-task run) this task processes.
    let mine: Vec<usize> = (0..inputs.len())
        .filter(|&i| task.is_none_or(|t| t.owns(i)))
        .collect();
    let staging = out.join("work/inputs");
    let mut summary = RunSummary {
        inputs: mine.len(),
        inputs_listed: task.map(|_| inputs.len()),
        ..RunSummary::default()
    };

    // Stage 1: per input.
    let started = Instant::now();
    // This task's inputs (remote ones' sizes from their listing).
    let total_bytes: u64 = mine
        .iter()
        .filter_map(|&i| crate::storage::input_size(&inputs[i]).ok().flatten())
        .sum();
    let bar = progress_bar(show_progress, total_bytes);
    let processor = Processor::new(config);
    let direct = kept_written_directly(config);
    if direct {
        let kept_dir = out.join("kept");
        std::fs::create_dir_all(&kept_dir)
            .with_context(|| format!("creating {}", kept_dir.display()))?;
    }
    // Each input resumes from its done record or is fetched (a remote one next to the work
    // files, up to `run.fetch_ahead` of them while the ones before are processed; the copy
    // goes once processed), then processed, up to `run.inputs_at_once` at the same time.
    let remote = inputs.iter().any(|p| crate::storage::is_remote_path(p));
    let ready = |&index: &usize| -> Result<Ready> {
        let dir = staging.join(format!("{index:05}"));
        let staged = crate::storage::staged_path(&inputs[index], &dir)?;
        let size = || crate::storage::input_size(&inputs[index]);
        let stream = config.run.stream_inputs
            && crate::storage::is_remote_path(&inputs[index])
            && crate::readers::streamable(&staged, &config.input.reader);
        Ok(
            match work_files(config, &work, index).finished(&staged, size, &fingerprint)? {
                Some(record) => Ready::Resumed(record),
                None if stream => Ready::Process(Source::Stream(staged)),
                None => Ready::Process(Source::Fetched(crate::storage::stage_input(
                    &inputs[index],
                    &dir,
                )?)),
            },
        )
    };
    let ahead = if remote { config.run.fetch_ahead } else { 0 };
    let process = |(index, source): (usize, Source)| {
        let files = work_files(config, &work, index);
        let input = match &source {
            Source::Fetched(copy) => Input::File(copy.path()),
            Source::Stream(name) => {
                let object = crate::storage::RemoteObject::parse(&inputs[index].to_string_lossy())?;
                let size = crate::storage::input_size(&inputs[index])?.unwrap_or(0);
                Input::Stream(name, object.open_stream()?, size)
            }
        };
        let record = process_input(pool, input, &files, &fingerprint, config, &processor, &bar)?;
        drop(source);
        bar.inc(record.input_bytes);
        Ok((index, record))
    };
    let (mut waited, mut resumed) = (Duration::ZERO, Vec::new());
    let mut done = super::at_once::run_at_once(at_once, process, |submit| {
        waited = crate::storage::in_order_ahead(&mine, ahead, ready, |&index, ready| {
            match ready? {
                Ready::Resumed(record) => {
                    summary.inputs_resumed += 1;
                    bar.inc(record.input_bytes);
                    resumed.push((index, record));
                }
                Ready::Process(source) => submit((index, source))?,
            }
            Ok(std::ops::ControlFlow::Continue(()))
        })?;
        Ok(())
    })?;
    done.append(&mut resumed);
    // In input order, as the numbering of kept documents is.
    done.sort_unstable_by_key(|(index, _)| *index);
    let done: Vec<InputDone> = done.into_iter().map(|(_, record)| record).collect();
    if remote {
        summary
            .seconds
            .insert("fetch_wait".into(), waited.as_secs_f64());
    }
    bar.finish_and_clear();
    for d in &done {
        summary.docs_in += d.docs;
        summary.skipped_records += d.skipped_records;
        summary.odd_markup_pages += d.odd_markup_pages;
        summary.read_issues += d.issues.len() as u64;
        summary.text_bytes_in += d.text_bytes_in;
        summary.input_bytes += d.input_bytes;
        summary.issues.extend(d.issues.iter().cloned());
        for (stage, secs) in &d.stage_seconds {
            *summary.stage_seconds.entry(stage.clone()).or_default() += secs;
        }
    }
    summary
        .seconds
        .insert("read_filter".into(), started.elapsed().as_secs_f64());

    // Stage 2: dedup over every kept document, numbered in input order.
    let started = Instant::now();
    let kept_total: u64 = done.iter().map(|d| d.kept).sum();
    let dedups = super::stages::dedups(config);
    if task.is_some() && dedups {
        // A split run deduplicates in its own stages (`dedup_tasks`): keys partitioned here.
        super::dedup_keys::write_partitions(config, &work, &mine)?;
        return Ok(summary);
    }
    let dedup = if dedups {
        deduplicate(config, &work, &inputs, kept_total as usize)?
    } else {
        DedupResult {
            exact: None,
            minhash: None,
        }
    };
    summary
        .seconds
        .insert("dedup".into(), started.elapsed().as_secs_f64());

    // Stage 3: outputs.
    let started = Instant::now();
    let first_doc: Vec<u64> = done
        .iter()
        .scan(0, |next, d| {
            let first = *next;
            *next += d.kept;
            Some(first)
        })
        .collect();
    write_outputs(config, &work, &mine, &done, &first_doc, dedup, &mut summary)?;
    summary
        .seconds
        .insert("write".into(), started.elapsed().as_secs_f64());
    if task.is_some() {
        // A task's summary is its done marker, written by the caller.
        return Ok(summary);
    }
    write_json_atomic(&out.join("summary.json"), &summary)?;

    // Optional: straight on to a pretraining dataset.
    if let Some(options) = &config.tokenize {
        let started = Instant::now();
        let ext = match config.output.kept_format {
            KeptFormat::Jsonl => "jsonl.zst",
            KeptFormat::Parquet => "parquet",
        };
        let input = crate::readers::InputConfig {
            paths: vec![out.join(format!("kept/*.{ext}")).display().to_string()],
            reader: crate::readers::ReaderOptions::default(),
        };
        summary.tokenize = Some(crate::tokenize::pretrain::tokenize(
            &input,
            options,
            show_progress,
        )?);
        summary
            .seconds
            .insert("tokenize".into(), started.elapsed().as_secs_f64());
        write_json_atomic(&out.join("summary.json"), &summary)?;
    }
    Ok(summary)
}

/// An input of stage 1, ready for its turn.
enum Ready {
    /// Done before (its done record and work files match): not fetched again.
    Resumed(InputDone),
    Process(Source),
}

/// Where an input to process comes from.
enum Source {
    /// A local file, or a remote object's fetched copy (removed when dropped).
    Fetched(crate::storage::StagedInput),
    /// A remote object to read as it arrives (`run.stream_inputs`), under the name its copy
    /// would have had, so labels and done records are the same either way.
    Stream(PathBuf),
}

/// What [`process_input`] reads.
enum Input<'a> {
    File(&'a Path),
    /// Named as a fetched copy would be, with the object's size.
    Stream(&'a Path, crate::storage::RemoteStream, u64),
}

fn progress_bar(show: bool, total: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} input ({bytes_per_sec}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Stage 1 for one input: read, process in parallel batches, write the work files, then the
/// done marker.
///
/// Reading, processing and writing overlap: a reader thread fills a short queue of batches,
/// the worker pool processes one batch at a time, and a writer thread serializes the previous
/// one, so neither core waits while the input is parsed or the work files are compressed.
fn process_input(
    pool: &rayon::ThreadPool,
    input: Input<'_>,
    files: &WorkFiles,
    fingerprint: &str,
    config: &PipelineConfig,
    processor: &Processor<'_>,
    bar: &ProgressBar,
) -> Result<InputDone> {
    let started = Instant::now();
    // HTML is extracted on the worker pool, not in the reader thread.
    let reader_options = crate::readers::ReaderOptions {
        html: crate::readers::HtmlHandling::Defer,
        ..config.input.reader.clone()
    };
    let reader_options = &reader_options;
    let (batches_tx, batches_rx) = sync_channel::<Vec<Document>>(2);
    let (processed_tx, processed_rx) = sync_channel::<Vec<Processed>>(2);
    let (path, input_bytes, failure) = match &input {
        Input::File(path) => (
            *path,
            std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            None,
        ),
        Input::Stream(name, stream, size) => (*name, *size, Some(stream.failure())),
    };
    let (seen, read_time, written, processing) = std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let batch_size = config.run.batch_size;
            // The receiver only hangs up when processing or writing failed; that error is
            // the one reported.
            let mut send = |batch: Vec<Document>| {
                batches_tx
                    .send(batch)
                    .map_err(|_| anyhow::anyhow!("processing stopped"))
            };
            let seen = match input {
                Input::File(path) => read_in_batches(path, reader_options, batch_size, &mut send),
                Input::Stream(name, stream, _) => crate::readers::read_stream_in_batches(
                    name,
                    Box::new(stream),
                    reader_options,
                    batch_size,
                    &mut send,
                ),
            };
            (seen, thread_cpu())
        });
        let writer = scope.spawn(move || {
            write_work_files(files, processed_rx, bar).map(|mut w| {
                w.writing = thread_cpu();
                w
            })
        });
        let mut processing = Ok(());
        for batch in batches_rx {
            // On the run's pool also when this input is processed on a helper thread.
            let processed: Vec<Processed> =
                pool.install(|| batch.par_iter().map(|d| processor.process(d)).collect());
            if processed_tx.send(processed).is_err() {
                processing = Err(anyhow::anyhow!("writing the work files stopped"));
                break;
            }
        }
        drop(processed_tx);
        let (seen, read_time) = reader
            .join()
            .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?;
        let written = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the work file writer panicked"))?;
        anyhow::Ok((seen, read_time, written, processing))
    })?;
    // A stream that failed (the network, after retries) fails the task: its reader saw an
    // I/O error, which it would have reported as a damaged input.
    if let Some(e) = failure.and_then(|f| f.take()) {
        return Err(e);
    }
    let written = written?;
    let seen = seen?;
    processing?;
    let mut stage_seconds: BTreeMap<String, f64> = STAGES
        .iter()
        .zip(written.stage_nanos)
        .map(|(stage, n)| (stage.to_string(), n as f64 / 1e9))
        .collect();
    stage_seconds.insert("read".into(), read_time.as_secs_f64());
    stage_seconds.insert("write_work".into(), written.writing.as_secs_f64());
    let record = InputDone {
        input: path.display().to_string(),
        input_bytes,
        fingerprint: fingerprint.to_string(),
        docs: written.docs,
        kept: written.kept,
        skipped_records: seen.skipped,
        odd_markup_pages: written.odd_markup,
        issues: seen.issues.iter().map(ToString::to_string).collect(),
        text_bytes_in: written.bytes_in,
        text_bytes_kept: written.bytes_kept,
        kept_digest: written.kept_digest.map(|d| format!("{d:016x}")),
        seconds: started.elapsed().as_secs_f64(),
        stage_seconds,
    };
    write_json_atomic(&files.done, &record)?;
    Ok(record)
}

/// What the work file writer counted.
#[derive(Debug, Default)]
struct WorkWritten {
    docs: u64,
    kept: u64,
    bytes_in: u64,
    bytes_kept: u64,
    kept_digest: Option<u64>,
    odd_markup: u64,
    stage_nanos: [u64; STAGES.len()],
    /// The writer thread's CPU time: serializing and compressing.
    writing: Duration,
}

/// Writes the processed batches of one input, in order, to its work files.
fn write_work_files(
    files: &WorkFiles,
    batches: Receiver<Vec<Processed>>,
    bar: &ProgressBar,
) -> Result<WorkWritten> {
    let mut rows = JsonlWriter::create(&files.rows)?;
    let mut kept = JsonlWriter::create_hashed(&files.kept)?;
    let mut keys = BufWriter::new(
        std::fs::File::create(&files.keys)
            .with_context(|| format!("creating {}", files.keys.display()))?,
    );
    let mut counts = WorkWritten::default();
    for processed in batches {
        for p in processed {
            for (total, n) in counts.stage_nanos.iter_mut().zip(p.stage_nanos) {
                *total += n;
            }
            counts.docs += 1;
            counts.bytes_in += p.bytes_in;
            counts.odd_markup += u64::from(p.odd_markup);
            rows.write(&p.row)?;
            if let Some((doc, doc_keys)) = p.kept {
                counts.kept += 1;
                counts.bytes_kept += doc.text.len() as u64;
                kept.write(&doc)?;
                write_keys(&mut keys, &doc_keys)?;
            }
        }
        bar.set_message(format!("{} docs", counts.docs));
    }
    rows.finish()?;
    counts.kept_digest = kept.finish()?;
    std::io::Write::flush(&mut keys)?;
    Ok(counts)
}

fn deduplicate(
    config: &PipelineConfig,
    work: &Path,
    inputs: &[PathBuf],
    total: usize,
) -> Result<DedupResult> {
    let options = &config.dedup;
    let runs_dir = work.join("dedup-runs");
    let mut exact = options
        .exact
        .then(|| RunWriter::new(&runs_dir.join("exact"), options.run_entries))
        .transpose()?;
    let mut minhash = options
        .minhash
        .enabled
        .then(|| RunWriter::new(&runs_dir.join("minhash"), options.run_entries))
        .transpose()?;
    // Check signatures of every document, to check candidate pairs: bands x rows u16 each
    // (224 bytes with the defaults), kept only when the check is on.
    let check = options.minhash.enabled && options.minhash.min_similarity > 0.0;
    let width = options.minhash.bands * options.minhash.rows;
    let mut signatures: Vec<u16> = Vec::new();
    let mut doc = 0u64;
    for index in 0..inputs.len() {
        for keys in read_keys(&WorkFiles::new(work, index).keys)? {
            if let Some(w) = exact.as_mut() {
                w.push(0, keys.exact, doc)?;
            }
            if let Some(w) = minhash.as_mut() {
                for (band, key) in keys.bands.iter().enumerate() {
                    w.push(band as u32, *key, doc)?;
                }
            }
            if check {
                // A document without shingles has no signature: it matches nothing.
                match keys.signature.len() {
                    0 => signatures.extend(std::iter::repeat_n(u16::MAX, width)),
                    n if n == width => signatures.extend_from_slice(&keys.signature),
                    n => anyhow::bail!(
                        "dedup keys of input {index} hold signatures of {n} hashes, the config {width}: rerun without resuming"
                    ),
                }
            }
            doc += 1;
        }
    }
    let threshold = options.minhash.min_similarity;
    let signature = |d: u64| &signatures[d as usize * width..(d as usize + 1) * width];
    // The two are independent: built side by side.
    let (exact, minhash) = rayon::join(
        || exact.map(|w| Clusters::build(w, total)).transpose(),
        || {
            minhash
                .map(|w| {
                    if check {
                        Clusters::build_checked(w, total, |a, b| {
                            estimated_similarity(signature(a), signature(b)) >= threshold
                        })
                    } else {
                        Clusters::build(w, total)
                    }
                })
                .transpose()
        },
    );
    let (exact, minhash) = (exact?, minhash?);
    std::fs::remove_dir_all(&runs_dir).ok();
    Ok(DedupResult { exact, minhash })
}
