//! Parquet through polars' lazy scan, read in slices so a large file never sits in memory.

use std::path::Path;

use anyhow::Result;
use polars::prelude::{DataType, LazyFrame, PlRefPath, ScanArgsParquet, col};

use super::{ReadEvent, ReaderOptions, issue_at, source_label};
use crate::document::{Document, Location};

const SLICE_ROWS: u32 = 8192;

pub fn read(path: &Path, options: &ReaderOptions, emit: &mut dyn FnMut(ReadEvent)) -> Result<()> {
    let issue = |location: Location, message: String| issue_at(path, location, message);
    let source = source_label(path);
    let scan = || {
        let target = PlRefPath::new(path.to_string_lossy().as_ref());
        LazyFrame::scan_parquet(target, ScanArgsParquet::default())
    };
    let schema = match scan().and_then(|mut lf| lf.collect_schema()) {
        Ok(s) => s,
        Err(e) => {
            emit(issue(
                Location::File,
                format!("not a readable Parquet file: {e}"),
            ));
            return Ok(());
        }
    };
    let mut columns = vec![options.text_field.clone()];
    if !schema.contains(&options.text_field) {
        emit(issue(
            Location::File,
            format!(
                "no column `{}` (columns: {:?})",
                options.text_field,
                schema.iter_names().collect::<Vec<_>>()
            ),
        ));
        return Ok(());
    }
    let optional = |name: &Option<String>| name.clone().filter(|n| schema.contains(n));
    let id_col = optional(&options.id_field);
    let url_col = optional(&options.url_field);
    columns.extend(id_col.iter().cloned());
    columns.extend(url_col.iter().cloned());

    let mut offset: i64 = 0;
    loop {
        let frame = scan().and_then(|lf| {
            lf.select(
                columns
                    .iter()
                    .map(|c| col(c.as_str()).cast(DataType::String))
                    .collect::<Vec<_>>(),
            )
            .slice(offset, SLICE_ROWS)
            .collect()
        });
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                emit(issue(
                    Location::Row(offset as u64),
                    format!("reading rows: {e}"),
                ));
                return Ok(());
            }
        };
        if frame.height() == 0 {
            return Ok(());
        }
        let string_col = |name: &str| frame.column(name).ok().and_then(|c| c.str().ok().cloned());
        let texts = string_col(&options.text_field);
        let ids = id_col.as_deref().and_then(string_col);
        let urls = url_col.as_deref().and_then(string_col);
        let Some(texts) = texts else {
            emit(issue(
                Location::File,
                format!("column `{}` is not text", options.text_field),
            ));
            return Ok(());
        };
        for i in 0..frame.height() {
            let row = offset as u64 + i as u64;
            let Some(text) = texts.get(i) else {
                emit(issue(
                    Location::Row(row),
                    format!("`{}` is null", options.text_field),
                ));
                continue;
            };
            if text.len() > options.max_document_bytes {
                emit(issue(
                    Location::Row(row),
                    format!("text of {} bytes exceeds max_document_bytes", text.len()),
                ));
                continue;
            }
            emit(ReadEvent::Document(Document {
                id: ids
                    .as_ref()
                    .and_then(|c| c.get(i))
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{source}:{row}")),
                url: urls.as_ref().and_then(|c| c.get(i)).map(str::to_string),
                text: text.to_string(),
                source: source.clone(),
                odd_markup: false,
                html: None,
            }));
        }
        offset += frame.height() as i64;
    }
}
