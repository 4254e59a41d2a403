//! A native `Platform` for the same engine, so that the benchmark can compare the Wasm build with
//! a native build of the same core logic. Plain HTTP/1.1 over `std::net` (loopback simulator
//! only: no TLS), one connection per request, requests of a batch on scoped threads.

use mulesoft_audit::platform::{Method, Platform, Request, Response, TransportError};
use mulesoft_audit::settings::BaseUrl;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct NativePlatform {
    state: u64,
}

impl NativePlatform {
    pub fn new() -> Self {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Self { state: seed | 1 }
    }
}

fn send(base: &BaseUrl, request: &Request) -> Result<Response, TransportError> {
    let net = |e: std::io::Error| TransportError::Network(e.to_string());
    if base.https {
        return Err(TransportError::Denied("the native benchmark build speaks plain HTTP only".into()));
    }
    let mut stream = TcpStream::connect(&base.authority).map_err(net)?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).map_err(net)?;
    let method = match request.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
    };
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        request.path,
        base.authority,
        request.body.len()
    );
    for (k, v) in &request.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(net)?;
    stream.write_all(&request.body).map_err(net)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).map_err(net)?;
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| TransportError::Network("no header end".into()))?;
    let head = String::from_utf8_lossy(&reply[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = reply[split + 4..].to_vec();
    if let Some(len) = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse::<usize>().ok())
        && body.len() != len
    {
        return Err(TransportError::Network(format!("truncated body: {} of {len} bytes", body.len())));
    }
    Ok(Response { status, headers, body })
}

impl Platform for NativePlatform {
    fn send_many(&mut self, base: &BaseUrl, requests: &[Request]) -> Vec<Result<Response, TransportError>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = requests.iter().map(|r| s.spawn(move || send(base, r))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(TransportError::Network("thread died".into()))))
                .collect()
        })
    }

    fn now_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }

    fn sleep_ms(&mut self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    fn random(&mut self) -> u64 {
        // xorshift64: jitter only.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }
}
