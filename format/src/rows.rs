//! Rows of the four dataset kinds and the columnar buffer that turns them into one Arrow
//! record batch per shard. [`crate::writer::ShardWriter`] owns the file lifecycle; this module
//! owns the in-memory layout (flat values plus offsets, u16 narrowing of pretraining tokens).

use std::sync::Arc;

use arrow_array::types::{Int32Type, UInt8Type, UInt16Type, UInt32Type};
use arrow_array::{
    ArrayRef, ArrowPrimitiveType, BooleanArray, DictionaryArray, ListArray, PrimitiveArray,
    RecordBatch, StringArray,
};
use arrow_buffer::{ArrowNativeType, OffsetBuffer, ScalarBuffer};
use arrow_schema::SchemaRef;

use crate::error::{FormatError, Result};
use crate::schema::{DatasetKind, TokenDtype, list_item};

/// A tokenized document for pretraining. `tokens` must end with the tokenizer's `eos` id.
#[derive(Debug, Clone, Copy)]
pub struct PretrainDoc<'a> {
    pub doc_id: &'a str,
    pub source: &'a str,
    pub tokens: &'a [u32],
}

/// A rendered chat example; `loss_mask[i]` is 1 where `input_ids[i]` is trained on.
#[derive(Debug, Clone, Copy)]
pub struct SftExample<'a> {
    pub example_id: &'a str,
    pub input_ids: &'a [u32],
    pub loss_mask: &'a [u8],
    pub source_record: &'a str,
}

/// A prompt with the preferred and the dispreferred continuation.
#[derive(Debug, Clone, Copy)]
pub struct PreferencePair<'a> {
    pub pair_id: &'a str,
    pub prompt_ids: &'a [u32],
    pub chosen_ids: &'a [u32],
    pub rejected_ids: &'a [u32],
    pub source_record: &'a str,
}

/// A prompt with one answer and whether it was liked (`label`: thumbs up), as in TRL's
/// unpaired preference shape.
#[derive(Debug, Clone, Copy)]
pub struct UnpairedExample<'a> {
    pub example_id: &'a str,
    pub prompt_ids: &'a [u32],
    pub completion_ids: &'a [u32],
    pub label: bool,
    pub source_record: &'a str,
}

/// One row of any dataset kind.
#[derive(Debug, Clone, Copy)]
pub enum Row<'a> {
    Pretrain(PretrainDoc<'a>),
    Sft(SftExample<'a>),
    Preference(PreferencePair<'a>),
    Unpaired(UnpairedExample<'a>),
}

impl Row<'_> {
    pub(crate) fn kind(&self) -> DatasetKind {
        match self {
            Row::Pretrain(_) => DatasetKind::Pretrain,
            Row::Sft(_) => DatasetKind::Sft,
            Row::Preference(_) => DatasetKind::Preference,
            Row::Unpaired(_) => DatasetKind::Unpaired,
        }
    }

    pub(crate) fn id(&self) -> &str {
        match self {
            Row::Pretrain(d) => d.doc_id,
            Row::Sft(e) => e.example_id,
            Row::Preference(p) => p.pair_id,
            Row::Unpaired(u) => u.example_id,
        }
    }
}

impl<'a> From<PretrainDoc<'a>> for Row<'a> {
    fn from(d: PretrainDoc<'a>) -> Self {
        Row::Pretrain(d)
    }
}
impl<'a> From<SftExample<'a>> for Row<'a> {
    fn from(e: SftExample<'a>) -> Self {
        Row::Sft(e)
    }
}
impl<'a> From<PreferencePair<'a>> for Row<'a> {
    fn from(p: PreferencePair<'a>) -> Self {
        Row::Preference(p)
    }
}
impl<'a> From<UnpairedExample<'a>> for Row<'a> {
    fn from(u: UnpairedExample<'a>) -> Self {
        Row::Unpaired(u)
    }
}

/// A list column being accumulated: flat values plus Arrow offsets.
#[derive(Debug)]
struct ListColumn<T> {
    values: Vec<T>,
    offsets: Vec<i32>,
}

impl<T: ArrowNativeType> Default for ListColumn<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            offsets: vec![0],
        }
    }
}

impl<T: ArrowNativeType> ListColumn<T> {
    fn push(&mut self, items: &[T]) {
        self.values.extend_from_slice(items);
        // The writer keeps shards under i32::MAX values (checked before push).
        self.offsets.push(self.values.len() as i32);
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn into_array<P>(self) -> ArrayRef
    where
        P: ArrowPrimitiveType<Native = T>,
    {
        let values = PrimitiveArray::<P>::new(ScalarBuffer::from(self.values), None);
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        Arc::new(ListArray::new(
            list_item(P::DATA_TYPE),
            offsets,
            Arc::new(values),
            None,
        ))
    }
}

/// Rows of the shard being built, column by column.
#[derive(Debug, Default)]
pub(crate) struct ShardBuffer {
    ids: Vec<String>,
    sources: Vec<String>,
    lists: [ListColumn<u32>; 3],
    /// Pretraining tokens of a u16 dataset, narrowed as they arrive: half the memory, and no
    /// second copy when the shard is written.
    narrow: Option<ListColumn<u16>>,
    mask: ListColumn<u8>,
    labels: Vec<bool>,
    pub(crate) tokens: u64,
}

impl ShardBuffer {
    /// `expected_tokens`: the shard size, so the token buffer is allocated once instead of
    /// growing (and copying) by doubling; capped at 16Mi tokens.
    pub(crate) fn new(kind: DatasetKind, dtype: TokenDtype, expected_tokens: u64) -> Self {
        let capacity = expected_tokens.min(1 << 24) as usize;
        let mut buffer = Self::default();
        if kind == DatasetKind::Pretrain && dtype == TokenDtype::U16 {
            let mut narrow = ListColumn::default();
            narrow.values.reserve(capacity);
            buffer.narrow = Some(narrow);
        } else {
            buffer.lists[0].values.reserve(capacity);
        }
        buffer
    }

    pub(crate) fn rows(&self) -> usize {
        self.ids.len()
    }

    /// Largest list column length, which must stay within i32 offsets.
    pub(crate) fn max_values(&self) -> usize {
        let narrow = self.narrow.as_ref().map_or(0, ListColumn::len);
        self.lists
            .iter()
            .map(ListColumn::len)
            .max()
            .unwrap_or(0)
            .max(narrow)
    }

    pub(crate) fn push(&mut self, row: &Row<'_>) {
        self.ids.push(row.id().to_owned());
        match row {
            Row::Pretrain(d) => {
                self.sources.push(d.source.to_owned());
                match &mut self.narrow {
                    Some(narrow) => {
                        // Ids were checked against a vocab of at most 65536 entries.
                        narrow.values.extend(d.tokens.iter().map(|&t| t as u16));
                        narrow.offsets.push(narrow.values.len() as i32);
                    }
                    None => self.lists[0].push(d.tokens),
                }
                self.tokens += d.tokens.len() as u64;
            }
            Row::Sft(e) => {
                self.sources.push(e.source_record.to_owned());
                self.lists[0].push(e.input_ids);
                self.mask.push(e.loss_mask);
                self.tokens += e.input_ids.len() as u64;
            }
            Row::Preference(p) => {
                self.sources.push(p.source_record.to_owned());
                for (col, ids) in
                    self.lists
                        .iter_mut()
                        .zip([p.prompt_ids, p.chosen_ids, p.rejected_ids])
                {
                    col.push(ids);
                    self.tokens += ids.len() as u64;
                }
            }
            Row::Unpaired(u) => {
                self.sources.push(u.source_record.to_owned());
                self.lists[0].push(u.prompt_ids);
                self.lists[1].push(u.completion_ids);
                self.labels.push(u.label);
                self.tokens += (u.prompt_ids.len() + u.completion_ids.len()) as u64;
            }
        }
    }

    pub(crate) fn into_batch(
        self,
        kind: DatasetKind,
        dtype: TokenDtype,
        schema: &SchemaRef,
    ) -> Result<RecordBatch> {
        let ids: ArrayRef = Arc::new(StringArray::from(self.ids));
        let [first, second, third] = self.lists;
        let columns: Vec<ArrayRef> = match kind {
            DatasetKind::Pretrain => {
                let sources: DictionaryArray<Int32Type> =
                    self.sources.iter().map(String::as_str).collect();
                let tokens = match (dtype, self.narrow) {
                    (TokenDtype::U16, Some(narrow)) => narrow.into_array::<UInt16Type>(),
                    (TokenDtype::U32, None) => first.into_array::<UInt32Type>(),
                    _ => {
                        return Err(FormatError::Misuse(format!(
                            "a {dtype:?} shard buffered in the other width"
                        )));
                    }
                };
                vec![ids, Arc::new(sources), tokens]
            }
            DatasetKind::Sft => vec![
                ids,
                first.into_array::<UInt32Type>(),
                self.mask.into_array::<UInt8Type>(),
                Arc::new(StringArray::from(self.sources)),
            ],
            DatasetKind::Preference => vec![
                ids,
                first.into_array::<UInt32Type>(),
                second.into_array::<UInt32Type>(),
                third.into_array::<UInt32Type>(),
                Arc::new(StringArray::from(self.sources)),
            ],
            DatasetKind::Unpaired => vec![
                ids,
                first.into_array::<UInt32Type>(),
                second.into_array::<UInt32Type>(),
                Arc::new(BooleanArray::from(self.labels)),
                Arc::new(StringArray::from(self.sources)),
            ],
        };
        RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| FormatError::Misuse(format!("building a {kind} record batch: {e}")))
    }
}
