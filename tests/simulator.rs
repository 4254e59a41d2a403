//! The simulator itself, checked against what is known of the real API: if it drifted into
//! agreeing with the collector instead, every other test would prove nothing.

use crate::harness::*;
use anypoint_sim::{OrgSpec, SimConfig, Simulator};

fn token(sim: &Simulator) -> String {
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        anypoint_sim::DEMO_CLIENT_ID,
        anypoint_sim::DEMO_CLIENT_SECRET
    );
    let (status, _, reply) = http_request(
        "POST",
        &format!("{}/accounts/api/v2/oauth2/token", sim.url()),
        &[("content-type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

fn query(sim: &Simulator, token: &str, org: &str, params: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {token}");
    let (status, _, reply) = http_request(
        "POST",
        &format!("{}/audit/v2/organizations/{org}/query{params}", sim.url()),
        &[("authorization", &auth), ("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
    .unwrap();
    (status, serde_json::from_slice(&reply).unwrap_or(serde_json::Value::Null))
}

#[test]
fn token_endpoint_takes_form_and_json_and_audits_itself() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-s", 10)]);
    config.token_lifetime_secs = 1234;
    let sim = sim(config);
    let before = sim.all_entries("org-s").len();
    let json = serde_json::json!({"grant_type": "client_credentials", "client_id": anypoint_sim::DEMO_CLIENT_ID, "client_secret": anypoint_sim::DEMO_CLIENT_SECRET});
    let (status, _, reply) = http_request(
        "POST",
        &format!("{}/accounts/api/v2/oauth2/token", sim.url()),
        &[("content-type", "application/json")],
        json.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(v["expires_in"], 1234);
    assert_eq!(v["token_type"], "bearer");
    token(&sim);
    assert_eq!(sim.all_entries("org-s").len(), before + 2, "every token issued is an audit entry");
    let (status, _, _) = http_request(
        "POST",
        &format!("{}/accounts/api/v2/oauth2/token", sim.url()),
        &[("content-type", "application/x-www-form-urlencoded")],
        b"grant_type=client_credentials&client_id=demo-client&client_secret=nope",
    )
    .unwrap();
    assert_eq!(status, 401);
}

#[test]
fn query_validates_dates_limits_and_tokens() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-q", 300)]));
    let t = token(&sim);
    let now = anypoint_sim::now_ms();
    assert_eq!(query(&sim, &t, "org-q", "", serde_json::json!({"limit": 10})).0, 400, "startDate is required");
    assert_eq!(query(&sim, &t, "org-q", "", serde_json::json!({"startDate": "yesterday"})).0, 400);
    assert_eq!(query(&sim, &t, "org-q", "", serde_json::json!({"startDate": 0, "limit": 0})).0, 400);
    assert_eq!(query(&sim, &t, "org-q", "", serde_json::json!({"startDate": 0, "limit": 201})).0, 400);
    assert_eq!(query(&sim, "bogus", "org-q", "", serde_json::json!({"startDate": 0})).0, 401);
    let iso =
        chrono::DateTime::from_timestamp_millis(now - 86_400_000).unwrap().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let (s1, by_iso) =
        query(&sim, &t, "org-q", "", serde_json::json!({"startDate": iso, "endDate": now, "limit": 200}));
    let (s2, by_ms) =
        query(&sim, &t, "org-q", "", serde_json::json!({"startDate": now - 86_400_000, "endDate": now, "limit": 200}));
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(by_iso, by_ms, "ISO 8601 and epoch ms mean the same");
}

#[test]
fn bounds_are_inclusive_and_order_is_oldest_first_by_default() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-b", 200)]));
    let t = token(&sim);
    let entries = sim.all_entries("org-b");
    let pick = &entries[50];
    let (_, exact) =
        query(&sim, &t, "org-b", "", serde_json::json!({"startDate": pick.ts, "endDate": pick.ts, "limit": 200}));
    let data = exact["data"].as_array().unwrap();
    assert!(
        data.iter().any(|e| *e == serde_json::from_str::<serde_json::Value>(&pick.raw).unwrap()),
        "an entry at exactly both bounds is returned"
    );
    let (_, asc) = query(&sim, &t, "org-b", "", serde_json::json!({"startDate": 0, "limit": 200}));
    let (_, desc) = query(&sim, &t, "org-b", "", serde_json::json!({"startDate": 0, "limit": 200, "ascending": false}));
    let ts = |v: &serde_json::Value| {
        v["data"].as_array().unwrap().iter().filter_map(|e| e["timestamp"].as_i64()).collect::<Vec<_>>()
    };
    let (a, d) = (ts(&asc), ts(&desc));
    assert!(a.windows(2).all(|w| w[0] <= w[1]));
    assert!(d.windows(2).all(|w| w[0] >= w[1]));
    // 200 entries, plus the audit entry of the token this test fetched.
    assert_eq!(asc["total"], sim.all_entries("org-b").len());
    assert_eq!(asc["total"], 201);
}

#[test]
fn cursor_paging_ends_with_an_empty_page_and_no_cursor() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-c", 450)]));
    let t = token(&sim);
    let mut cursor: Option<String> = None;
    let mut seen = 0;
    for _ in 0..10 {
        let mut body = serde_json::json!({"startDate": 0, "limit": 200});
        if let Some(c) = &cursor {
            body["cursor"] = serde_json::Value::String(c.clone());
        }
        let (status, page) = query(&sim, &t, "org-c", "?cursorPagination=true", body);
        assert_eq!(status, 200);
        let n = page["data"].as_array().unwrap().len();
        seen += n;
        if n == 0 {
            assert!(page.get("cursor").is_none());
            break;
        }
        cursor = page["cursor"].as_str().map(str::to_string);
    }
    assert_eq!(seen, sim.all_entries("org-c").len(), "every entry, including the token's own audit entry");
}

#[test]
fn forbidden_orgs_retention_and_hierarchy() {
    let mut hidden = OrgSpec::new("org-hidden", 5);
    hidden.forbidden = true;
    hidden.parent = Some("org-top".into());
    let mut top = OrgSpec::new("org-top", 5);
    top.retention_days = 90;
    let sim = sim(SimConfig::new(vec![top, hidden]));
    let t = token(&sim);
    assert_eq!(query(&sim, &t, "org-hidden", "", serde_json::json!({"startDate": 0})).0, 403);
    let auth = format!("Bearer {t}");
    let (s, _, body) = http_request(
        "GET",
        &format!("{}/audit/v2/organizations/org-top/retentionSettings", sim.url()),
        &[("authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(s, 200);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["data"][0]["retentionPeriod"], 90);
    let (s, _, _) = http_request(
        "GET",
        &format!("{}/audit/v2/organizations/org-hidden/retentionSettings", sim.url()),
        &[("authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(s, 403);
    let (s, _, body) = http_request(
        "GET",
        &format!("{}/accounts/api/organizations/org-top/hierarchy", sim.url()),
        &[("authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(s, 200);
    let tree: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(tree["subOrganizationIds"], serde_json::json!(["org-hidden"]));
    assert_eq!(tree["subOrganizations"][0]["id"], "org-hidden");
}

#[test]
fn the_same_seed_gives_the_same_entries() {
    let a = sim(SimConfig::new(vec![OrgSpec::new("org-d", 100)]));
    let b = sim(SimConfig::new(vec![OrgSpec::new("org-d", 100)]));
    let ids = |s: &Simulator| {
        s.all_entries("org-d").into_iter().map(|e| e.sort_id).collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(ids(&a), ids(&b));
}

#[test]
fn the_rate_limit_answers_503_for_the_rest_of_the_minute() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-r", 10)]);
    config.rate_limit_per_minute = Some(3);
    let sim = sim(config);
    let t = token(&sim);
    let statuses: Vec<u16> =
        (0..7).map(|_| query(&sim, &t, "org-r", "", serde_json::json!({"startDate": 0})).0).collect();
    // Eight requests at a limit of three: even if the minute turns over once among them, one
    // of the minutes sees a fourth request.
    assert!(statuses.contains(&503), "{statuses:?}");
    assert_eq!(statuses[0], 200);
}
