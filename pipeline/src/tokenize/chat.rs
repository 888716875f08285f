//! `pipeline tokenize-chat`: labeler exports (the TRL / Hugging Face shapes of ARCHITECTURE.md,
//! as JSONL or as the labeler's Parquet with `meta` as a JSON string) to `sft`, `preference` or
//! `unpaired` (thumbs up / down) datasets, rendered with `format::ChatTemplate` so the loss mask
//! and the Hugging Face chat template agree. Every example keeps its record id and
//! provenance; every dropped, truncated or broken example is counted, never silent.

use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use format::{
    ChatTemplate, DatasetKind, Message, PreferencePair, Role, SftExample, ShardWriter,
    UnpairedExample,
};
use serde::{Deserialize, Serialize};

use super::LoadedTokenizer;
use crate::readers::{InputFormat, expand_inputs, open_decompressed};

/// What to do with an example longer than `max_seq_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Truncation {
    /// Leave the example out (counted).
    #[default]
    Drop,
    /// SFT: keep whole turns up to the last complete assistant turn that fits.
    /// Preference: cut the prompt from the left so the longer answer fits (unpaired: the answer).
    Truncate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatTokenizeOptions {
    pub kind: DatasetKind,
    pub inputs: Vec<String>,
    pub tokenizer: PathBuf,
    pub output: PathBuf,
    pub max_seq_len: usize,
    pub truncation: Truncation,
    pub overwrite: bool,
}

/// Counts of a chat tokenization run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatSummary {
    pub records: u64,
    pub written: u64,
    pub dropped_too_long: u64,
    pub truncated: u64,
    /// Records that could not be used, with file, line and id.
    pub errors: Vec<String>,
    pub tokens: u64,
    pub supervised_tokens: u64,
}

impl ChatSummary {
    pub fn render(&self) -> String {
        let mut s = format!(
            "records {}, written {}, dropped (too long) {}, truncated {}, errors {}, tokens {} ({} supervised)\n",
            self.records,
            self.written,
            self.dropped_too_long,
            self.truncated,
            self.errors.len(),
            self.tokens,
            self.supervised_tokens
        );
        for e in self.errors.iter().take(20) {
            s.push_str(&format!("  error: {e}\n"));
        }
        s
    }
}

#[derive(Debug, Deserialize)]
struct SftRecord {
    id: String,
    messages: Vec<Message>,
    #[serde(default, deserialize_with = "meta")]
    meta: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct PreferenceRecord {
    id: String,
    prompt: Vec<Message>,
    chosen: Vec<Message>,
    rejected: Vec<Message>,
    #[serde(default, deserialize_with = "meta")]
    meta: serde_json::Value,
}

/// TRL's unpaired shape (a rating export): one answer and whether it was liked. `id` is
/// optional there; without it the example is named after its file and place.
#[derive(Debug, Deserialize)]
struct UnpairedRecord {
    #[serde(default)]
    id: Option<String>,
    prompt: Vec<Message>,
    completion: Vec<Message>,
    #[serde(deserialize_with = "thumbs")]
    label: bool,
    #[serde(default, deserialize_with = "meta")]
    meta: serde_json::Value,
}

/// `label` as JSON true / false only: "yes", 1 or null are the exporter's mistake, named.
fn thumbs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Ok(b),
        other => Err(serde::de::Error::custom(format!(
            "`label` must be true (thumbs up) or false (thumbs down), found {other}"
        ))),
    }
}

/// `meta` as an object (JSONL) or as the JSON string Parquet exports carry.
fn meta<'de, D: serde::Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(text) => {
            serde_json::from_str(&text).map_err(serde::de::Error::custom)
        }
        value => Ok(value),
    }
}

/// Where a record sits in its file: a JSONL line or a Parquet row, both counted from 1.
#[derive(Debug, Clone, Copy)]
enum Place {
    Line(u64),
    Row(u64),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(n) => write!(f, "line {n}"),
            Self::Row(n) => write!(f, "row {n}"),
        }
    }
}

fn is_parquet(file: &Path) -> bool {
    file.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Hands every record of an export file to `each` as one line of JSON text. Parquet is read
/// a row batch at a time and each row turned into the JSON object of the JSONL export, so
/// both formats go through the same checks.
fn for_each_record(file: &Path, each: &mut dyn FnMut(Place, &str)) -> Result<()> {
    if !is_parquet(file) {
        let reader = open_decompressed(file)?;
        for (number, line) in reader.lines().enumerate() {
            let place = Place::Line(number as u64 + 1);
            let line = line.with_context(|| format!("{place}"))?;
            if !line.trim().is_empty() {
                each(place, &line);
            }
        }
        return Ok(());
    }
    let rows = ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(file)?,
    )
    .and_then(|b| b.with_batch_size(1024).build())
    .context("not a readable Parquet file")?;
    let mut row = 0;
    let mut json = Vec::new();
    for batch in rows {
        let batch = batch.with_context(|| format!("reading the rows after row {row}"))?;
        json.clear();
        let mut writer = arrow_json::LineDelimitedWriter::new(&mut json);
        writer
            .write(&batch)
            .and_then(|()| writer.finish())
            .with_context(|| format!("converting the rows after row {row}"))?;
        for line in json.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            row += 1;
            each(Place::Row(row), std::str::from_utf8(line)?);
        }
    }
    Ok(())
}

/// Tokenizes every record of the inputs into one dataset.
pub fn tokenize_chat(options: &ChatTokenizeOptions) -> Result<ChatSummary> {
    if options.kind == DatasetKind::Pretrain {
        bail!(
            "tokenize-chat makes sft, preference or unpaired datasets; use `pipeline tokenize` for pretraining"
        );
    }
    let tokenizer = LoadedTokenizer::load(&options.tokenizer)?;
    let template = ChatTemplate::from_special_tokens(&tokenizer.spec.special_tokens)
        .with_context(|| format!("{}", options.tokenizer.display()))?;
    let files = expand_inputs(&options.inputs, InputFormat::Auto)?;
    let writer = ShardWriter::builder(&options.output, options.kind, tokenizer.spec.clone())
        .overwrite(options.overwrite)
        .config(serde_json::to_value(options)?)
        .build()?;
    let mut out = ChatWriter {
        template: &template,
        tokenizer: &tokenizer,
        options,
        writer,
        summary: ChatSummary::default(),
    };
    for file in &files {
        for_each_record(file, &mut |place, line| {
            out.summary.records += 1;
            let result = match options.kind {
                DatasetKind::Sft => out.sft_line(line, file, place),
                DatasetKind::Unpaired => out.unpaired_line(line, file, place),
                _ => out.preference_line(line, file, place),
            };
            if let Err(e) = result {
                out.summary
                    .errors
                    .push(format!("{}: {place}: {e:#}", file.display()));
            }
        })
        .with_context(|| format!("{}", file.display()))?;
    }
    let ChatWriter {
        writer, summary, ..
    } = out;
    writer.finish()?;
    Ok(summary)
}

fn provenance(file: &Path, place: Place, meta: &serde_json::Value) -> String {
    let (key, n) = match place {
        Place::Line(n) => ("line", n),
        Place::Row(n) => ("row", n),
    };
    serde_json::json!({"file": file.display().to_string(), key: n, "meta": meta}).to_string()
}

/// The state of one `tokenize-chat` run: the template bound to the tokenizer, the dataset
/// being written and the counts.
struct ChatWriter<'a> {
    template: &'a ChatTemplate,
    tokenizer: &'a LoadedTokenizer,
    options: &'a ChatTokenizeOptions,
    writer: ShardWriter,
    summary: ChatSummary,
}

impl ChatWriter<'_> {
    fn sft_line(&mut self, line: &str, file: &Path, place: Place) -> Result<()> {
        let (template, tokenizer, options) = (self.template, self.tokenizer, self.options);
        let (writer, summary) = (&mut self.writer, &mut self.summary);
        let record: SftRecord =
            serde_json::from_str(line).context("not an SFT record {id, messages, meta}")?;
        let mut rendered = template
            .render(&record.messages, tokenizer)
            .with_context(|| format!("record {:?}", record.id))?;
        if rendered.input_ids.len() > options.max_seq_len {
            match options.truncation {
                Truncation::Drop => {
                    summary.dropped_too_long += 1;
                    return Ok(());
                }
                Truncation::Truncate => {
                    // Cut after the last supervised end-of-turn that fits: never train on an
                    // answer that does not end.
                    let end = template.end_of_turn();
                    let keep = (0..options.max_seq_len)
                        .rev()
                        .find(|&i| rendered.input_ids[i] == end && rendered.loss_mask[i] == 1)
                        .map(|i| i + 1)
                        .with_context(|| {
                            format!(
                                "record {:?}: no complete assistant turn fits in max_seq_len {}",
                                record.id, options.max_seq_len
                            )
                        })?;
                    rendered.input_ids.truncate(keep);
                    rendered.loss_mask.truncate(keep);
                    summary.truncated += 1;
                }
            }
        }
        let supervised = rendered.loss_mask.iter().filter(|&&m| m == 1).count();
        writer
            .write(SftExample {
                example_id: &record.id,
                input_ids: &rendered.input_ids,
                loss_mask: &rendered.loss_mask,
                source_record: &provenance(file, place, &record.meta),
            })
            .with_context(|| format!("record {:?}", record.id))?;
        summary.written += 1;
        summary.tokens += rendered.input_ids.len() as u64;
        summary.supervised_tokens += supervised as u64;
        Ok(())
    }

    fn preference_line(&mut self, line: &str, file: &Path, place: Place) -> Result<()> {
        let (template, tokenizer, options) = (self.template, self.tokenizer, self.options);
        let (writer, summary) = (&mut self.writer, &mut self.summary);
        let record: PreferenceRecord = serde_json::from_str(line)
            .context("not a preference record {id, prompt, chosen, rejected, meta}")?;
        let context = || format!("record {:?}", record.id);
        let mut prompt = template
            .render_prompt(&record.prompt, tokenizer)
            .with_context(context)?;
        let chosen = template
            .render_completion(answer(&record.chosen, "chosen")?, tokenizer)
            .with_context(context)?;
        let rejected = template
            .render_completion(answer(&record.rejected, "rejected")?, tokenizer)
            .with_context(context)?;
        let longest = chosen.len().max(rejected.len());
        if prompt.len() + longest > options.max_seq_len {
            match options.truncation {
                Truncation::Drop => {
                    summary.dropped_too_long += 1;
                    return Ok(());
                }
                Truncation::Truncate => {
                    if longest >= options.max_seq_len {
                        summary.dropped_too_long += 1;
                        return Ok(());
                    }
                    cut_prompt_front(&mut prompt, options.max_seq_len - longest, template.bos());
                    summary.truncated += 1;
                }
            }
        }
        writer
            .write(PreferencePair {
                pair_id: &record.id,
                prompt_ids: &prompt,
                chosen_ids: &chosen,
                rejected_ids: &rejected,
                source_record: &provenance(file, place, &record.meta),
            })
            .with_context(context)?;
        summary.written += 1;
        summary.tokens += (prompt.len() + chosen.len() + rejected.len()) as u64;
        summary.supervised_tokens += (chosen.len() + rejected.len()) as u64;
        Ok(())
    }
}

impl ChatWriter<'_> {
    fn unpaired_line(&mut self, line: &str, file: &Path, place: Place) -> Result<()> {
        let (template, tokenizer, options) = (self.template, self.tokenizer, self.options);
        let (writer, summary) = (&mut self.writer, &mut self.summary);
        let record: UnpairedRecord = serde_json::from_str(line)
            .context("not an unpaired record {id, prompt, completion, label: true|false, meta}")?;
        let id = record.id.clone().unwrap_or_else(|| {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default();
            format!("{stem}:{place}")
        });
        let context = || format!("record {id:?}");
        let mut prompt = template
            .render_prompt(&record.prompt, tokenizer)
            .with_context(context)?;
        let completion = template
            .render_completion(answer(&record.completion, "completion")?, tokenizer)
            .with_context(context)?;
        if prompt.len() + completion.len() > options.max_seq_len {
            if options.truncation == Truncation::Drop || completion.len() >= options.max_seq_len {
                summary.dropped_too_long += 1;
                return Ok(());
            }
            cut_prompt_front(
                &mut prompt,
                options.max_seq_len - completion.len(),
                template.bos(),
            );
            summary.truncated += 1;
        }
        writer
            .write(UnpairedExample {
                example_id: &id,
                prompt_ids: &prompt,
                completion_ids: &completion,
                label: record.label,
                source_record: &provenance(file, place, &record.meta),
            })
            .with_context(context)?;
        summary.written += 1;
        summary.tokens += (prompt.len() + completion.len()) as u64;
        summary.supervised_tokens += completion.len() as u64;
        Ok(())
    }
}

/// Keeps the last `keep` ids of a prompt that is too long, its BOS (if any) staying first:
/// a truncated prompt still starts the way every example does.
fn cut_prompt_front(prompt: &mut Vec<u32>, keep: usize, bos: Option<u32>) {
    let first = usize::from(bos.is_some() && prompt.first() == bos.as_ref());
    let keep = keep.max(first);
    if prompt.len() > keep {
        prompt.drain(first..first + prompt.len() - keep);
    }
}

/// The single assistant answer of a `chosen` / `rejected` / `completion` list.
fn answer<'m>(messages: &'m [Message], field: &str) -> Result<&'m str> {
    match messages {
        [m] if m.role == Role::Assistant => Ok(&m.content),
        _ => bail!(
            "`{field}` must hold exactly one assistant message, found {}",
            messages.len()
        ),
    }
}
