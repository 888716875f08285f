//! Integration tests of the trainer: the library on tiny models and the binary end to end.
//! Everything runs on the CPU with fixed seeds; GPU checks are `#[ignore]`d with the reason.

mod bad_input;
mod bos;
mod candidates;
mod chat_data;
mod data;
mod dist;
mod dpo;
mod events;
mod export;
mod generate;
mod gpu;
mod grpo;
mod grpo_toy;
mod helpers;
mod info;
mod kto;
mod model;
mod optim;
mod parallel;
mod presets;
mod pretrain;
mod reward;
mod sft;
mod step_logps;
mod utf8;
