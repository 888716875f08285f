//! What every request passes through besides sessions and the security headers: `HEAD`
//! answered like `GET`, and refusals and failures of pages shown as an HTML page (the API,
//! under `/api`, and `/healthz` keep their JSON errors).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use minijinja::context;

use crate::http::error::AppError;
use crate::http::pages::templates::Templates;

/// Routes `HEAD` as `GET`. The body is not sent: actix-http's HTTP/1 codec remembers that the
/// request was a `HEAD` and writes the headers only (`Content-Length` included, as `GET`'s).
pub async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    next.call(req).await
}

/// Whether `path` is a page a browser shows (not the JSON API or the health check).
fn is_page(path: &str) -> bool {
    !(path == "/api" || path.starts_with("/api/") || path == "/healthz")
}

/// A page's error (4xx or 5xx from an [`AppError`]) as the HTML error page, with the same
/// status and message; everything else passes unchanged (the sign-in page's own 401 and 429
/// pages, redirects, the API's JSON).
pub async fn error_pages(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let page = is_page(req.path());
    let res = next.call(req).await?;
    let status = res.status();
    if !page || !(status.is_client_error() || status.is_server_error()) {
        return Ok(res.map_into_left_body());
    }
    let Some(message) = res
        .response()
        .error()
        .map(|e| match e.as_error::<AppError>() {
            // The cause is in the log; the page says no more than the API would.
            Some(AppError::Unexpected(_)) | None => reason(status),
            Some(e) => e.to_string(),
        })
    else {
        return Ok(res.map_into_left_body());
    };
    let page = res.request().app_data::<web::Data<Templates>>().map(|t| {
        t.render(
            "error.html",
            context! { status => status.as_u16(), reason => reason(status), message, csrf => "" },
        )
    });
    match page {
        Some(Ok(body)) => {
            let html = HttpResponse::build(status)
                .content_type("text/html; charset=utf-8")
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body(body);
            Ok(res.into_response(html).map_into_right_body())
        }
        Some(Err(e)) => {
            tracing::error!(error = ?e, "rendering the error page");
            Ok(res.map_into_left_body())
        }
        None => Ok(res.map_into_left_body()),
    }
}

fn reason(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").to_string()
}
