//! HTTP routes: the JSON API and the browser pages.

pub mod admin;
pub mod api;
pub mod quality;
pub mod review;
