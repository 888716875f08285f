//! jielong's labeler: a web app where annotators write instruction/answer pairs and compare
//! model answers, on PostgreSQL. Checked domain types (`domain`), stores for accounts,
//! projects, imports, the lease queue, responses and exports, and the HTTP layer (`routes`,
//! `pages`) on top.

pub mod accounts;
pub mod agreement;
pub mod audit;
pub mod auth;
pub mod charts;
pub mod cli;
pub mod dashboard;
pub mod domain;
pub mod error;
pub mod export;
pub mod export_parquet;
pub mod guidelines;
pub mod import;
pub mod model_loop;
pub mod pages;
pub mod projects;
pub mod quality;
pub mod queue;
pub mod ranking;
pub mod responses;
pub mod review;
pub mod review_pages;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod token_cache;
pub mod webhook_delivery;
pub mod webhooks;

pub use settings::Settings;
pub use startup::{Application, MIGRATOR};
