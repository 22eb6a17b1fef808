//! The HTTP listener (axum): `/metrics`, the JSON API under `/api/` and the web console at `/`.
pub(crate) mod browse;
pub(crate) mod rates;
