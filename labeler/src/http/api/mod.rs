//! The JSON API under `/api`, used by scripts and the trainer (API tokens) and by the pages'
//! JavaScript (session + CSRF header). Every input is parsed into checked types; a bad one
//! is a 4xx. One module per area; each registers its own routes.

pub mod admin;
pub mod assignments;
pub mod projects;
pub mod quality;
pub mod review;

use actix_web::{HttpResponse, web};

use crate::http::auth::ApiUser;

pub fn configure(cfg: &mut web::ServiceConfig, max_import_bytes: usize) {
    cfg.service(
        web::scope("/api")
            .route("/me", web::get().to(me))
            .configure(|cfg| projects::configure(cfg, max_import_bytes))
            .configure(assignments::configure)
            .configure(admin::configure)
            .configure(review::configure)
            .configure(quality::configure),
    );
}

/// Who the caller is: for scripts checking their token, and for the pages' scripts.
async fn me(ApiUser { user, .. }: ApiUser) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "id": user.id, "username": user.username, "role": user.role,
    }))
}
