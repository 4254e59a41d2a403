//! The export: an HTTP request in, one pass, an HTTP answer out.

// The generated bindings and the export macro are the only unsafe code; none is written by hand.
#![allow(unsafe_code)]

use mulesoft_audit::trigger;
use mulesoft_audit::variables::Values;
use wasi::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};
use wasi::io::streams::StreamError;

mod bindings {
    wit_bindgen::generate!({
        world: "edge-trigger",
        path: "../../wit",
        with: {
            "wasi:http/types@0.2.12": wasi::http::types,
            "wasi:io/poll@0.2.12": wasi::io::poll,
            "wasi:io/error@0.2.12": wasi::io::error,
            "wasi:io/streams@0.2.12": wasi::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasi::clocks::monotonic_clock,
        },
    });
}

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::mulesoft::audit::collector;

struct Component;

impl Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let (status, text) = respond(&request);
        reply(out, status, &text);
    }
}

/// What to answer `request`, on `serve`'s routes: `POST /` runs a pass, `GET /healthz` says the
/// instance is up; a bad request is refused before any work.
fn respond(request: &IncomingRequest) -> (u16, String) {
    let path = request.path_with_query().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    match (request.method(), path) {
        (Method::Post, "/") => {}
        (Method::Get, "/healthz") => return (200, "ok".into()),
        (_, "/") => return (405, "POST a Pub/Sub push body or a CloudEvent to run a pass".into()),
        _ => return (404, "not found".into()),
    }
    let headers: Vec<(String, String)> = request
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let body = match read_body(request) {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let trigger = match trigger::parse(header, &body) {
        Ok(trigger) => trigger,
        Err(problem) => {
            eprintln!("bad trigger request: {problem}");
            return (400, problem);
        }
    };
    eprintln!("trigger received: {trigger:?}");
    trigger::answer(pass())
}

/// One pass with the instance's settings; prints the report as every host does (the summary on
/// stdout, a line a failure on stderr) and returns its exit code.
fn pass() -> u8 {
    let outcome = match settings() {
        Ok(environment) => collector::run(&environment.config),
        Err(failure) => Err(collector::RunError { failures: vec![failure], completed: Vec::new() }),
    };
    let report = collector::report_of(outcome.as_ref());
    for line in &report.lines {
        eprintln!("{line}");
    }
    println!("{}", report.json);
    report.exit_code
}

/// The settings, parsed and checked by the collector's `configure`.
fn settings() -> Result<collector::Environment, collector::Failure> {
    let config_failure = |message| collector::Failure { org_id: None, kind: collector::ErrorKind::Config, message };
    let vars = mulesoft_audit::wasi_platform::variables().map_err(config_failure)?;
    trigger::refuse_host_only(&Values::from_env(vars.clone())).map_err(config_failure)?;
    collector::configure(&vars, None)
}

/// The request's body, or the answer that refuses it.
fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, (u16, String)> {
    let unreadable = |what: &str| (400, format!("the request body could not be read ({what})"));
    let incoming = request.consume().map_err(|()| unreadable("taken"))?;
    let mut body = Vec::new();
    {
        let stream = incoming.stream().map_err(|()| unreadable("no stream"))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(bytes) => body.extend_from_slice(&bytes),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => return Err(unreadable(&e.to_debug_string())),
            }
            if body.len() > trigger::MAX_BODY {
                return Err((413, format!("a trigger body is at most {} bytes", trigger::MAX_BODY)));
            }
        }
    }
    Ok(body)
}

/// Sends the answer; nothing is left to do if the caller has gone.
fn reply(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain; charset=utf-8".to_vec())])
        .unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let body = response.body();
    ResponseOutparam::set(out, Ok(response));
    let Ok(body) = body else { return };
    if status != 204
        && let Ok(stream) = body.write()
    {
        for chunk in text.as_bytes().chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);
}

bindings::export!(Component with_types_in bindings);
