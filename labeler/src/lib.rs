//! jielong's labeler: a web app where annotators write instruction/answer pairs and compare
//! model answers, on PostgreSQL. This crate grows the data model, pages and API; for now it
//! owns settings, start-up, migrations and the health check.

pub mod settings;
pub mod startup;

pub use settings::Settings;
pub use startup::{Application, MIGRATOR};
