//! The engine's `Platform` on WASI: outgoing HTTP through `wasi:http/outgoing-handler` (the only
//! module that does HTTP I/O), time from `wasi:clocks`, randomness from `wasi:random`; and the
//! settings of an instance that reads its own ([`variables`]: the edge components).
//!
//! Built on the `wasi` crate rather than waki: it gives all three timeouts and the real
//! `wasi:http` error codes, so a request the host refuses reaches the summary as "denied", not as
//! a closed stream that looks like a network fault.
//!
//! Every reply is bounded here, whatever the host: in size (a body is read no further than its
//! request's [`Request::reply_limit`]) and in time (the whole reply, first byte to last, within
//! the HTTP timeout: a body sent a byte a second cannot hold a pass up for longer).

use crate::platform::{Method, Platform, Request, Response, TransportError};
use crate::settings::BaseUrl;
use wasi::clocks::monotonic_clock;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse, Method as WasiMethod, OutgoingBody,
    OutgoingRequest, RequestOptions, Scheme,
};
use wasi::io::poll::Pollable;
use wasi::io::streams::StreamError;

/// Timeouts asked of the host (which may clamp them further).
const CONNECT_TIMEOUT_NS: u64 = 10_000_000_000;
const BETWEEN_BYTES_TIMEOUT_NS: u64 = 30_000_000_000;

pub struct WasiPlatform {
    /// The ceiling of one reply, first byte to last, in ns.
    reply_timeout_ns: u64,
}

impl WasiPlatform {
    /// With the pass's HTTP timeout.
    pub fn new(settings: &crate::settings::Settings) -> Self {
        Self::with_timeout_ms(settings.http_timeout_ms)
    }

    pub fn with_timeout_ms(ms: u64) -> Self {
        Self { reply_timeout_ns: ms.saturating_mul(1_000_000).max(1) }
    }
}

fn denied_or_network(code: &ErrorCode) -> TransportError {
    match code {
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationNotFound => TransportError::Denied(format!("{code:?}")),
        other => TransportError::Network(format!("{other:?}")),
    }
}

fn net(what: &str) -> TransportError {
    TransportError::Network(what.to_string())
}

/// A request on its way: the response future, whether its body went out, and how much of a
/// reply it takes.
struct InFlight {
    future: FutureIncomingResponse,
    sent: Result<(), TransportError>,
    limit: usize,
}

/// Starts one request: headers, then the body, without waiting for the reply.
fn start(base: &BaseUrl, request: &Request, timeout_ns: u64) -> Result<InFlight, TransportError> {
    let mut header_list: Vec<(String, Vec<u8>)> =
        request.headers.iter().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
    if matches!(request.method, Method::Post | Method::Put) {
        header_list.push(("content-length".into(), request.body.len().to_string().into_bytes()));
    }
    let headers = Fields::from_list(&header_list).map_err(|e| net(&format!("invalid header: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method {
        Method::Get => WasiMethod::Get,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Delete => WasiMethod::Delete,
    };
    outgoing.set_method(&method).map_err(|()| net("method rejected"))?;
    let scheme = if base.https { Scheme::Https } else { Scheme::Http };
    outgoing.set_scheme(Some(&scheme)).map_err(|()| net("scheme rejected"))?;
    outgoing.set_authority(Some(&base.authority)).map_err(|()| net("authority rejected"))?;
    outgoing.set_path_with_query(Some(&request.path)).map_err(|()| net("path rejected"))?;
    let body = outgoing.body().map_err(|()| net("request body unavailable"))?;

    let options = RequestOptions::new();
    // A host that does not support a timeout refuses to set it; its own defaults then apply.
    let _ = options.set_connect_timeout(Some(CONNECT_TIMEOUT_NS));
    // The whole reply's deadline bounds the first byte too: a runtime's first-byte timer may run
    // while a large body is still being sent.
    let _ = options.set_first_byte_timeout(Some(timeout_ns));
    let _ = options.set_between_bytes_timeout(Some(BETWEEN_BYTES_TIMEOUT_NS));

    let future = outgoing_handler::handle(outgoing, Some(options)).map_err(|e| denied_or_network(&e))?;
    // If the host refused the request, the body stream just closes; the reason (e.g.
    // `HTTP-request-denied`) arrives on the response future, so a body error is reported only
    // when the response has none.
    let sent = (|| {
        let stream = body.write().map_err(|()| net("request body stream unavailable"))?;
        for chunk in request.body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|e| stream_error("sending body", e))?;
        }
        drop(stream);
        OutgoingBody::finish(body, None).map_err(|e| denied_or_network(&e))
    })();
    Ok(InFlight { future, sent, limit: request.reply_limit })
}

/// The error of a reply not complete by the deadline.
fn late(timeout_ns: u64) -> TransportError {
    net(&format!("no complete reply within the HTTP timeout of {} ms", timeout_ns / 1_000_000))
}

/// Reads a reply whose headers have arrived: at most `limit` bytes of body, by `deadline` (the
/// monotonic clock's ns).
fn finish(
    incoming: Result<Result<IncomingResponse, ErrorCode>, ()>,
    sent: Result<(), TransportError>,
    limit: usize,
    (deadline, timeout_ns): (u64, u64),
) -> Result<Response, TransportError> {
    let incoming = incoming.map_err(|()| net("response already taken"))?.map_err(|e| denied_or_network(&e))?;
    sent?;
    let status = incoming.status();
    let headers =
        incoming.headers().entries().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect();
    let body_handle = incoming.consume().map_err(|()| net("response body unavailable"))?;
    let mut body = Vec::new();
    {
        let stream = body_handle.stream().map_err(|()| net("response body stream unavailable"))?;
        loop {
            match stream.read(256 * 1024) {
                Ok(bytes) if bytes.is_empty() => {
                    // Nothing yet: wait for more, or for the deadline.
                    let more = stream.subscribe();
                    let clock = monotonic_clock::subscribe_instant(deadline);
                    wasi::io::poll::poll(&[&more, &clock]);
                    if !more.ready() && monotonic_clock::now() >= deadline {
                        return Err(late(timeout_ns));
                    }
                }
                Ok(bytes) if body.len().saturating_add(bytes.len()) > limit => {
                    return Err(TransportError::TooLarge(format!(
                        "the reply is larger than the {limit}-byte limit (reading stopped there)"
                    )));
                }
                Ok(bytes) => body.extend_from_slice(&bytes),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(stream_error("reading body", e)),
            }
        }
    }
    drop(IncomingBody::finish(body_handle));
    Ok(Response { status, headers, body })
}

impl Platform for WasiPlatform {
    fn send_many(&mut self, base: &BaseUrl, requests: &[Request]) -> Vec<Result<Response, TransportError>> {
        let timeout_ns = self.reply_timeout_ns;
        let deadline = monotonic_clock::now().saturating_add(timeout_ns);
        let mut in_flight: Vec<Option<InFlight>> = Vec::with_capacity(requests.len());
        let mut results: Vec<Option<Result<Response, TransportError>>> = Vec::with_capacity(requests.len());
        for request in requests {
            match start(base, request, timeout_ns) {
                Ok(f) => {
                    in_flight.push(Some(f));
                    results.push(None);
                }
                Err(e) => {
                    in_flight.push(None);
                    results.push(Some(Err(e)));
                }
            }
        }
        // Collect replies in whatever order they arrive; wait on all pending ones at once.
        loop {
            let mut waiting = Vec::new();
            for (slot, result) in in_flight.iter_mut().zip(results.iter_mut()) {
                let Some(f) = slot else { continue };
                match f.future.get() {
                    Some(incoming) => {
                        if let Some(done) = slot.take() {
                            *result = Some(finish(incoming, done.sent, done.limit, (deadline, timeout_ns)));
                        }
                    }
                    None => waiting.push(f.future.subscribe()),
                }
            }
            if waiting.is_empty() {
                break;
            }
            if monotonic_clock::now() >= deadline {
                // Those still waiting are dropped, which cancels them.
                break;
            }
            let clock = monotonic_clock::subscribe_instant(deadline);
            let mut refs: Vec<&Pollable> = waiting.iter().collect();
            refs.push(&clock);
            wasi::io::poll::poll(&refs);
        }
        drop(in_flight);
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(late(timeout_ns)))).collect()
    }

    fn now_ms(&self) -> i64 {
        let t = wasi::clocks::wall_clock::now();
        t.seconds as i64 * 1000 + i64::from(t.nanoseconds / 1_000_000)
    }

    fn steady_ms(&self) -> u64 {
        monotonic_clock::now() / 1_000_000
    }

    fn sleep_ms(&mut self, ms: u64) {
        wasi::clocks::monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
    }

    fn random(&mut self) -> u64 {
        wasi::random::random::get_random_u64()
    }
}

fn stream_error(what: &str, e: StreamError) -> TransportError {
    match e {
        StreamError::Closed => net(&format!("{what}: connection closed")),
        StreamError::LastOperationFailed(err) => match wasi::http::types::http_error_code(&err) {
            Some(code) => TransportError::Network(format!("{what}: {code:?}")),
            None => net(&format!("{what}: {}", err.to_debug_string())),
        },
    }
}

#[cfg(feature = "wasi-config")]
mod config_bindings {
    // Generated bindings are the only unsafe code; none is written by hand.
    #![allow(unsafe_code)]
    wit_bindgen::generate!({ world: "runtime-config", path: "wit", generate_all });
}

/// The settings of this instance as variables: the environment, and, built with the `wasi-config`
/// feature, the runtime's configuration over it ([`crate::variables::overlay`]). An error when the
/// runtime's configuration cannot be read.
pub fn variables() -> Result<Vec<(String, String)>, String> {
    let environment = wasi::cli::environment::get_environment();
    #[cfg(feature = "wasi-config")]
    {
        let configured = config_bindings::wasi::config::store::get_all()
            .map_err(|e| format!("the runtime's configuration (wasi:config) cannot be read: {e:?}"))?;
        Ok(crate::variables::overlay(environment, configured))
    }
    #[cfg(not(feature = "wasi-config"))]
    Ok(environment)
}
