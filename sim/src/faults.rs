//! How injected faults look on the wire. Whether one is injected is decided by the handlers
//! (under the lock, from the seeded generator); these only build the replies.

use crate::data::now_ms;
use crate::reply::error;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use std::future::Future as _;

/// `Faults::token_fail_once`: `status`, with rate-limit headers that say the budget is spent until
/// the next second.
pub(crate) fn token_failure(status: u16) -> Response {
    let reset = (now_ms() / 1000 + 1).to_string();
    let mut r = error(StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE), "try later");
    r.headers_mut().insert("x-ratelimit-limit", HeaderValue::from_static("100"));
    r.headers_mut().insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
    if let Ok(v) = HeaderValue::from_str(&reset) {
        r.headers_mut().insert("x-ratelimit-reset", v);
    }
    r
}

/// `Faults::throttle_429_first`: 429 with `Retry-After` in seconds, or as an HTTP date.
pub(crate) fn too_many_requests(retry_after_as_date: bool) -> Response {
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    let value = if retry_after_as_date {
        let at = chrono::Utc::now() + chrono::Duration::seconds(2);
        at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
    } else {
        "1".to_string()
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

/// `Faults::drop_permille` and `Faults::truncate_permille`: the headers promise all of `body`,
/// then the connection is cut after none of it (`drop_it`) or half of it.
pub(crate) fn cut_off(body: String, drop_it: bool) -> Response {
    let cut = if drop_it { 0 } else { body.len() / 2 };
    let full_len = body.len();
    let first = Bytes::from(body.into_bytes()).slice(..cut);
    let stream = futures_lite_stream(first);
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&full_len.to_string()) {
        r.headers_mut().insert("content-length", v);
    }
    r
}

/// A body that yields `first` and then fails, so the connection is cut mid-reply.
fn futures_lite_stream(first: Bytes) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    struct Cut(Option<Bytes>, bool);
    impl futures_core::Stream for Cut {
        type Item = Result<Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if let Some(b) = self.0.take()
                && !b.is_empty()
            {
                return std::task::Poll::Ready(Some(Ok(b)));
            }
            if !self.1 {
                self.1 = true;
                return std::task::Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected drop",
                ))));
            }
            std::task::Poll::Ready(None)
        }
    }
    Cut(Some(first), false)
}

/// `Faults::oversized_first`: a 200 whose body of `bytes` bytes (a page's start, then spaces)
/// is made as it is read.
pub(crate) fn oversized(bytes: u64) -> Response {
    struct Endless {
        left: u64,
        started: bool,
    }
    impl futures_core::Stream for Endless {
        type Item = Result<Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            const CHUNK: u64 = 1 << 20;
            if self.left == 0 {
                return std::task::Poll::Ready(None);
            }
            let n = self.left.min(CHUNK);
            self.left -= n;
            let mut chunk = vec![b' '; n as usize];
            if !std::mem::replace(&mut self.started, true) {
                let head = 9.min(chunk.len());
                chunk[..head].copy_from_slice(&b"{\"data\":["[..head]);
            }
            std::task::Poll::Ready(Some(Ok(Bytes::from(chunk))))
        }
    }
    let mut r = Response::new(Body::from_stream(Endless { left: bytes, started: false }));
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&bytes.to_string()) {
        r.headers_mut().insert("content-length", v);
    }
    r
}

/// `Faults::slow_body_first`: a valid, empty page of 97 bytes, one byte a second.
pub(crate) fn slow_body() -> Response {
    struct Drip {
        body: Vec<u8>,
        at: usize,
        tick: std::pin::Pin<Box<tokio::time::Sleep>>,
    }
    impl futures_core::Stream for Drip {
        type Item = Result<Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if self.at >= self.body.len() {
                return std::task::Poll::Ready(None);
            }
            if self.tick.as_mut().poll(cx).is_pending() {
                return std::task::Poll::Pending;
            }
            let next = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
            self.tick.as_mut().reset(next);
            let byte = Bytes::copy_from_slice(&self.body[self.at..=self.at]);
            self.at += 1;
            std::task::Poll::Ready(Some(Ok(byte)))
        }
    }
    let mut body = br#"{"data":[],"total":0}"#.to_vec();
    body.resize(97, b' ');
    let len = body.len();
    let tick = Box::pin(tokio::time::sleep(std::time::Duration::ZERO));
    let mut r = Response::new(Body::from_stream(Drip { body, at: 0, tick }));
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
        r.headers_mut().insert("content-length", v);
    }
    r
}
