//! `pipeline extract`: the extractor on one page (an HTML file, or the HTML responses of a
//! WARC file), printing the text or, with `--explain`, every block's verdict; and a batch
//! mode over a JSONL of pages that the extraction benchmark (`scripts/bench-extract`) times
//! without process start-up in the way.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::extract::{Extraction, detect_encoding};
use crate::readers::{
    HtmlHandling, InputFormat, ReadEvent, ReaderOptions, open_decompressed, read_file,
};

/// `pipeline extract`: one page (or one response of a WARC) to stdout, or with `jsonl_out` a
/// batch of `{"id", "html"}` lines to `{"id", "text", "seconds"}` lines and a timing summary.
pub fn run(file: &Path, url: Option<&str>, explain: bool, jsonl_out: Option<&Path>) -> Result<()> {
    match jsonl_out {
        Some(out) => {
            let file_out = std::fs::File::create(out)
                .with_context(|| format!("creating {}", out.display()))?;
            let mut writer = std::io::BufWriter::new(file_out);
            let summary = extract_batch(file, &mut writer)?;
            writer.flush()?;
            print!("{}", summary.render());
        }
        None => {
            let printed = extract_file(file, url, explain, &mut std::io::stdout().lock());
            // `pipeline extract page.html | head` is not an error.
            let broken_pipe = |e: &anyhow::Error| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            };
            if let Err(e) = printed
                && !broken_pipe(&e)
            {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Prints the main text of `path` (HTML, or every HTML response of a WARC; with `url`, only
/// that record), or the explanation of it. Returns how many pages were extracted.
pub fn extract_file(
    path: &Path,
    url: Option<&str>,
    explain: bool,
    out: &mut dyn Write,
) -> Result<usize> {
    let is_warc = matches!(
        InputFormat::detect(path),
        Some(InputFormat::Warc | InputFormat::Wet)
    );
    if !is_warc {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let (html, _, _) = detect_encoding(&bytes, None, url).decode(&bytes);
        write_page(&html, None, explain, out)?;
        return Ok(1);
    }
    let options = ReaderOptions {
        html: HtmlHandling::Decode,
        ..ReaderOptions::default()
    };
    let mut pages = 0;
    let mut failed: Option<std::io::Error> = None;
    read_file(path, &options, &mut |event| {
        let ReadEvent::Document(doc) = event else {
            return;
        };
        if url.is_some_and(|u| doc.url.as_deref() != Some(u)) || failed.is_some() {
            return;
        }
        pages += 1;
        if let Err(e) = write_page(
            &doc.text,
            Some(doc.url.as_deref().unwrap_or(&doc.id)),
            explain,
            out,
        ) {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    if pages == 0 {
        match url {
            Some(u) => bail!("no HTML response for {u} in {}", path.display()),
            None => bail!("no HTML response in {}", path.display()),
        }
    }
    Ok(pages)
}

fn write_page(
    html: &str,
    title: Option<&str>,
    explain: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let extraction = Extraction::of(html);
    if let Some(title) = title {
        writeln!(out, "==> {title}")?;
    }
    if explain {
        write!(out, "{}", extraction.explain())
    } else {
        writeln!(out, "{}", extraction.text())
    }
}

/// A page of the batch input.
#[derive(Debug, Deserialize)]
struct BatchPage {
    id: String,
    html: String,
}

/// A line of the batch output.
#[derive(Debug, Serialize)]
struct BatchText<'a> {
    id: &'a str,
    text: String,
    seconds: f64,
}

/// What a batch run did.
#[derive(Debug, Default, Serialize)]
pub struct BatchSummary {
    pub pages: usize,
    pub empty: usize,
    pub html_bytes: usize,
    /// Time spent extracting (one thread), reading and writing excluded.
    pub seconds: f64,
}

impl BatchSummary {
    pub fn render(&self) -> String {
        format!(
            "pages {}, extracted as empty {}, HTML {:.1} MB in {:.3} s: {:.1} MB/s on one thread\n",
            self.pages,
            self.empty,
            self.html_bytes as f64 / 1e6,
            self.seconds,
            self.html_bytes as f64 / 1e6 / self.seconds.max(1e-9)
        )
    }
}

/// Extracts every page of a JSONL file (`{"id", "html"}` a line, `.gz`/`.zst` read as such)
/// into `{"id", "text", "seconds"}` lines, one thread, timing only the extraction.
pub fn extract_batch(input: &Path, output: &mut dyn Write) -> Result<BatchSummary> {
    let reader =
        open_decompressed(input).with_context(|| format!("opening {}", input.display()))?;
    let mut summary = BatchSummary::default();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", input.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let page: BatchPage = serde_json::from_str(&line).with_context(|| {
            format!(
                "{}: line {}: not a {{\"id\", \"html\"}} page",
                input.display(),
                n + 1
            )
        })?;
        let start = Instant::now();
        let text = Extraction::of(&page.html).text();
        let seconds = start.elapsed().as_secs_f64();
        summary.pages += 1;
        summary.empty += usize::from(text.trim().is_empty());
        summary.html_bytes += page.html.len();
        summary.seconds += seconds;
        serde_json::to_writer(
            &mut *output,
            &BatchText {
                id: &page.id,
                text,
                seconds,
            },
        )?;
        output.write_all(b"\n")?;
    }
    Ok(summary)
}
