//! HTTP routes: the JSON API and the browser pages.

pub mod api;
