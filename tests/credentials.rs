//! Google credentials, the way production runs them: every Application Default Credentials
//! source through the stand-in that refuses anonymous callers, a token revoked mid-pass,
//! `STORAGE_EMULATOR_HOST` (the one anonymous path), missing and broken credentials, and the
//! smoke matrix of every subcommand with every kind of destination.

use crate::google::{Credentials, Google, Plan, SERVICE_ACCOUNT};
use crate::harness::*;
use crate::serve::{PUSH, Server, post};
use anypoint_sim::{OrgSpec, SimConfig};
use std::process::Command;

const BUCKET: &str = "audit-bucket";

/// The command for `org` into the stand-in's bucket with `credentials`.
fn through(
    sim: &anypoint_sim::Simulator,
    google: &Google,
    credentials: Credentials,
    files: &std::path::Path,
) -> Command {
    let mut cmd = command(sim, &format!("gs://{BUCKET}/mulesoft"));
    google.configure(&mut cmd, credentials, files);
    cmd
}

fn delivered(google: &Google) -> std::collections::BTreeMap<String, Vec<String>> {
    google
        .log_objects(BUCKET, "mulesoft/logs/")
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("mulesoft/").to_string(), v))
        .collect()
}

/// A pass and a `check` with `credentials`: exactly once, every request as the expected
/// principal, the tokens from the endpoints that source uses, and `check` naming whose they are.
fn delivers_with(credentials: Credentials, org: &str, token_endpoints: &[&str]) {
    let google = Google::start(BUCKET, Plan::default());
    let files = tempfile::tempdir().unwrap();
    let sim = sim(SimConfig::new(vec![OrgSpec::new(org, 900)]));
    let mut cmd = through(&sim, &google, credentials, files.path());
    cmd.env("MULESOFT_AUDIT_OBJECT_KIB", "128");
    let r = run_ok(cmd);
    let (from, to) = covered(&[&r.summary], org);
    assert_exactly_once(&sim, org, &delivered(&google), from, to);

    let seen = google.state.seen.lock().unwrap();
    assert_eq!(seen.refused_anonymous, 0, "every request carried a token");
    assert_eq!(
        seen.principals.keys().cloned().collect::<Vec<_>>(),
        vec![credentials.principal().to_string()],
        "Cloud Storage saw only {credentials:?}'s principal"
    );
    let endpoints: Vec<&str> = seen.token_requests.keys().copied().collect();
    assert_eq!(endpoints, token_endpoints, "where {credentials:?} got its tokens");
    drop(seen);

    let mut cmd = through(&sim, &google, credentials, files.path());
    cmd.arg("check");
    let checked = finish(cmd.output().unwrap());
    assert_eq!(checked.code, 0, "{}\n{}", checked.stdout, checked.stderr);
    let line = checked.stdout.lines().find(|l| l.starts_with("ok: credentials: ")).unwrap_or_default();
    let principal = credentials.principal().trim_start_matches("user:");
    let names = match credentials {
        Credentials::MetadataServer => line.contains("metadata server") && line.contains(principal),
        Credentials::KeyFile => line.contains("service account key") && line.contains(principal),
        Credentials::GcloudUser => line.contains("gcloud auth application-default login"),
        Credentials::Federation => line.contains("workload identity federation") && line.contains(principal),
    };
    assert!(names, "check names the source and principal:\n{}", checked.stdout);
    // Issued tokens start `ya29.`, self-signed ones are JWTs (`eyJ…`): neither is ever printed.
    for token in ["ya29.", "eyJ"] {
        for output in [&r.stdout, &r.stderr, &checked.stdout, &checked.stderr] {
            assert!(!output.contains(token), "a token was printed:\n{output}");
        }
    }
}

#[test]
fn the_metadata_server_credentials_deliver_exactly_once() {
    delivers_with(Credentials::MetadataServer, "org-mds", &["metadata"]);
}

#[test]
fn a_service_account_key_signs_its_own_tokens_and_delivers_exactly_once() {
    // google-cloud-auth signs a JWT with the key rather than calling `token_uri`.
    delivers_with(Credentials::KeyFile, "org-key", &["self-signed"]);
}

#[test]
fn gcloud_user_credentials_refresh_at_the_token_endpoint_and_deliver_exactly_once() {
    delivers_with(Credentials::GcloudUser, "org-user", &["oauth"]);
}

#[test]
fn workload_identity_federation_exchanges_impersonates_and_delivers_exactly_once() {
    delivers_with(Credentials::Federation, "org-wif", &["iam", "sts"]);
}

#[test]
fn the_metadata_stand_in_insists_on_its_header_and_storage_on_a_token() {
    let google = Google::start(BUCKET, Plan::default());
    let token = format!("{}/computeMetadata/v1/instance/service-accounts/default/token", google.endpoint());
    assert_eq!(http_get(&token).unwrap().0, 403, "no Metadata-Flavor header");
    assert_eq!(http_request("GET", &token, &[("Metadata-Flavor", "Google")], b"").unwrap().0, 200);
    let list = format!("{}/storage/v1/b/{BUCKET}/o", google.endpoint());
    assert_eq!(http_get(&list).unwrap().0, 401, "anonymous");
    assert_eq!(http_request("GET", &list, &[("Authorization", "Bearer made-up")], b"").unwrap().0, 401);
}

#[test]
fn a_token_revoked_during_a_pass_is_renewed_once_and_nothing_is_lost_or_doubled() {
    let google = Google::start(BUCKET, Plan { revoke_tokens_after: Some(6), ..Plan::default() });
    let files = tempfile::tempdir().unwrap();
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-revoked", 1500)]));
    let mut cmd = through(&sim, &google, Credentials::MetadataServer, files.path());
    cmd.env("MULESOFT_AUDIT_OBJECT_KIB", "64");
    let r = run_ok(cmd);
    let seen = google.state.seen.lock().unwrap();
    assert_eq!(seen.refused_revoked, 1, "one request met the revoked token");
    assert_eq!(seen.token_requests["metadata"], 2, "one token, then one more after the 401");
    assert!(seen.principals[SERVICE_ACCOUNT] > 6, "the pass went on after the renewal");
    drop(seen);
    let (from, to) = covered(&[&r.summary], "org-revoked");
    assert_exactly_once(&sim, "org-revoked", &delivered(&google), from, to);
}

#[test]
fn storage_emulator_host_alone_sends_no_credentials() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-emu", 300)]));
    // Against a server that wants credentials, the emulator variable is refused: none are sent.
    let google = Google::start(BUCKET, Plan::default());
    let mut cmd = command(&sim, &format!("gs://{BUCKET}/mulesoft"));
    cmd.env("STORAGE_EMULATOR_HOST", google.endpoint());
    let refused = run(cmd);
    assert_eq!(refused.code, 2, "{}\n{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("401") && refused.stderr.contains("STORAGE_EMULATOR_HOST"), "{}", refused.stderr);
    assert!(google.state.seen.lock().unwrap().refused_anonymous >= 1);
    assert!(delivered(&google).is_empty(), "nothing written");
    // Against an emulator, it works as Google's libraries do.
    let mut cmd = command(&sim, &format!("gs://{BUCKET}/mulesoft"));
    cmd.env("STORAGE_EMULATOR_HOST", google.gcs.endpoint());
    let r = run_ok(cmd);
    let (from, to) = covered(&[&r.summary], "org-emu");
    assert_exactly_once(&sim, "org-emu", &delivered(&google), from, to);
    // With an endpoint setting too, which one is meant is unclear: refused.
    let mut cmd = command(&sim, &format!("gs://{BUCKET}/mulesoft"));
    cmd.env("STORAGE_EMULATOR_HOST", google.gcs.endpoint()).env("MULESOFT_AUDIT_GCS_ENDPOINT", google.endpoint());
    let both = run(cmd);
    assert_eq!(both.code, 2);
    assert!(both.stderr.contains("only one"), "{}", both.stderr);
}

/// Exit 2, no panic, and the last line on stderr says what is wrong in one sentence.
fn assert_one_clear_line(r: &RunResult, needle: &str) {
    assert_eq!(r.code, 2, "exit 2 for `{needle}`:\n{}\n{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(last.contains(needle), "the last line names the problem `{needle}`:\n{}", r.stderr);
}

#[test]
fn missing_or_broken_credentials_are_one_clear_line_and_nothing_is_written() {
    let google = Google::start(BUCKET, Plan::default());
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-nocreds", 100)]));
    let files = tempfile::tempdir().unwrap();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let key = google.write_key_file(files.path());
    let broken_key = files.path().join("broken-key.json");
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&key).unwrap()).unwrap();
    json["private_key"] = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n".into();
    std::fs::write(&broken_key, json.to_string()).unwrap();
    let not_json = files.path().join("not-json.json");
    std::fs::write(&not_json, "this is not JSON").unwrap();
    let revoked_user = files.path().join("revoked-user.json");
    let user = serde_json::json!({"type": "authorized_user", "client_id": "c", "client_secret": "s",
        "refresh_token": "revoked", "token_uri": format!("{}/token", google.endpoint())});
    std::fs::write(&revoked_user, user.to_string()).unwrap();

    let cases: Vec<(&str, (&str, String), &str)> = vec![
        (
            "no metadata server",
            ("GCE_METADATA_HOST", format!("127.0.0.1:{closed_port}")),
            "no Google credentials found",
        ),
        ("missing file", ("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json".into()), "cannot be read"),
        (
            "not JSON",
            ("GOOGLE_APPLICATION_CREDENTIALS", not_json.display().to_string()),
            "not a Google credentials file",
        ),
        ("broken key", ("GOOGLE_APPLICATION_CREDENTIALS", broken_key.display().to_string()), "access token"),
        ("empty variable", ("GOOGLE_APPLICATION_CREDENTIALS", String::new()), "set but empty"),
        (
            "revoked refresh token",
            ("GOOGLE_APPLICATION_CREDENTIALS", revoked_user.display().to_string()),
            "access token",
        ),
    ];
    for (case, (variable, value), needle) in &cases {
        for subcommand in ["run", "check"] {
            let mut cmd = command(&sim, &format!("gs://{BUCKET}/mulesoft"));
            cmd.env("GCE_METADATA_HOST", format!("127.0.0.1:{}", google.port))
                .env("MULESOFT_AUDIT_GCS_ENDPOINT", google.endpoint());
            cmd.env(variable, value).arg(subcommand);
            let r = finish(cmd.output().unwrap());
            assert_one_clear_line(&r, needle);
            for token in ["ya29.", "eyJ"] {
                assert!(!r.stderr.contains(token) && !r.stdout.contains(token), "{case}: a token was printed");
            }
        }
    }
    // A metadata server with no service account attached.
    google.state.metadata_has_account.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut cmd = through(&sim, &google, Credentials::MetadataServer, files.path());
    cmd.arg("run");
    assert_one_clear_line(&finish(cmd.output().unwrap()), "no service account attached");
    assert!(google.gcs.objects(BUCKET, "").is_empty(), "nothing written");
}

/// Every subcommand with every kind of destination: exit 0, 1 or 2, never a panic, and a failure's
/// last line on stderr says what is wrong.
#[test]
fn smoke_every_subcommand_with_every_destination() {
    let google = Google::start(BUCKET, Plan::default());
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-smoke", 200)]));
    let files = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file_dest = format!("file://{}", dir.path().display());
    let check_ended = |what: &str, r: &RunResult, want: i32| {
        assert_eq!(r.code, want, "{what}:\n{}\n{}", r.stdout, r.stderr);
        assert!(!r.stderr.contains("panicked"), "{what}: {}", r.stderr);
    };
    let destinations: Vec<(String, Box<dyn Fn() -> Command>)> = Credentials::ALL
        .iter()
        .map(|&c| {
            let (sim, google, files) = (&sim, &google, files.path());
            (format!("gs:// with {c:?}"), Box::new(move || through(sim, google, c, files)) as Box<dyn Fn() -> Command>)
        })
        .chain([("file://".to_string(), Box::new(|| command(&sim, &file_dest)) as Box<dyn Fn() -> Command>)])
        .collect();
    for (what, make) in &destinations {
        let mut run_cmd = make();
        run_cmd.arg("run");
        check_ended(&format!("run, {what}"), &finish(run_cmd.output().unwrap()), 0);
        let mut check_cmd = make();
        check_cmd.arg("check");
        check_ended(&format!("check, {what}"), &finish(check_cmd.output().unwrap()), 0);
        let server = Server::spawn(make());
        assert_eq!(post(&server, &[("content-type", "application/json")], PUSH), 204, "serve, {what}");
    }
    let out = tempfile::tempdir().unwrap();
    let demo = clean_env(&mut Command::new(BIN))
        .env("MULESOFT_AUDIT_CACHE_DIR", cache_dir())
        .args(["demo", "--entries", "200", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    check_ended("demo", &finish(demo), 0);
    let cache = tempfile::tempdir().unwrap();
    let precompile =
        clean_env(&mut Command::new(BIN)).env("MULESOFT_AUDIT_CACHE_DIR", cache.path()).arg("precompile").output();
    check_ended("precompile", &finish(precompile.unwrap()), 0);
    // The same subcommands, failing: a destination that cannot work gives 2 and one line.
    for subcommand in ["run", "check", "serve"] {
        let mut c = command(&sim, &format!("gs://{BUCKET}/mulesoft"));
        c.env("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
            .env("MULESOFT_AUDIT_GCS_ENDPOINT", google.endpoint());
        c.env("PORT", "0").env("MULESOFT_AUDIT_LISTEN", "127.0.0.1").arg(subcommand);
        assert_one_clear_line(&finish(c.output().unwrap()), "/nonexistent/key.json cannot be read");
    }
    let precompile = clean_env(&mut Command::new(BIN)).env_remove("HOME").arg("precompile").output().unwrap();
    let r = finish(precompile);
    assert_one_clear_line(&r, "MULESOFT_AUDIT_CACHE_DIR");
}
