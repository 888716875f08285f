//! jielong's labeler: a web app where annotators write instruction/answer pairs and compare
//! model answers, on PostgreSQL. Checked domain types (`domain`) are all the other layers
//! see; the database side (`store`) returns its own errors; the statistics (`stats`) are pure
//! functions; the HTTP layer (`http`: JSON API and server-rendered pages) sits on top and
//! turns store errors into answers; background tasks live in `jobs`.

pub mod cli;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod oidc;
pub mod settings;
pub mod startup;
pub mod state;
pub mod stats;
pub mod store;

pub use settings::Settings;
pub use startup::{Application, MIGRATOR};
