//! jielong's trainer: Llama-style decoder-only transformers on libtorch. This crate grows
//! pretraining, SFT, DPO and export; for now it owns device selection and the runtime check
//! behind `trainer info`.

pub mod device;
