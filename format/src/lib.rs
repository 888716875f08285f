//! jielong's data contract, shared by the pipeline, the labeler and the trainer: the Arrow
//! schemas of the four dataset kinds, the shard writer and memory-mapped reader, the dataset
//! manifest, and the chat template with its loss mask. See ARCHITECTURE.md, "Data contracts".

pub mod chat;
pub mod error;
pub mod manifest;
pub mod reader;
pub mod rows;
pub mod schema;
pub mod writer;

pub use chat::{
    BOS_TOKEN, ChatTemplate, Message, RenderedChat, Role, SPECIAL_TOKENS, TextEncoder,
    chat_template_jinja, render_text,
};
pub use error::{FormatError, Result};
pub use manifest::{
    FORMAT_VERSION, MANIFEST_FILE, Manifest, ShardEntry, TokenizerInfo, Totals, sha256_file,
    write_file_atomic,
};
pub use reader::{Dataset, ListView, Shard, ShardBatch, Tokens};
pub use rows::{PreferencePair, PretrainDoc, Row, SftExample, UnpairedExample};
pub use schema::{DatasetKind, TokenDtype};
pub use writer::{
    ShardWriter, ShardWriterBuilder, TOKENIZER_FILE, TokenizerSpec, part_shard_file_name,
    prepare_dataset_dir, shard_file_name, write_parts_manifest,
};
