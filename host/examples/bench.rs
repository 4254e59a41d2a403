//! Benchmarks (not tests): the release binary against the simulator, with the parameters of the
//! performance goals. Prints a table; `BENCHMARKS.md` records the results.
//!
//! `cargo run --release -p mulesoft-audit-host --example bench` (or `just bench`);
//! `-- quick` for a shorter run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Measured {
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: i64,
    code: i32,
    stdout: String,
    guest_peak_kib: u64,
}

/// Runs the binary and reads its own CPU time and peak RSS from wait4(2) (which also reaps it,
/// so `Child::wait` is not called).
#[allow(clippy::zombie_processes)]
fn measure(mut cmd: Command) -> Measured {
    let started = Instant::now();
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
    let logs = logs.join().unwrap();
    // The host logs the guest's peak linear memory.
    let guest_peak_kib = logs
        .split("guest_memory_peak_kib=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut status = 0;
    #[allow(unsafe_code)]
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    #[allow(unsafe_code)]
    // SAFETY: valid pointers to locals; the child is ours and is not waited for elsewhere.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid);
    let cpu = Duration::from_secs((usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) as u64)
        + Duration::from_micros((usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) as u64);
    Measured {
        wall: started.elapsed(),
        cpu,
        peak_rss_kib: usage.ru_maxrss,
        code: libc::WEXITSTATUS(status),
        stdout: text,
        guest_peak_kib,
    }
}

fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join(name);
    assert!(bin.exists(), "build the release binaries first: cargo build --release --bins");
    bin
}

/// The simulator as a process of its own, so that its memory is not the collector's (a forked
/// child starts with its parent's resident pages, which would show up in the child's peak RSS).
struct Sim {
    child: std::process::Child,
    url: String,
    org: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sim {
    fn start(org: &str, entries: usize, latency_ms: u64, rate_limit: Option<u32>) -> Self {
        let mut cmd = Command::new(binary("anypoint-sim"));
        cmd.args(["--listen", "127.0.0.1:0", "--orgs", org, "--entries", &entries.to_string()])
            .args(["--latency-ms", &latency_ms.to_string()])
            .stdout(std::process::Stdio::piped());
        if let Some(limit) = rate_limit {
            cmd.args(["--rate-limit", &limit.to_string()]);
        }
        let mut child = cmd.spawn().unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut url = String::new();
        std::io::BufRead::read_line(&mut out, &mut url).unwrap();
        Self { child, url: url.trim().to_string(), org: org.to_string() }
    }

    /// (requests, 503s) so far.
    fn stats(&self) -> (u64, u64) {
        use std::io::{Read, Write};
        let authority = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(authority).unwrap();
        write!(s, "GET /_sim/stats HTTP/1.0\r\nHost: {authority}\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or("{}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        (v["requests"].as_u64().unwrap_or(0), v["throttled_503"].as_u64().unwrap_or(0))
    }
}

fn command(sim: &Sim, dest: &Path, cache: &Path, rpm: u32) -> Command {
    let mut cmd = Command::new(binary("mulesoft-audit"));
    cmd.env_clear()
        .env("MULESOFT_AUDIT_CACHE_DIR", cache)
        .env("MULE_ORG_ID", &sim.org)
        .env("MULE_BASE_URL", &sim.url)
        .env("CLIENT_ID", anypoint_sim::DEMO_CLIENT_ID)
        .env("CLIENT_SECRET", anypoint_sim::DEMO_CLIENT_SECRET)
        .env("MULESOFT_AUDIT_DEST", format!("file://{}", dest.display()))
        .env("MULESOFT_AUDIT_LAG", "1s")
        .env("MULESOFT_AUDIT_RPM", rpm.to_string())
        .env("MULESOFT_AUDIT_LOG", "info")
        .arg("run");
    cmd
}

fn entries_written(stdout: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap_or_default();
    v["orgs"].as_array().map_or(0, |o| o.iter().map(|o| o["entries_written"].as_u64().unwrap_or(0)).sum())
}

fn row(name: &str, entries: u64, m: &Measured, requests: u64, throttled: u64, ceiling_per_min: Option<f64>) {
    let per_min = entries as f64 / m.wall.as_secs_f64() * 60.0;
    let vs = ceiling_per_min.map_or("-".to_string(), |c| format!("{:.0}%", per_min / c * 100.0));
    println!(
        "| {name} | {entries} | {:.1} s | {per_min:.0} | {vs} | {requests} | {throttled} | {:.3} | {:.1} MiB | {:.1} MiB | {} |",
        m.wall.as_secs_f64(),
        m.cpu.as_secs_f64() / (entries.max(1) as f64 / 1000.0),
        m.peak_rss_kib as f64 / 1024.0,
        m.guest_peak_kib as f64 / 1024.0,
        m.code
    );
}

fn throughput(name: &str, entries: usize, rpm_limit: u32, cache: &Path) {
    let sim = Sim::start("org-bench", entries, 250, Some(rpm_limit));
    let dir = tempfile::tempdir().unwrap();
    let m = measure(command(&sim, dir.path(), cache, rpm_limit));
    let (requests, throttled) = sim.stats();
    row(name, entries_written(&m.stdout), &m, requests, throttled, Some(f64::from(rpm_limit) * 200.0));
}

fn memory(entries: usize, cache: &Path) {
    let sim = Sim::start("org-mem", entries, 0, None);
    let dir = tempfile::tempdir().unwrap();
    let m = measure(command(&sim, dir.path(), cache, 1_000_000));
    let (requests, throttled) = sim.stats();
    row(&format!("no latency, {entries}"), entries_written(&m.stdout), &m, requests, throttled, None);
}

/// The same engine built natively (the `command` crate) against the Wasm host, same workload.
/// Returns the lines the Wasm host delivered, for [`compress_path`].
fn native_vs_wasm(entries: usize, cache: &Path) -> Vec<String> {
    let mut cpu_us = Vec::new();
    let mut delivered = Vec::new();
    for native in [true, false] {
        let sim = Sim::start("org-cpu", entries, 0, None);
        let dir = tempfile::tempdir().unwrap();
        let cmd = if native {
            let mut c = Command::new(binary("mulesoft-audit-command"));
            c.env_clear()
                .env("MULE_ORG_ID", &sim.org)
                .env("MULE_BASE_URL", &sim.url)
                .env("CLIENT_ID", "demo-client")
                .env("CLIENT_SECRET", "demo-secret-not-real")
                .env("MULESOFT_AUDIT_DIR", dir.path())
                .env("MULESOFT_AUDIT_LAG", "1s")
                .env("MULESOFT_AUDIT_RPM", "1000000");
            c
        } else {
            command(&sim, dir.path(), cache, 1_000_000)
        };
        let m = measure(cmd);
        let n = entries_written(&m.stdout);
        assert_eq!(m.code, 0);
        cpu_us.push(m.cpu.as_secs_f64() * 1e6 / n.max(1) as f64);
        if !native {
            delivered = delivered_lines(dir.path());
        }
    }
    println!(
        "\nCPU per entry, {entries} entries, no latency, whole process: native build {:.2} µs, Wasm host {:.2} µs: Wasm = {:.2}x native",
        cpu_us[0],
        cpu_us[1],
        cpu_us[1] / cpu_us[0]
    );
    delivered
}

/// Every line of every log object under `dir`.
fn delivered_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut dirs = vec![dir.join("logs")];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "gz") {
                let plain = mulesoft_audit::gzip::gunzip(&std::fs::read(&path).unwrap()).unwrap();
                lines.extend(String::from_utf8(plain).unwrap().lines().map(str::to_string));
            }
        }
    }
    lines
}

fn startup(cache: &Path) {
    let sim = Sim::start("org-start", 10, 0, None);
    let dir = tempfile::tempdir().unwrap();
    let cold_cache = tempfile::tempdir().unwrap();
    let cold = measure(command(&sim, dir.path(), cold_cache.path(), 1_000_000));
    let mut warm = Vec::new();
    for _ in 0..5 {
        warm.push(measure(command(&sim, dir.path(), cache, 1_000_000)).wall);
    }
    warm.sort();
    println!(
        "\nstart-up: cold (compile) {:.0} ms; warm run with nothing new: median {:.1} ms (min {:.1}, max {:.1})",
        cold.wall.as_secs_f64() * 1000.0,
        warm[2].as_secs_f64() * 1000.0,
        warm[0].as_secs_f64() * 1000.0,
        warm[4].as_secs_f64() * 1000.0
    );
}

/// A gzip writer of either library.
trait Gzip {
    fn put(&mut self, bytes: &[u8]);
    /// Ends the member; its size.
    fn size(self) -> usize;
}

impl Gzip for mulesoft_audit::gzip::GzipWriter {
    fn put(&mut self, bytes: &[u8]) {
        self.write(bytes).unwrap();
    }
    fn size(self) -> usize {
        self.finish().unwrap().len()
    }
}

impl Gzip for flate2::write::GzEncoder<Vec<u8>> {
    fn put(&mut self, bytes: &[u8]) {
        std::io::Write::write_all(self, bytes).unwrap();
    }
    fn size(self) -> usize {
        self.finish().unwrap().len()
    }
}

/// The path through `gz`: identity read-out, NDJSON line, deflate. Its seconds and size.
fn timed(lines: &[String], mut gz: impl Gzip) -> (f64, usize) {
    let started = Instant::now();
    for l in lines {
        std::hint::black_box(mulesoft_audit::entry::meta(l));
        gz.put(mulesoft_audit::entry::ndjson_line(l).as_bytes());
        gz.put(b"\n");
    }
    let size = gz.size();
    (started.elapsed().as_secs_f64(), size)
}

/// The compress-and-write path alone, natively, over the entries a pass delivered: identity
/// read-out, NDJSON line, deflate; at several levels, against the level the collector uses.
fn compress_path(lines: &[String]) {
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let mut sizes = Vec::new();
    println!(
        "\ncompress-and-write path (native), {} entries of {} bytes on average:",
        lines.len(),
        bytes / lines.len().max(1)
    );
    println!("| library, level | µs / entry | MB/s in | ratio | size vs miniz_oxide 6 |");
    println!("|---|---|---|---|---|");
    for level in [1u8, 2, 3, 6] {
        let (secs, size) = timed(lines, mulesoft_audit::gzip::GzipWriter::new(level));
        sizes.push((format!("miniz_oxide {level}"), level, secs, size));
    }
    // The alternative the issue names: zlib-rs (through flate2), same entries, same path.
    for level in [1u8, 2] {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(u32::from(level)));
        let (secs, size) = timed(lines, gz);
        sizes.push((format!("zlib-rs {level}"), 0, secs, size));
    }
    let level6 = sizes.iter().find(|(_, l, _, _)| *l == 6).map_or(1, |(_, _, _, n)| *n);
    for (name, level, secs, size) in sizes {
        let mark = if level == mulesoft_audit::delivery::GZIP_LEVEL { " (used)" } else { "" };
        println!(
            "| {name}{mark} | {:.2} | {:.1} | {:.1}x | {:.2} |",
            secs * 1e6 / lines.len().max(1) as f64,
            bytes as f64 / secs / 1e6,
            bytes as f64 / size as f64,
            size as f64 / level6 as f64
        );
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    // `-- cpu`: only the CPU per entry (whole process, 200,000 entries) and the compress path.
    let cpu_only = std::env::args().any(|a| a == "cpu");
    let cache = tempfile::tempdir().unwrap();
    // Warm the compiled-code cache once.
    {
        let sim = Sim::start("org-warm", 1, 0, None);
        let dir = tempfile::tempdir().unwrap();
        measure(command(&sim, dir.path(), cache.path(), 1_000_000));
    }
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH
    );
    if cpu_only {
        compress_path(&native_vs_wasm(200_000, cache.path()));
        return;
    }
    println!(
        "\n| scenario | entries | wall | entries/min | vs ceiling | requests | 503s | CPU s / 1k entries | peak RSS | guest memory | exit |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let scale = if quick { 1 } else { 4 };
    throughput("250 ms latency, 700/min", 15_000 * scale, 700, cache.path());
    throughput("250 ms latency, 40/min", 2_000 * scale, 40, cache.path());
    for entries in if quick { vec![10_000, 100_000] } else { vec![10_000, 100_000, 1_000_000] } {
        memory(entries, cache.path());
    }
    let delivered = native_vs_wasm(if quick { 50_000 } else { 200_000 }, cache.path());
    startup(cache.path());
    compress_path(&delivered);
}
