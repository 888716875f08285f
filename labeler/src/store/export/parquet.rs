//! Parquet copies of the JSONL exports: the same records and fields, with conversations as
//! `list<struct<role, content>>` columns and `meta` as a JSON string (its keys differ by task).
//! Rows go out in row groups as they stream from the database, so memory stays bounded.

use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value;
use sqlx::PgPool;

use crate::store::StoreError;
use crate::store::export::{self, ExportPart};
use crate::store::projects::Project;

const ROWS_PER_GROUP: usize = 8192;

fn conversation() -> DataType {
    let message = Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ]);
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(message),
        false,
    )))
}

/// The Parquet schema of a part.
pub fn schema(part: ExportPart) -> Schema {
    let conv = |name: &str| Field::new(name, conversation(), false);
    let mut fields = vec![Field::new("id", DataType::Utf8, false)];
    match part {
        ExportPart::Sft => fields.push(conv("messages")),
        ExportPart::Pairs => fields.extend([conv("prompt"), conv("chosen"), conv("rejected")]),
        ExportPart::Ties => fields.extend([
            conv("prompt"),
            Field::new(
                "candidates",
                DataType::List(Arc::new(Field::new("item", conversation(), false))),
                false,
            ),
            Field::new("label", DataType::Utf8, false),
        ]),
        ExportPart::Rankings => fields.extend([
            conv("prompt"),
            Field::new(
                "completions",
                DataType::List(Arc::new(Field::new("item", conversation(), false))),
                false,
            ),
            Field::new(
                "ranks",
                DataType::List(Arc::new(Field::new("item", DataType::Int64, false))),
                false,
            ),
        ]),
        ExportPart::Ratings => fields.extend([
            conv("prompt"),
            conv("completion"),
            Field::new("label", DataType::Boolean, false),
        ]),
    }
    fields.push(Field::new("meta", DataType::Utf8, false));
    Schema::new(fields)
}

fn unexpected(e: impl std::fmt::Display) -> StoreError {
    StoreError::unexpected(anyhow::anyhow!("parquet export: {e}"))
}

/// Writes a part to `path` as Parquet; returns the number of records.
pub async fn write(
    pool: &PgPool,
    project: &Project,
    part: ExportPart,
    accepted_only: bool,
    path: &Path,
) -> Result<usize, StoreError> {
    let schema = Arc::new(schema(part));
    let file = std::fs::File::create(path)
        .map_err(|e| unexpected(format!("creating {}: {e}", path.display())))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(unexpected)?;
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .build_decoder()
        .map_err(unexpected)?;
    let mut rows: Vec<Value> = Vec::with_capacity(ROWS_PER_GROUP);
    let mut records = 0;
    let mut flush = |rows: &mut Vec<Value>, writer: &mut ArrowWriter<std::fs::File>| {
        if rows.is_empty() {
            return Ok::<_, StoreError>(());
        }
        decoder.serialize(rows).map_err(unexpected)?;
        if let Some(batch) = decoder.flush().map_err(unexpected)? {
            write_batch(writer, &batch)?;
        }
        rows.clear();
        Ok(())
    };
    let mut rx = export::spawn_jsonl(pool.clone(), project.clone(), part, accepted_only);
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.map_err(unexpected)?;
        for line in chunk.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let mut record: Value = serde_json::from_slice(line).map_err(unexpected)?;
            let meta = record.get("meta").map(Value::to_string).unwrap_or_default();
            record["meta"] = Value::String(meta);
            rows.push(record);
            records += 1;
        }
        if rows.len() >= ROWS_PER_GROUP {
            flush(&mut rows, &mut writer)?;
        }
    }
    flush(&mut rows, &mut writer)?;
    writer.close().map_err(unexpected)?;
    Ok(records)
}

fn write_batch(
    writer: &mut ArrowWriter<std::fs::File>,
    batch: &RecordBatch,
) -> Result<(), StoreError> {
    writer.write(batch).map_err(unexpected)
}
