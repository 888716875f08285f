//! Models on disk: trainer checkpoints (written atomically, read back for resume and
//! inference), the Hugging Face directory format, loading either into a model,
//! `trainer export-hf`, and TensorBoard event files of a run's metrics.

pub mod checkpoint;
pub mod export;
pub mod hf;
pub mod load;
pub mod tensorboard;
