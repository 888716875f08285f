//! Integration tests of the pipeline library, one module per stage.

mod azure;
mod clean;
mod cluster;
mod cluster_dedup;
mod dedup;
mod extract;
mod faults;
mod filters;
mod helpers;
mod inspect;
mod k8s;
mod k8s_schema;
mod k8s_train;
mod readers;
mod tokenize;
mod tokenize_chat;
mod tokenize_tasks;
mod tokenize_unpaired;
mod traffic;
