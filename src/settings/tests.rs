//! The settings' rules, and the raw configuration other tests start from ([`raw`]).

use super::*;

pub fn raw() -> RawConfig {
    RawConfig {
        org_ids: vec!["org-1".into()],
        discover_children: false,
        plane: None,
        base_url: Some("http://127.0.0.1:8081".into()),
        client_id: "id".into(),
        client_secret: "s3cret".into(),
        lookback_seconds: 86_400,
        since_ms: None,
        start_anew: false,
        lag_seconds: 60,
        overlap_seconds: 600,
        page_size: 200,
        max_pages: 1000,
        object_max_bytes: 32 << 20,
        key_prefix: "logs/".into(),
        state_prefix: "state/".into(),
        requests_per_minute: None,
        max_attempts: 5,
        paging: Paging::Cursor,
        shard_index: 0,
        shard_count: 1,
        concurrency: 4,
        http_timeout_ms: 60_000,
    }
}

#[test]
fn durations() {
    use std::time::Duration;
    assert_eq!(parse_duration("x", "90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("x", "10m"), Ok(Duration::from_secs(600)));
    assert_eq!(parse_duration("x", "7d"), Ok(Duration::from_secs(604_800)));
    assert_eq!(parse_duration("x", "15"), Ok(Duration::from_secs(15)));
    assert_eq!(parse_duration("x", "250ms"), Ok(Duration::from_millis(250)));
    assert!(parse_duration("--lag", "soon").unwrap_err().contains("--lag"));
    assert!(parse_duration("x", "5y").is_err());
    assert!(parse_duration("x", "99999999999999999d").unwrap_err().contains("too long"));
}

#[test]
fn since_formats() {
    assert_eq!(parse_since("x", "2023-11-14T22:13:20.123Z"), Ok(1_700_000_000_123));
    assert_eq!(parse_since("x", "1970-01-02"), Ok(86_400_000));
    assert_eq!(parse_since("x", "1700000000123"), Ok(1_700_000_000_123));
    assert!(parse_since("--since", "yesterday").unwrap_err().contains("--since"));
}

#[test]
fn exit_codes_follow_who_must_act() {
    use ErrorKind::*;
    assert_eq!(exit_code([]), 0);
    assert_eq!(exit_code([Storage, Conflict]), 1);
    assert_eq!(exit_code([Storage, Forbidden]), 2);
    assert_eq!(scrub("token s3cret-value leaked", "s3cret-value"), "token <redacted> leaked");
    assert_eq!(scrub("abc", "ab"), "abc", "too short to scrub safely");
}

#[test]
fn the_secret_is_scrubbed_in_every_form_a_reply_may_echo() {
    let secret = "s3c&r+e/t=é \"q\"";
    let echoed = [
        secret.to_string(),
        form_encode(secret),
        form_encode(secret).replace('+', "%20"),
        form_encode(secret).to_ascii_lowercase(),
        serde_json::to_string(secret).unwrap().trim_matches('"').to_string(),
    ];
    for form in echoed {
        let text = format!("400 invalid_client: client_secret={form}&grant_type=client_credentials");
        let scrubbed = scrub(&text, secret);
        assert!(!scrubbed.contains(&form) && scrubbed.contains("<redacted>"), "{form}: {scrubbed}");
    }
}

#[test]
fn error_kinds_serialise_as_the_wit_names() {
    use ErrorKind::*;
    let wit = include_str!("../../wit/audit.wit");
    let block = &wit[wit.find("enum error-kind {").unwrap()..];
    let block = &block[..block.find('}').unwrap()];
    let wit_names: Vec<&str> = block
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(|l| l.trim_end_matches(','))
        .collect();
    let ours: Vec<String> =
        [Config, Unauthorized, Forbidden, Api, Unavailable, Denied, Storage, Conflict, Checkpoint, PageCap]
            .iter()
            .map(|k| serde_json::to_value(k).unwrap().as_str().unwrap().to_string())
            .collect();
    assert_eq!(ours, wit_names);
}

#[test]
fn shards_split_orgs_stably_and_evenly() {
    let ids: Vec<String> = (0..400).map(|i| format!("org-{i}")).collect();
    let mut per_shard = [0usize; 4];
    for id in &ids {
        let shard = shard_of(id, 4);
        assert_eq!(shard, shard_of(id, 4));
        per_shard[shard as usize] += 1;
    }
    assert!(per_shard.iter().all(|&n| n > 60), "{per_shard:?}");
    assert!(ids.iter().all(|id| shard_of(id, 1) == 0));
}

#[test]
fn accepts_a_good_config_and_hides_the_secret() {
    let s = Settings::from_raw(raw()).unwrap();
    assert_eq!(s.base.url("/x"), "http://127.0.0.1:8081/x");
    assert_eq!(s.requests_per_minute, 40);
    assert!(!format!("{s:?}").contains("s3cret"));
}

#[test]
fn each_organization_is_collected_once_in_the_order_given() {
    let mut r = raw();
    r.org_ids = vec!["a".into(), "b".into(), "a".into(), "b".into(), "c".into()];
    assert_eq!(Settings::from_raw(r).unwrap().org_ids, ["a", "b", "c"]);
}

#[test]
fn checkpoints_and_logs_lie_apart_wherever_they_are() {
    assert!(separate_locations("logs/", "state/").is_ok());
    assert!(separate_locations("gs://b/logs/", "gs://b/state/").is_ok());
    assert!(separate_locations("gs://b/logs/", "gs://b2/logs/state/").is_ok());
    assert!(separate_locations("/d/logs/", "/d/logs/state/").unwrap_err().contains("lie under the log objects"));
    assert!(separate_locations("gs://b/", "gs://b/state/").unwrap_err().contains("lie under the log objects"));
    assert!(separate_locations("/d/state/logs/", "/d/state/").unwrap_err().contains("lie under the checkpoints"));
    // A name that merely starts alike is another folder.
    assert!(separate_locations("/d/logs/", "/d/logs2/").is_ok());
}

#[test]
fn planes_by_name() {
    let mut r = raw();
    r.base_url = None;
    r.plane = Some(ControlPlane::Eu);
    let s = Settings::from_raw(r).unwrap();
    assert_eq!(s.base.url(""), "https://eu1.anypoint.mulesoft.com");
    assert_eq!(s.requests_per_minute, 40);
    let mut r = raw();
    r.base_url = None;
    assert_eq!(Settings::from_raw(r).unwrap().requests_per_minute, 700);
}

#[test]
fn rejects_bad_settings_with_a_reason() {
    type Mutation = fn(&mut RawConfig);
    let cases: Vec<(Mutation, &str)> = vec![
        (|r| r.org_ids.clear(), "MULE_ORG_ID is not set"),
        (|r| r.org_ids = vec!["a/b".into()], "malformed"),
        (|r| r.client_secret.clear(), "CLIENT_SECRET"),
        (|r| r.base_url = Some("ftp://x".into()), "https://"),
        (|r| r.base_url = Some("https://x/path".into()), "no path"),
        (|r| r.page_size = 201, "1..200"),
        (|r| r.state_prefix = "logs/state/".into(), "lie under the log objects"),
        (|r| r.key_prefix = "../x/".into(), "relative"),
        (|r| r.shard_index = 4, "shard index"),
    ];
    for (mutate, needle) in cases {
        let mut r = raw();
        mutate(&mut r);
        let err = Settings::from_raw(r).unwrap_err();
        assert!(err.contains(needle), "{err} should mention {needle}");
    }
}
