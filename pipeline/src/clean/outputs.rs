//! Stage 3 of `pipeline clean` (and the `survivors` stage of a split run): the kept documents
//! that survive dedup and the docs tables, per input. Inputs are written in parallel, and
//! within an input the kept documents and the docs table side by side: the dedup verdicts
//! are taken first (they need only the documents' numbers), so neither waits for the other.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use rayon::prelude::*;
use serde::Deserialize;

use super::docs_table::{DedupInfo, write_docs_table, write_kept_parquet};
use super::summary::RunSummary;
use super::work::{DocRow, InputDone, JsonlWriter, KeptDoc, WorkFiles, open_lines, read_jsonl_zst};
use crate::config::{KeptFormat, PipelineConfig};
use crate::dedup::Clusters;
use crate::filters::score_names;

/// Bytes of kept JSON lines handed to the compressing thread at a time.
const WRITE_CHUNK: usize = 1 << 20;

/// Per kept document (global number): exact cluster, near-duplicate cluster.
pub(super) struct DedupResult {
    pub exact: Option<Clusters>,
    pub minhash: Option<Clusters>,
}

/// Without dedup every document that passes the filters is kept: stage 1 then writes the
/// kept documents straight to their output file (compressed on the writer thread, while the
/// next batch is processed), and stage 3 only writes the docs tables.
pub(super) fn kept_written_directly(config: &PipelineConfig) -> bool {
    !config.dedup.exact
        && !config.dedup.minhash.enabled
        && config.output.kept_format == KeptFormat::Jsonl
}

/// Input `index`'s work files, with the kept documents in the output when
/// [`kept_written_directly`].
pub(super) fn work_files(config: &PipelineConfig, work: &Path, index: usize) -> WorkFiles {
    let mut files = WorkFiles::new(work, index);
    if kept_written_directly(config) {
        files.kept = config
            .output
            .dir
            .join(format!("kept/part-{index:05}.jsonl.zst"));
    }
    files
}

/// What dedup says of one kept document: its docs-table columns, and the stage and cluster
/// that drop it, if any.
type Verdict = (DedupInfo, Option<(&'static str, u64)>);

/// The verdict on kept document number `n`.
fn verdict(dedup: &mut DedupResult, n: u64) -> Verdict {
    let mut info = DedupInfo::default();
    let mut duplicate = None;
    if let Some(exact) = dedup.exact.as_mut() {
        let (cluster, dup, size) = exact.of(n);
        info.exact_cluster_size = Some(size);
        info.cluster = Some(cluster);
        if dup {
            duplicate = Some(("exact_dedup", cluster));
        }
    }
    if let Some(near) = dedup.minhash.as_mut() {
        let (cluster, dup, size) = near.of(n);
        info.minhash_cluster_size = Some(size);
        if duplicate.is_none() {
            info.cluster = Some(cluster);
            if dup {
                duplicate = Some(("minhash_dedup", cluster));
            }
        }
    }
    (info, duplicate)
}

/// Writes the kept documents and docs tables of inputs `indices` (`done` and `first_doc`,
/// the global number of each one's first kept document, aligned with them). Inputs go in
/// groups of as many as the pool has threads; the verdicts of a group are taken before it
/// is written, so at most one group's verdicts are held at a time.
pub(super) fn write_outputs(
    config: &PipelineConfig,
    work: &Path,
    indices: &[usize],
    done: &[InputDone],
    first_doc: &[u64],
    mut dedup: DedupResult,
    summary: &mut RunSummary,
) -> Result<()> {
    let out = &config.output.dir;
    let kept_dir = out.join("kept");
    std::fs::create_dir_all(&kept_dir)
        .with_context(|| format!("creating {}", kept_dir.display()))?;
    let names = score_names();
    let jobs: Vec<_> = indices.iter().zip(done).zip(first_doc).collect();
    for group in jobs.chunks(rayon::current_num_threads().max(1)) {
        let verdicts: Vec<Vec<Verdict>> = group
            .iter()
            .map(|((_, input), first)| {
                (**first..**first + input.kept)
                    .map(|n| verdict(&mut dedup, n))
                    .collect()
            })
            .collect();
        let written = group
            .par_iter()
            .zip(&verdicts)
            .map(|(((index, input), _), verdicts)| {
                let files = work_files(config, work, **index);
                write_input(
                    config, &files, &kept_dir, out, **index, input, verdicts, &names,
                )
            })
            .collect::<Vec<_>>();
        for result in written {
            let written = result?;
            summary.docs_out += written.docs_out;
            summary.text_bytes_out += written.bytes_out;
            for (stage, n) in written.dropped_by {
                *summary.dropped_by.entry(stage).or_default() += n;
            }
        }
    }
    Ok(())
}

/// What writing one input's outputs adds to the run summary.
struct Written {
    docs_out: u64,
    bytes_out: u64,
    dropped_by: Vec<(String, u64)>,
}

/// One input's kept documents and docs table, side by side.
#[allow(clippy::too_many_arguments)]
fn write_input(
    config: &PipelineConfig,
    files: &WorkFiles,
    kept_dir: &Path,
    out: &Path,
    index: usize,
    input: &InputDone,
    verdicts: &[Verdict],
    names: &[&str],
) -> Result<Written> {
    let survives: Vec<bool> = verdicts.iter().map(|(_, dup)| dup.is_none()).collect();
    let (kept, dropped_by) = rayon::join(
        || {
            if kept_written_directly(config) {
                Ok((input.kept, input.text_bytes_kept))
            } else {
                write_survivors(config, files, kept_dir, index, input, &survives)
            }
        },
        || {
            let path = out.join(format!("docs-{index:05}.parquet"));
            write_table(files, &path, verdicts, names)
        },
    );
    let (docs_out, bytes_out) = kept?;
    Ok(Written {
        docs_out,
        bytes_out,
        dropped_by: dropped_by?,
    })
}

/// Reads input's rows, gives the kept ones their dedup verdicts in order, writes the docs
/// table to `path`; returns how many rows each stage dropped.
fn write_table(
    files: &WorkFiles,
    path: &Path,
    verdicts: &[Verdict],
    names: &[&str],
) -> Result<Vec<(String, u64)>> {
    let mut table = Vec::new();
    let mut dropped_by: std::collections::BTreeMap<String, u64> = Default::default();
    let mut next = verdicts.iter();
    for row in read_jsonl_zst::<DocRow>(&files.rows)? {
        let mut row = row?;
        let mut info = DedupInfo::default();
        if row.dropped_by.is_none() {
            let (dedup_info, duplicate) = next.next().with_context(|| {
                format!(
                    "{} has more kept documents than its done record ({})",
                    files.rows.display(),
                    verdicts.len()
                )
            })?;
            info = *dedup_info;
            if let Some((stage, cluster)) = duplicate {
                row.dropped_by = Some(stage.to_string());
                row.drop_reason = Some(format!("duplicate of document #{cluster}"));
            }
        }
        if let Some(stage) = &row.dropped_by {
            *dropped_by.entry(stage.clone()).or_default() += 1;
        }
        table.push((row, info));
    }
    ensure!(
        next.next().is_none(),
        "{} has fewer kept documents than its done record ({})",
        files.rows.display(),
        verdicts.len()
    );
    write_docs_table(path, names, &table)?;
    Ok(dropped_by.into_iter().collect())
}

/// Writes the kept documents of input `index` that survive dedup (`survives`, in order);
/// returns how many and their text bytes. JSON lines are copied as they are, not parsed and
/// serialized again: only the lines dedup drops are parsed, for their text bytes, which are
/// taken from the input's (`input.text_bytes_kept`, the text bytes of all its kept
/// documents), since most documents survive.
fn write_survivors(
    config: &PipelineConfig,
    files: &WorkFiles,
    kept_dir: &Path,
    index: usize,
    input: &InputDone,
    survives: &[bool],
) -> Result<(u64, u64)> {
    let mut reader = open_lines(&files.kept)?;
    let reading = || format!("reading {}", files.kept.display());
    let too_few = || format!("{} has fewer documents than its rows", files.kept.display());
    let parsing = || format!("parsing a line of {}", files.kept.display());
    let (mut docs, mut bytes) = (0u64, 0u64);
    let mut digest = xxhash_rust::xxh3::Xxh3::new();
    match config.output.kept_format {
        KeptFormat::Jsonl => {
            // Compressed on a thread of its own while this one decompresses and selects.
            let path = kept_dir.join(format!("part-{index:05}.jsonl.zst"));
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
            std::thread::scope(|scope| -> Result<()> {
                let writer = scope.spawn(move || -> Result<()> {
                    let mut w = JsonlWriter::create(&path)?;
                    for chunk in rx {
                        w.write_lines(&chunk)?;
                    }
                    w.finish().map(drop)
                });
                let selected = (|| -> Result<()> {
                    // Surviving lines are read straight into the chunk handed to the
                    // writer; a dropped line is taken out again.
                    let mut chunk = Vec::with_capacity(WRITE_CHUNK);
                    let (mut dropped_bytes, mut stopped) = (0u64, false);
                    for &keep in survives {
                        let start = chunk.len();
                        let n = reader.read_until(b'\n', &mut chunk).with_context(reading)?;
                        ensure!(n > 0, too_few());
                        if chunk.last() != Some(&b'\n') {
                            chunk.push(b'\n');
                        }
                        digest.update(&chunk[start..]);
                        if !keep {
                            let line = &chunk[start..chunk.len() - 1];
                            let doc: KeptText<'_> =
                                serde_json::from_slice(line).with_context(parsing)?;
                            dropped_bytes += doc.text.len() as u64;
                            chunk.truncate(start);
                        } else {
                            docs += 1;
                            if chunk.len() >= WRITE_CHUNK {
                                let full =
                                    std::mem::replace(&mut chunk, Vec::with_capacity(WRITE_CHUNK));
                                if tx.send(full).is_err() {
                                    stopped = true;
                                    break; // the writer failed: its error is below
                                }
                            }
                        }
                    }
                    tx.send(chunk).ok();
                    if !stopped {
                        check_digest(&digest, input, &files.kept)?;
                    }
                    bytes = input
                        .text_bytes_kept
                        .checked_sub(dropped_bytes)
                        .with_context(|| {
                            format!(
                                "{} holds more text than its done record ({} bytes)",
                                files.kept.display(),
                                input.text_bytes_kept
                            )
                        })?;
                    Ok(())
                })();
                drop(tx);
                let written = writer
                    .join()
                    .map_err(|_| anyhow::anyhow!("the kept writer thread panicked"))?;
                selected.and(written)
            })?;
        }
        KeptFormat::Parquet => {
            let mut survivors = Vec::new();
            let mut lines = reader.lines();
            for &keep in survives {
                let line = lines.next().with_context(too_few)?.with_context(reading)?;
                digest.update(line.as_bytes());
                digest.update(b"\n");
                if keep {
                    let doc: KeptDoc = serde_json::from_str(&line).with_context(parsing)?;
                    docs += 1;
                    bytes += doc.text.len() as u64;
                    survivors.push(doc);
                }
            }
            check_digest(&digest, input, &files.kept)?;
            write_kept_parquet(
                &kept_dir.join(format!("part-{index:05}.parquet")),
                &survivors,
            )?;
        }
    }
    Ok((docs, bytes))
}

/// Fails, naming the file, when the kept documents read back are not what the clean stage
/// wrote (its done record's digest; records of earlier builds have none).
fn check_digest(digest: &xxhash_rust::xxh3::Xxh3, input: &InputDone, path: &Path) -> Result<()> {
    let read = format!("{:016x}", digest.digest());
    if let Some(written) = &input.kept_digest {
        ensure!(
            *written == read,
            "{} is not what the clean stage wrote for {} (xxh3 {read}, recorded {written}): \
             the work file is corrupt; rerun the clean stage for this input",
            path.display(),
            input.input
        );
    }
    Ok(())
}

/// The text of a kept document's JSON line (borrowed when it has no escapes).
#[derive(Deserialize)]
struct KeptText<'a> {
    #[serde(borrow)]
    text: std::borrow::Cow<'a, str>,
}
