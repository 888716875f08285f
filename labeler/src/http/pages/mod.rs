//! Server-rendered pages. Pages use the session; every form carries the session's CSRF
//! token, and the scripts send it as `X-CSRF-Token`. Each page module registers its own
//! routes and takes what pages share from `templates`.

pub mod annotate;
pub mod dashboard;
pub mod login;
pub mod markdown;
pub mod project_settings;
pub mod projects;
pub mod quality;
pub mod review;
pub mod templates;
pub mod users;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(projects::configure)
        .configure(login::configure)
        .configure(annotate::configure)
        .configure(templates::configure)
        .configure(review::configure)
        .configure(dashboard::configure)
        .configure(project_settings::configure)
        .configure(users::configure)
        .configure(quality::configure);
}
