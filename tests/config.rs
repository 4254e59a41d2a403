//! Bad settings and credentials: one clear line naming the problem, exit 2 (configuration) or 1
//! (run), and nothing marked done.

use crate::harness::*;
use anypoint_sim::{OrgSpec, SimConfig};

fn quick_sim() -> anypoint_sim::Simulator {
    sim(SimConfig::new(vec![OrgSpec::new("org-cfg", 50)]))
}

fn assert_config_error(r: &RunResult, needle: &str) {
    assert_eq!(r.code, 2, "exit code 2 for `{needle}`:\n{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(needle), "stderr names the problem `{needle}`:\n{}", r.stderr);
}

#[test]
fn missing_and_malformed_settings() {
    let sim = quick_sim();
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let cases: Vec<(&str, Option<&str>, &str)> = vec![
        ("MULE_ORG_ID", None, "MULE_ORG_ID is not set"),
        ("MULE_ORG_ID", Some("not an/org"), "is malformed"),
        ("CLIENT_ID", None, "CLIENT_ID is not set"),
        ("CLIENT_SECRET", None, "CLIENT_SECRET is not set"),
        ("MULE_BASE_URL", Some("not a url"), "MULE_BASE_URL: base URL `not a url` must start with https://"),
        ("MULE_BASE_URL", Some("http://anypoint.mulesoft.com"), "non-loopback"),
        ("MULESOFT_AUDIT_DEST", None, "no destination"),
        ("MULESOFT_AUDIT_LAG", Some("soon"), "MULESOFT_AUDIT_LAG `soon` is not a duration"),
        ("MULESOFT_AUDIT_PAGE_SIZE", Some("500"), "1..200"),
        ("MULESOFT_AUDIT_CONCURRENCY", Some("99"), "concurrency 99 is out of range"),
        ("MULESOFT_AUDIT_STATE_PREFIX", Some("logs/state"), "lie under the log objects"),
        ("MULESOFT_AUDIT_DEST", Some("/nonexistent/dir"), "create it first"),
        ("MULESOFT_AUDIT_DEST", Some("s3://bucket"), "not supported"),
    ];
    for (var, value, needle) in cases {
        let mut cmd = command(&sim, &dest);
        match value {
            Some(v) => cmd.env(var, v),
            None => cmd.env_remove(var),
        };
        assert_config_error(&run(cmd), needle);
    }
    let mut cmd = command(&sim, &dest);
    cmd.env_remove("MULE_BASE_URL").env("MULE_REGION", "mars");
    let r = run(cmd);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("mars"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");
}

#[test]
fn cloud_storage_settings_that_cannot_work_are_refused_before_any_request() {
    let sim = quick_sim();
    // Loopback, so that only the setting under test is wrong; nothing listens there.
    let local = ("MULESOFT_AUDIT_GCS_ENDPOINT", "http://127.0.0.1:9");
    let cases: [(&[(&str, &str)], &str); 4] = [
        // The engine's one URL rule: a token would travel unencrypted.
        (&[("MULESOFT_AUDIT_GCS_ENDPOINT", "http://storage.example")], "unencrypted"),
        (&[local, ("MULESOFT_AUDIT_GCS_CHUNK_KIB", "100")], "multiple of 256"),
        (&[local, ("MULESOFT_AUDIT_GCS_RESUMABLE_ABOVE", "lots")], "not a number of bytes"),
        (&[local, ("MULESOFT_AUDIT_GCS_TIMEOUT_SECS", "0")], "above 0"),
    ];
    for (vars, needle) in cases {
        let mut cmd = command(&sim, "gs://audit-bucket/logs");
        cmd.envs(vars.iter().copied());
        assert_config_error(&run(cmd), needle);
    }
    assert_eq!(sim.stats().requests, 0, "refused before any request");
}

#[test]
fn a_wrong_secret_is_one_clear_line_and_never_printed() {
    let sim = quick_sim();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    let wrong = "wrong-secret-value-1234";
    cmd.env("CLIENT_SECRET", wrong);
    let r = run(cmd);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("401") && r.stderr.contains("CLIENT_SECRET"), "{}", r.stderr);
    assert!(!r.stdout.contains(wrong) && !r.stderr.contains(wrong), "the secret is never printed");
    assert_nothing_marked_done_in(dir.path());
}

#[test]
fn secret_from_a_file() {
    let sim = quick_sim();
    let dir = tempfile::tempdir().unwrap();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), format!("{}\n", anypoint_sim::DEMO_CLIENT_SECRET)).unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env_remove("CLIENT_SECRET").env("CLIENT_SECRET_FILE", secret.path());
    run_ok(cmd);
}

#[test]
fn an_org_outside_the_apps_scope_fails_alone() {
    let mut forbidden = OrgSpec::new("org-nope", 100);
    forbidden.forbidden = true;
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-yes", 300), forbidden]));
    let dir = tempfile::tempdir().unwrap();
    let r = run(command(&sim, &format!("file://{}", dir.path().display())));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("org-nope") && r.stderr.contains("403") && r.stderr.contains("Audit Log Viewer"),
        "{}",
        r.stderr
    );
    assert_eq!(r.summary["failures"][0]["kind"], "forbidden");
    assert_nothing_marked_done_in(&dir.path().join("state/org-nope"));
    let (from, to) = covered(&[&r.summary], "org-yes");
    assert_exactly_once(&sim, "org-yes", &objects_in_dir(dir.path()), from, to);
}

#[test]
fn a_corrupt_or_foreign_checkpoint_is_refused_not_guessed() {
    let sim = quick_sim();
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    std::fs::create_dir_all(dir.path().join("state/org-cfg")).unwrap();
    for content in ["garbage{", r#"{"format":"something-else"}"#] {
        std::fs::write(dir.path().join("state/org-cfg/checkpoint.json"), content).unwrap();
        let r = run(command(&sim, &dest));
        assert_eq!(r.code, 2, "a checkpoint to put right is a person's to act on");
        assert_eq!(r.summary["failures"][0]["kind"], "checkpoint");
        assert!(r.stderr.contains("checkpoint") && r.stderr.contains("state/org-cfg/checkpoint.json"), "{}", r.stderr);
        assert!(!dir.path().join("logs").exists(), "nothing collected from a guessed start");
    }
}

#[test]
fn check_verifies_credentials_and_write_access_without_collecting() {
    let sim = quick_sim();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.arg("check");
    let r = finish(cmd.output().unwrap());
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("org-cfg") && r.stdout.contains("writable"), "{}", r.stdout);
    assert!(!dir.path().join("logs").exists(), "check collects nothing");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "the probe was removed: {leftovers:?}");

    let mut cmd = command(&sim, "/nonexistent/dir");
    cmd.arg("check");
    let r = finish(cmd.output().unwrap());
    assert_eq!(r.code, 2);
}

#[test]
fn demo_works_with_nothing_set_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = clean_env(&mut Command::new(BIN))
        .env("MULESOFT_AUDIT_CACHE_DIR", cache_dir())
        .current_dir(dir.path())
        .args(["demo", "--entries", "800"])
        .output()
        .unwrap();
    let r = finish(out);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let objects = objects_in_dir(&dir.path().join("mulesoft-audit-demo"));
    let total: usize = objects.values().map(Vec::len).sum();
    assert!(total >= 800, "demo wrote {total} entries");
}

use std::process::Command;

#[test]
fn precompile_fills_the_cache_that_runs_then_use() {
    let cache = tempfile::tempdir().unwrap();
    let out = clean_env(&mut Command::new(BIN))
        .env("MULESOFT_AUDIT_CACHE_DIR", cache.path())
        .arg("precompile")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().any(|f| f.starts_with("collector-48.0.8-") && f.ends_with(".cwasm")), "{files:?}");
    let sim = quick_sim();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env("MULESOFT_AUDIT_CACHE_DIR", cache.path());
    run_ok(cmd);
    let after: Vec<_> = std::fs::read_dir(cache.path()).unwrap().flatten().collect();
    assert_eq!(after.len(), files.len(), "the run used the precompiled code instead of compiling again");
}

#[test]
fn api_replies_that_are_not_a_page_fail_clearly() {
    // A gateway's HTML page, then JSON whose `data` is not an array: both are retried like a
    // garbled reply, then fail the org naming the problem, with nothing written or marked done.
    // As `api`, a person's to look at: replies that arrive whole and never parse are not mended
    // by waiting (#25).
    type Inject = fn(&mut anypoint_sim::Faults);
    let cases: [(Inject, &str); 2] =
        [(|f| f.garbage_first = 100, "not JSON"), (|f| f.wrong_shape_first = 100, "wrong shape")];
    for (inject, needle) in cases {
        let mut config = SimConfig::new(vec![OrgSpec::new("org-bad", 50)]);
        inject(&mut config.faults);
        let sim = sim(config);
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
        cmd.env("MULESOFT_AUDIT_MAX_ATTEMPTS", "2");
        let r = run(cmd);
        assert_eq!(r.code, 1);
        assert_eq!(r.summary["failures"][0]["kind"], "api");
        assert!(r.stderr.contains(needle) && r.stderr.contains("org-bad"), "{}", r.stderr);
        assert!(r.stderr.contains("cannot be read") && !r.stderr.contains("next pass retries"), "{}", r.stderr);
        assert_nothing_marked_done_in(dir.path());
    }
}

#[test]
fn a_page_larger_than_the_memory_limit_stops_the_guest_and_nothing_is_marked_done() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-huge", 400)]);
    // Every entry odd: many of 40 KB, so a page of 200 is several MiB.
    config.odd_permille = 1000;
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env("MULESOFT_AUDIT_MEMORY_MIB", "3");
    let r = run(cmd);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.summary["failures"][0]["kind"], "memory-limit", "{}", r.stdout);
    assert!(sim.stats().query_requests >= 1, "the guest started, read a page, and was stopped by it");
    assert_nothing_marked_done_in(dir.path());
}

#[test]
fn checkpoints_under_the_log_prefix_are_refused_however_the_destinations_are_spelled() {
    // The feed ingests (and may delete) everything under the log prefix: checkpoints there
    // would be taken, the state lost, and entries delivered again.
    let sim = quick_sim();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("d");
    std::fs::create_dir_all(root.join("logs")).unwrap();
    std::os::unix::fs::symlink(root.join("logs"), dir.path().join("link")).unwrap();
    let dest = format!("file://{}", root.display());
    let states = [
        format!("file://{}/logs", root.display()),
        format!("{}/logs/../logs/", root.display()),
        format!("file://{}", dir.path().join("link").display()),
    ];
    for state in &states {
        for subcommand in ["check", "run"] {
            let mut cmd = command(&sim, &dest);
            cmd.env("MULESOFT_AUDIT_STATE_DEST", state);
            if subcommand == "check" {
                cmd.arg("check");
                let output = cmd.output().unwrap();
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert_eq!(output.status.code(), Some(2), "check with state in {state}:\n{stderr}");
                assert!(stderr.contains("lie under the log objects"), "{stderr}");
            } else {
                assert_config_error(&run(cmd), "lie under the log objects");
            }
        }
    }
    let files: Vec<_> = walk(&root);
    assert!(files.is_empty(), "nothing written: {files:?}");
    // Beside the logs is where they belong.
    let mut cmd = command(&sim, &dest);
    cmd.env("MULESOFT_AUDIT_STATE_DEST", format!("file://{}", dir.path().join("state").display()));
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    run_ok(cmd);
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

#[test]
fn a_secret_file_that_is_a_device_or_too_large_is_a_setting_to_fix() {
    // A Secret Manager mount pointed at the wrong path: refused at once, never read to the end.
    let sim = quick_sim();
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 1 << 20]).unwrap();
    for (file, needle) in [("/dev/zero".to_string(), "not a regular file"), (big.display().to_string(), "more than")] {
        let mut cmd = command(&sim, &dest);
        cmd.env_remove("CLIENT_SECRET").env("CLIENT_SECRET_FILE", &file);
        assert_config_error(&run(cmd), needle);
    }
}

#[test]
fn a_setting_that_is_not_utf8_is_named() {
    use std::os::unix::ffi::OsStrExt as _;
    let sim = quick_sim();
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let bad = std::ffi::OsStr::from_bytes(b"\xff\xfe");
    for name in ["MULE_ORG_ID", "MULESOFT_AUDIT_LAG", "MULESOFT_AUDIT_LOG_FORMAT"] {
        let mut cmd = command(&sim, &dest);
        cmd.env(name, bad);
        assert_config_error(&run(cmd), &format!("{name} is not valid UTF-8"));
    }
    // A variable the collector does not read is none of its business.
    let mut cmd = command(&sim, &dest);
    cmd.env("SOMETHING_ELSE", bad);
    run_ok(cmd);
}

#[test]
fn the_cloud_run_manifests_match_what_the_image_provides() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let dockerfile = read("Dockerfile");
    // The port serve listens on without PORT, the command without arguments.
    assert!(dockerfile.contains("EXPOSE 8080") && dockerfile.contains(r#"CMD ["serve"]"#), "{dockerfile}");
    let help = std::process::Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("[default: 8080]"), "serve's own default port");
    for (file, subcommand) in [("examples/cloud-run/service.yaml", "serve"), ("examples/cloud-run/job.yaml", "run")] {
        let text = read(file);
        assert!(text.contains(&format!(r#"args: ["{subcommand}"]"#)), "{file} runs {subcommand}");
        if subcommand == "serve" {
            assert!(text.contains("containerPort: 8080"), "{file}: the image's port");
        }
        let names: Vec<&str> = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("- name: "))
            .filter(|name| *name != "http1")
            .collect();
        assert!(names.contains(&"MULE_ORG_ID") && names.contains(&"CLIENT_SECRET"), "{file}: {names:?}");
        for name in names {
            assert!(mulesoft_audit_host::cli::reads_variable(name), "{file}: `{name}` is no variable the binary reads");
        }
    }
}
