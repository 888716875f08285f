//! The Arrow schemas of the four dataset kinds, exactly as ARCHITECTURE.md fixes them.
//! Readers check a shard's schema against these before trusting any column.

use std::fmt;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

/// What a dataset holds; decides the shard schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// Tokenized documents for next-token pretraining.
    Pretrain,
    /// Chat examples with a loss mask for supervised fine-tuning.
    Sft,
    /// Prompt with a chosen and a rejected answer for DPO / reward models.
    Preference,
    /// Prompt with one answer and a thumbs-up / thumbs-down label, for KTO.
    Unpaired,
}

impl DatasetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pretrain => "pretrain",
            Self::Sft => "sft",
            Self::Preference => "preference",
            Self::Unpaired => "unpaired",
        }
    }

    /// The columns that hold token ids, in schema order.
    pub fn token_columns(self) -> &'static [&'static str] {
        match self {
            Self::Pretrain => &["tokens"],
            Self::Sft => &["input_ids"],
            Self::Preference => &["prompt_ids", "chosen_ids", "rejected_ids"],
            Self::Unpaired => &["prompt_ids", "completion_ids"],
        }
    }

    /// The shard schema for this kind with the given token width. Only pretrain shards use
    /// `UInt16`; sft, preference and unpaired shards always store `UInt32` ids.
    pub fn schema(self, dtype: TokenDtype) -> SchemaRef {
        let fields = match self {
            Self::Pretrain => vec![
                Field::new("doc_id", DataType::Utf8, false),
                Field::new(
                    "source",
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                    false,
                ),
                token_list_field("tokens", dtype.data_type()),
            ],
            Self::Sft => vec![
                Field::new("example_id", DataType::Utf8, false),
                token_list_field("input_ids", DataType::UInt32),
                token_list_field("loss_mask", DataType::UInt8),
                Field::new("source_record", DataType::Utf8, false),
            ],
            Self::Preference => vec![
                Field::new("pair_id", DataType::Utf8, false),
                token_list_field("prompt_ids", DataType::UInt32),
                token_list_field("chosen_ids", DataType::UInt32),
                token_list_field("rejected_ids", DataType::UInt32),
                Field::new("source_record", DataType::Utf8, false),
            ],
            Self::Unpaired => vec![
                Field::new("example_id", DataType::Utf8, false),
                token_list_field("prompt_ids", DataType::UInt32),
                token_list_field("completion_ids", DataType::UInt32),
                Field::new("label", DataType::Boolean, false),
                Field::new("source_record", DataType::Utf8, false),
            ],
        };
        Arc::new(Schema::new(fields))
    }

    /// The token width a dataset of this kind uses for a vocabulary of `vocab_size`.
    pub fn token_dtype(self, vocab_size: u32) -> TokenDtype {
        match self {
            Self::Pretrain => TokenDtype::for_vocab(vocab_size),
            Self::Sft | Self::Preference | Self::Unpaired => TokenDtype::U32,
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Width of stored token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    #[serde(rename = "uint16")]
    U16,
    #[serde(rename = "uint32")]
    U32,
}

impl TokenDtype {
    /// `UInt16` when every id of the vocabulary fits (vocab_size <= 65536), else `UInt32`.
    pub fn for_vocab(vocab_size: u32) -> Self {
        if vocab_size <= 1 << 16 {
            Self::U16
        } else {
            Self::U32
        }
    }

    pub fn data_type(self) -> DataType {
        match self {
            Self::U16 => DataType::UInt16,
            Self::U32 => DataType::UInt32,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::U16 => "uint16",
            Self::U32 => "uint32",
        }
    }
}

/// The element field of every list column: named `item` as pyarrow and polars expect, and
/// never null.
pub(crate) fn list_item(value: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", value, false))
}

fn token_list_field(name: &str, value: DataType) -> Field {
    Field::new(name, DataType::List(list_item(value)), false)
}
