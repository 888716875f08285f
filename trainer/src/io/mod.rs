//! Models on disk: trainer checkpoints (written atomically, read back for resume and
//! inference), the Hugging Face directory format, loading either into a model,
//! `trainer export-hf`, TensorBoard event files of a run's metrics, and `trainer report`
//! (an HTML page comparing runs).

pub mod checkpoint;
pub mod export;
pub mod hf;
pub mod load;
pub mod optim_shards;
pub mod report;
pub mod safetensors;
pub mod tensorboard;
