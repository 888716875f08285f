//! Models on disk: trainer checkpoints (written atomically, read back for resume and
//! inference), the Hugging Face directory format, loading either into a model, and
//! `trainer export-hf`.

pub mod checkpoint;
pub mod export;
pub mod hf;
pub mod load;
