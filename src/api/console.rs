//! The web console: the page at `/` and its assets (`/console/*`), compiled into the binary
//! from `console/`, under a strict Content-Security-Policy, and the export tickets it downloads
//! by. The page calls the API like any other client, through the Connect protocol on this port.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::connect::ApiBridge;
use super::tickets::ticket_router;

/// Only this origin's scripts, styles and API; no inline script, no frames, no forms elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The embedded files: (path, content type, body).
const ASSETS: &[(&str, &str, &str)] = &[
    ("/", HTML, include_str!("../../console/index.html")),
    ("/console/app.js", JS, include_str!("../../console/app.js")),
    ("/console/api.js", JS, include_str!("../../console/api.js")),
    (
        "/console/charts.js",
        JS,
        include_str!("../../console/charts.js"),
    ),
    (
        "/console/filter.js",
        JS,
        include_str!("../../console/filter.js"),
    ),
    (
        "/console/app.css",
        "text/css; charset=utf-8",
        include_str!("../../console/app.css"),
    ),
    (
        "/console/icon.svg",
        "image/svg+xml",
        include_str!("../../console/icon.svg"),
    ),
];
const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The console's routes: its files and the export tickets.
pub(super) fn console_router(bridge: ApiBridge) -> Router {
    let mut router = ticket_router(bridge);
    for &(path, content_type, body) in ASSETS {
        router = router.route(path, get(move || async move { serve(content_type, body) }));
    }
    router
}

fn serve(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
