//! The console's static files, embedded in the binary at compile time (no build step, nothing
//! fetched from the network at run time).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const CHART_JS: &str = include_str!("assets/chart.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    // Assets change only with the binary; a short max-age keeps upgrades visible.
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=60")], body)
        .into_response()
}

pub(crate) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub(crate) async fn file(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => asset("text/javascript; charset=utf-8", APP_JS),
        "chart.js" => asset("text/javascript; charset=utf-8", CHART_JS),
        "style.css" => asset("text/css; charset=utf-8", STYLE_CSS),
        _ => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
