//! Hostile and broken inputs through the binary as users run it (issue #25): a reply too large
//! or too slow fails only its organization, and a token endpoint that echoes the request leaks
//! the secret in no form. The API-level cases (retention, non-object entries, garbled replies,
//! huge tokens, loops) are the engine's `hostile` and `scenarios` tests; the settings' cases are
//! in `config`.

use crate::harness::*;
use anypoint_sim::{Faults, OrgSpec, SimConfig};

/// Two organizations; the first meets `faults` on its first queries.
fn two_orgs(faults: Faults) -> anypoint_sim::Simulator {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-hostile", 50), OrgSpec::new("org-next", 80)]);
    config.token_audit_entries = false;
    config.faults = faults;
    sim(config)
}

fn failure_of<'a>(run: &'a RunResult, org: &str) -> &'a serde_json::Value {
    let failures = run.summary["failures"].as_array().map(Vec::as_slice).unwrap_or_default();
    failures.iter().find(|f| f["org_id"] == org).unwrap_or_else(|| panic!("no failure of {org}: {}", run.report()))
}

fn written(run: &RunResult, org: &str) -> Option<u64> {
    let orgs = run.summary["orgs"].as_array().map(Vec::as_slice).unwrap_or_default();
    orgs.iter().find(|o| o["org_id"] == org).and_then(|o| o["entries_written"].as_u64())
}

#[test]
fn a_500_mb_reply_fails_only_its_organization_and_is_read_no_further_than_the_limit() {
    let sim = two_orgs(Faults { oversized_first: 1, oversized_bytes: 500 << 20, ..Faults::default() });
    let dir = tempfile::tempdir().unwrap();
    let run = run(command(&sim, &format!("file://{}", dir.path().display())));
    assert_eq!(run.code, 1, "{}", run.report());
    let failure = failure_of(&run, "org-hostile");
    assert_eq!(failure["kind"], "api", "{}", run.report());
    let message = failure["message"].as_str().unwrap_or_default();
    assert!(message.contains("larger than the 50331648-byte limit"), "{message}");
    assert_eq!(written(&run, "org-next"), Some(80), "the next organization is collected: {}", run.report());
    // Read once, never retried: the same request gets the same reply.
    assert_eq!(sim.stats().injected_faults, 1);
}

#[test]
fn a_body_sent_a_byte_a_second_is_cut_at_the_http_timeout_and_the_next_organization_collected() {
    let sim = two_orgs(Faults { slow_body_first: 2, ..Faults::default() });
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env("MULESOFT_AUDIT_HTTP_TIMEOUT", "3s").env("MULESOFT_AUDIT_MAX_ATTEMPTS", "2");
    let run = run(cmd);
    assert_eq!(run.code, 1, "{}", run.report());
    let failure = failure_of(&run, "org-hostile");
    assert_eq!(failure["kind"], "unavailable", "{}", run.report());
    let message = failure["message"].as_str().unwrap_or_default();
    assert!(message.contains("no complete reply within the HTTP timeout of 3000 ms"), "{message}");
    assert_eq!(written(&run, "org-next"), Some(80), "{}", run.report());
    // The next pass, with the API healthy again, collects what the first could not.
    let again = run_ok(command(&sim, &format!("file://{}", dir.path().display())));
    assert_eq!(written(&again, "org-hostile"), Some(50), "{}", again.report());
}

#[test]
fn a_secret_echoed_by_the_token_endpoint_leaves_in_no_form() {
    let secret = "p&s+w/o=r d%é~\"\\x";
    let mut config = SimConfig::new(vec![OrgSpec::new("org-echo", 10)]);
    config.client_secret = secret.into();
    config.faults.echo_token_request = true;
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env("CLIENT_SECRET", secret);
    let run = run(cmd);
    assert_eq!(run.code, 2, "{}", run.report());
    assert!(run.stderr.contains("invalid_request"), "the OAuth error code is said: {}", run.report());
    let encoded: String = url_form(secret);
    let json = serde_json::to_string(secret).unwrap();
    let forms = [
        secret.to_string(),
        encoded.clone(),
        encoded.to_ascii_lowercase(),
        encoded.replace('+', "%20"),
        json.trim_matches('"').to_string(),
        "p&s+w".to_string(),
        "p%26s".to_string(),
    ];
    let mut places = vec![("stdout".to_string(), run.stdout.clone()), ("stderr".to_string(), run.stderr.clone())];
    for file in files_in(dir.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(dir.path().join(&file)).unwrap()).into_owned();
        places.push((file.display().to_string(), text));
    }
    assert!(places.len() > 2, "the status was written: {places:?}");
    for (place, text) in &places {
        for form in &forms {
            assert!(!text.to_ascii_lowercase().contains(&form.to_ascii_lowercase()), "`{form}` in {place}: {text}");
        }
    }
}

/// Form encoding as a client sends it (`application/x-www-form-urlencoded`).
fn url_form(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
