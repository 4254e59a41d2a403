//! Hostile and broken replies from the Anypoint API, against the in-memory doubles: each fails
//! the part it touches with a line that says what happened, never the other organizations, and
//! never takes a bad answer for "nothing to read". The transport's own limits (a reply too large
//! or too slow) need the WASI platform, and are tested through the binary (`tests/hostile.rs`).

use crate::settings::ErrorKind;
use crate::testing::doubles::ApiEntry;
use crate::testing::scenarios::{MINUTE, ORG, T0, World};

const DAY: i64 = 86_400_000;

/// `n` entries of `org` spread over `[from, to)`.
fn add_spread_to(w: &mut World, org: &str, n: i64, from: i64, to: i64) {
    for k in 0..n {
        let api_ms = from + (to - from) * k / n;
        let json = format!(r#"{{"id":"{org}-{k}","timestamp":{api_ms}}}"#);
        w.api.add(org, ApiEntry { api_ms, json, visible_from_ms: i64::MIN });
    }
}

#[test]
fn a_retention_of_zero_or_none_is_not_taken_for_nothing_to_read() {
    for retention in [
        serde_json::json!({"data": [{"retentionPeriod": 0}]}),
        serde_json::json!({"data": []}),
        serde_json::json!({"data": [{}]}),
        serde_json::json!({"data": null}),
        serde_json::json!({"data": [{"retentionPeriod": null}]}),
        serde_json::json!({"data": [{"retentionPeriod": "zero"}]}),
    ] {
        let mut w = World::new();
        w.api.retention = Some(retention.clone());
        let since = T0 - 3 * DAY;
        w.add_spread(60, since, T0 - 2 * MINUTE);
        w.raw.since_ms = Some(since);
        let result = w.pass_ok();
        assert_eq!(result.completed[0].entries_written, 60, "{retention}: the backfill is read");
        w.assert_exactly_once(since, T0);
    }
}

#[test]
fn a_backfill_cut_by_retention_is_said_in_the_summary() {
    let mut w = World::new();
    // As text, as a lenient reader takes it.
    w.api.retention = Some(serde_json::json!({"data": [{"retentionPeriod": "1"}]}));
    w.add_spread(30, T0 - 20 * 3_600_000, T0 - 2 * MINUTE);
    w.raw.since_ms = Some(T0 - 3 * DAY);
    let result = w.pass_ok();
    let notes: Vec<&String> = result.completed[0].objects.iter().filter(|o| o.starts_with('(')).collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("before the organization's 1-day retention") && n.contains("2025-12-31T00:00:00")),
        "{notes:?}"
    );
    w.assert_exactly_once(T0 - DAY, T0);
    // Only the pass that fixes the start says it.
    w.api.now_ms += 10 * MINUTE;
    let again = w.pass_ok();
    assert!(!again.completed[0].objects.iter().any(|o| o.contains("retention")), "{:?}", again.completed[0].objects);
}

#[test]
fn entries_that_are_not_objects_are_set_aside_and_said_never_delivered() {
    let mut w = World::new();
    w.add_spread(20, T0 - 50 * MINUTE, T0 - 10 * MINUTE);
    for (k, odd) in ["1", "null", "true", "[1,2]", "\"text\""].into_iter().enumerate() {
        w.add_json(T0 - 30 * MINUTE + k as i64, odd.to_string());
    }
    let result = w.pass_ok();
    let summary = &result.completed[0];
    assert_eq!(summary.entries_written, 20);
    assert!(
        summary.objects.iter().any(|o| o.starts_with("(5 entries set aside") && o.contains("not JSON objects")),
        "{:?}",
        summary.objects
    );
    let delivered = w.delivered();
    assert!(delivered.keys().all(|line| line.starts_with('{')), "{:?}", delivered.keys().take(3).collect::<Vec<_>>());
    assert_eq!(delivered.len(), 20);
}

#[test]
fn a_reply_that_never_parses_fails_its_organization_as_api_and_the_next_is_collected() {
    let mut w = World::new();
    w.raw.org_ids = vec![ORG.into(), "org-2".into()];
    w.api.garbled = vec![ORG.into()];
    add_spread_to(&mut w, "org-2", 30, T0 - 40 * MINUTE, T0 - 2 * MINUTE);
    let result = w.pass();
    assert_eq!(result.failures.len(), 1, "{:?}", result.failures);
    let failure = &result.failures[0];
    assert_eq!((failure.kind, failure.org_id.as_deref()), (ErrorKind::Api, Some(ORG)), "{}", failure.message);
    assert!(failure.message.contains("cannot be read") && !failure.message.contains("next pass retries"));
    let other = result.completed.iter().find(|s| s.org_id == "org-2").map(|s| s.entries_written);
    assert_eq!(other, Some(30), "the next organization is collected");
}

#[test]
fn an_access_token_no_header_can_carry_fails_with_a_clear_line() {
    for token in ["x".repeat(200 << 10), "bad\ntoken".to_string(), String::new()] {
        let mut w = World::new();
        w.api.token = Some(token.clone());
        w.add_spread(5, T0 - 30 * MINUTE, T0 - 2 * MINUTE);
        let result = w.pass();
        let failure = &result.failures[0];
        assert_eq!(failure.kind, ErrorKind::Api, "{}", failure.message);
        assert!(failure.message.contains("access token"), "{}", failure.message);
        assert!(failure.message.len() < 400, "the token is not echoed: {} bytes", failure.message.len());
        assert_eq!(w.api.queries, 0, "no query is sent with it");
    }
}

#[test]
fn a_token_endpoint_that_echoes_the_request_shows_only_its_error_code() {
    // Every character class a secret may hold, and those form encoding changes.
    let secret = "Ab9 &+/=é%~_.-*!'()\"\\<>{}|^`#?:;@$,[]\u{1F510}";
    let mut w = World::new();
    w.raw.client_secret = secret.into();
    w.api.echoing_token_endpoint = true;
    let result = w.pass();
    let failure = &result.failures[0];
    assert_eq!(failure.kind, ErrorKind::Unauthorized, "{}", failure.message);
    assert!(failure.message.contains("invalid_client"), "{}", failure.message);
    assert!(
        !failure.message.contains("client_secret") && !failure.message.contains("grant_type"),
        "{}",
        failure.message
    );
    let status =
        w.store.objects.borrow().get(&format!("state/{ORG}/status.json")).map(|(b, _)| b.clone()).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&status).contains("client_secret"), "the status echoes nothing either");
}

#[test]
fn a_hierarchy_of_a_hundred_thousand_groups_is_read_once_each_in_order() {
    // Ids with a long shared prefix, and a repeat: each found once, in the order listed. (The
    // time it takes, quadratic before, is a benchmark's business, not a test's.)
    let prefix = "0".repeat(50);
    let children: Vec<String> = (0..100_000).map(|k| format!(r#"{{"id":"{prefix}{k:08}"}}"#)).collect();
    let body = format!(r#"{{"id":"root","subOrganizations":[{},{{"id":"{prefix}00000007"}}]}}"#, children.join(","));
    let mut w = World::new();
    w.api.hierarchy = Some(body);
    w.raw.org_ids = vec!["root".into()];
    w.raw.discover_children = true;
    let settings = w.settings();
    let mut client = crate::anypoint::Client::new(&mut w.api, &settings);
    let orgs = crate::anypoint::organizations(&mut client, &settings).unwrap_or_else(|f| panic!("{}", f.message));
    assert_eq!(orgs.len(), 100_001);
    assert_eq!(orgs[0], "root");
    assert_eq!(orgs[8], format!("{prefix}00000007"));
    assert_eq!(orgs[100_000], format!("{prefix}00099999"));
}

#[test]
fn an_id_in_upper_case_after_a_pass_in_lower_case_is_the_same_organization() {
    let org = "7f8e6c2a-0d1b-4c3e-9a5f-1b2c3d4e5f60";
    let upper = org.to_ascii_uppercase();
    let mut w = World::new();
    w.raw.org_ids = vec![org.into()];
    add_spread_to(&mut w, org, 40, T0 - 50 * MINUTE, T0 - 10 * MINUTE);
    w.pass_ok();
    // Configured again in upper case (and twice, in both spellings): the same checkpoint goes on.
    w.raw.org_ids = vec![upper.clone(), org.into()];
    add_spread_to(&mut w, org, 5, T0 + MINUTE, T0 + 4 * MINUTE);
    w.api.orgs.insert(upper.clone(), w.api.entries(org).to_vec());
    w.api.now_ms = T0 + 10 * MINUTE;
    let result = w.pass_ok();
    assert_eq!(result.completed.len(), 1, "one organization: {:?}", result.completed);
    assert_eq!(result.completed[0].org_id, org, "as the state spells it");
    let checkpoints: Vec<&String> =
        w.store.objects.get_mut().keys().filter(|k| k.ends_with("checkpoint.json")).collect();
    assert_eq!(checkpoints, [&format!("state/{org}/checkpoint.json")]);
    let delivered = w.delivered();
    assert_eq!(delivered.len(), 40 + 5);
    assert!(delivered.values().all(|copies| *copies == 1), "nothing twice");
    // The shard is the same in any case.
    assert_eq!(crate::settings::shard_of(org, 7), crate::settings::shard_of(&upper, 7));
}

#[test]
fn checkpoints_under_two_spellings_of_an_id_are_refused() {
    let org = "abcdef01-0000-4000-8000-000000000001";
    let upper = org.to_ascii_uppercase();
    let mut w = World::new();
    w.raw.org_ids = vec![org.into()];
    w.pass_ok();
    // A second checkpoint in upper case, as an earlier release made when it took the two for two
    // organizations; a third spelling meets both.
    let (bytes, generation) = w.store.objects.borrow()[&format!("state/{org}/checkpoint.json")].clone();
    let copy = String::from_utf8_lossy(&bytes).replace(org, &upper).into_bytes();
    w.store.objects.get_mut().insert(format!("state/{upper}/checkpoint.json"), (copy, generation + 1));
    w.raw.org_ids = vec![org.replacen('a', "A", 1)];
    let result = w.pass();
    assert_eq!(result.failures.len(), 1, "{:?}", result.completed);
    assert_eq!(result.failures[0].kind, ErrorKind::Checkpoint);
    assert!(result.failures[0].message.contains("under 2 spellings"), "{}", result.failures[0].message);
}

#[test]
fn a_page_of_tiny_entries_past_any_page_size_is_refused_before_it_is_indexed() {
    // 20,000 two-byte entries: a reply far under the byte limit whose index would not be.
    let flood = format!("{{\"data\":[{}]}}", vec!["0"; 20_000].join(","));
    let mut w = World::new();
    w.raw.org_ids = vec![ORG.into(), "org-2".into()];
    w.api.replies.insert(ORG.into(), flood);
    add_spread_to(&mut w, "org-2", 30, T0 - 40 * MINUTE, T0 - 2 * MINUTE);
    let result = w.pass();
    let failure = &result.failures[0];
    assert_eq!((failure.kind, failure.org_id.as_deref()), (ErrorKind::Api, Some(ORG)), "{}", failure.message);
    assert!(failure.message.contains("more than 10000 entries"), "{}", failure.message);
    let other = result.completed.iter().find(|s| s.org_id == "org-2").map(|s| s.entries_written);
    assert_eq!(other, Some(30));
}

#[test]
fn a_reply_cut_short_is_the_connections_fault_not_the_apis() {
    let mut w = World::new();
    w.api.replies.insert(ORG.into(), r#"{"data":[{"id":"a","timestamp":1},{"id":"#.into());
    let result = w.pass();
    let failure = &result.failures[0];
    assert_eq!(failure.kind, ErrorKind::Unavailable, "{}", failure.message);
    assert!(failure.message.contains("truncated"), "{}", failure.message);
}
