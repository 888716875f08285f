//! Integration tests of the labeler against a real PostgreSQL server. Each test gets its own
//! database and its own port. The server comes from `DATABASE_URL` (set by `scripts/test` for
//! the project's private cluster).

mod accounts;
mod annotator;
mod audit;
mod browser;
mod browser_annotator;
mod browser_lead;
mod browser_ranking;
mod browser_rating;
mod browser_sessions;
mod dashboard;
mod export;
mod feedback_kinds;
mod helpers;
mod import;
mod model_loop;
mod oidc;
mod pages;
mod pages_http;
mod prelabels;
mod project_settings;
mod project_shape;
mod quality;
mod quality_pages;
mod queue;
mod ranking;
mod rating;
mod review;
mod review_page;
mod sessions;
mod startup;
mod submit;
mod users_admin;
mod webdriver;
mod webhooks;
