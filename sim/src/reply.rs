//! The JSON replies every endpoint answers with, errors included.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, format!(r#"{{"message":"{message}"}}"#))
}
