//! A document encoded for a dataset (its id, source and token ids, EOS appended), and its
//! record in the files encoded documents wait in: shuffle buckets, and a split run's
//! encoded files (zstd-compressed, as they cross the network).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};

use super::LoadedTokenizer;
use crate::document::Document;

/// An encoded document on its way to a shard.
#[derive(Debug, Clone)]
pub(super) struct Encoded {
    pub(super) id: String,
    pub(super) source: String,
    pub(super) tokens: Vec<u32>,
}

/// Encodes one document: BOS first when the tokenizer has one, EOS appended.
pub(super) fn encode(
    tokenizer: &LoadedTokenizer,
    eos: u32,
    doc: &Document,
    max_piece_bytes: usize,
) -> Result<Encoded> {
    let mut tokens: Vec<u32> = tokenizer.bos().into_iter().collect();
    tokens.extend(
        tokenizer
            .encode_long(&doc.text, max_piece_bytes)
            .with_context(|| format!("document {}", doc.id))?,
    );
    tokens.push(eos);
    Ok(Encoded {
        id: doc.id.clone(),
        source: doc.source.clone(),
        tokens,
    })
}

pub(super) fn write_record(out: &mut impl Write, doc: &Encoded) -> Result<()> {
    for s in [&doc.id, &doc.source] {
        out.write_all(&(s.len() as u32).to_le_bytes())?;
        out.write_all(s.as_bytes())?;
    }
    out.write_all(&(doc.tokens.len() as u32).to_le_bytes())?;
    for t in &doc.tokens {
        out.write_all(&t.to_le_bytes())?;
    }
    Ok(())
}

pub(super) fn read_records(path: &Path) -> Result<Vec<Encoded>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    read_records_from(BufReader::new(file), path)
}

/// [`read_records`] of a zstd-compressed file (a split run's encoded documents, which cross
/// the network: token ids compress ~2.4x at level 1).
pub(super) fn read_compressed_records(path: &Path) -> Result<Vec<Encoded>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let decoder = zstd::stream::read::Decoder::new(file)
        .with_context(|| format!("reading {}", path.display()))?;
    read_records_from(BufReader::new(decoder), path)
}

fn read_records_from(mut reader: impl Read, path: &Path) -> Result<Vec<Encoded>> {
    let mut docs = Vec::new();
    while let Some(doc) = read_record(&mut reader, path)? {
        docs.push(doc);
    }
    Ok(docs)
}

/// The next record of `reader` (reading `path`), or `None` at its end.
pub(super) fn read_record(reader: &mut impl Read, path: &Path) -> Result<Option<Encoded>> {
    let what = || format!("reading {}", path.display());
    let mut word = [0u8; 4];
    let mut read_u32 = |r: &mut dyn Read| -> std::io::Result<u32> {
        r.read_exact(&mut word)?;
        Ok(u32::from_le_bytes(word))
    };
    let id_len = match read_u32(reader) {
        Ok(n) => n as usize,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).with_context(what),
    };
    let mut id = vec![0u8; id_len];
    reader.read_exact(&mut id).with_context(what)?;
    let source_len = read_u32(reader).with_context(what)? as usize;
    let mut source = vec![0u8; source_len];
    reader.read_exact(&mut source).with_context(what)?;
    let n = read_u32(reader).with_context(what)? as usize;
    let mut bytes = vec![0u8; n * 4];
    reader.read_exact(&mut bytes).with_context(what)?;
    Ok(Some(Encoded {
        id: String::from_utf8(id).context("bucket record id")?,
        source: String::from_utf8(source).context("bucket record source")?,
        tokens: bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }))
}
