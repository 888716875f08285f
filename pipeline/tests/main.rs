//! Integration tests of the pipeline library, one module per stage.

mod clean;
mod cluster;
mod cluster_dedup;
mod dedup;
mod extract;
mod filters;
mod helpers;
mod inspect;
mod readers;
mod tokenize;
mod tokenize_chat;
mod tokenize_unpaired;
