//! The endpoints, and the few lines of request parsing they need.

use crate::config::{HUNG_REPLY, OrgSpec};
use crate::data::{Entry, hex_id, now_ms};
use crate::faults::{cut_off, token_failure, too_many_requests};
use crate::paging::{Page, PageRequest, Paging, one_page, parse_cursor};
use crate::reply::{error, json_response};
use crate::state::{InFlight, Inner, Shared, count};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

pub(crate) async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let _guard = InFlight::enter(&shared);
    let latency = shared.inner.lock().map(|i| i.config.latency).unwrap_or_default();
    tokio::time::sleep(latency).await;
    let is_json =
        headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("application/json"));
    let request: Option<TokenRequest> =
        if is_json { serde_json::from_slice(&body).ok() } else { serde_urlencoded_lite(&body) };
    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    inner.stats.requests += 1;
    if inner.over_limit() {
        inner.stats.throttled_503 += 1;
        count(&mut inner, 503);
        return error(StatusCode::SERVICE_UNAVAILABLE, "rate limited");
    }
    if let Some(status) = inner.config.faults.token_fail_once
        && !inner.token_failed
    {
        inner.token_failed = true;
        inner.stats.injected_faults += 1;
        count(&mut inner, status);
        return token_failure(status);
    }
    if inner.config.faults.echo_token_request {
        inner.stats.injected_faults += 1;
        count(&mut inner, 400);
        let echoed = String::from_utf8_lossy(&body).into_owned();
        let reply = serde_json::json!({"error": "invalid_request", "error_description": echoed});
        return json_response(StatusCode::BAD_REQUEST, reply.to_string());
    }
    let Some(req) = request else {
        count(&mut inner, 400);
        return error(StatusCode::BAD_REQUEST, "malformed token request");
    };
    if req.grant_type.as_deref() != Some("client_credentials") {
        count(&mut inner, 400);
        return error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    if req.client_id.as_deref() != Some(inner.config.client_id.as_str())
        || req.client_secret.as_deref() != Some(inner.config.client_secret.as_str())
    {
        count(&mut inner, 401);
        return json_response(StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#.into());
    }
    let token = hex_id(&mut inner.rng);
    let lifetime = inner.config.token_lifetime_secs;
    inner.tokens.insert(token.clone(), now_ms() + lifetime as i64 * 1000);
    inner.stats.tokens_issued += 1;
    if inner.config.token_audit_entries
        && let Some(root) = inner.config.orgs.first().map(|o| o.id.clone())
    {
        // As the real platform does: every token retrieval is itself audited.
        let ts = now_ms();
        let id = hex_id(&mut inner.rng);
        let raw = format!(
            r#"{{"id":"{id}","timestamp":{ts},"action":"Login","objectType":"Token","objectName":"Token Retrieval Success","platform":"ACCESS_MANAGEMENT","organizationId":"{root}","userName":"{}"}}"#,
            inner.config.client_id
        );
        if let Some(o) = inner.orgs.get_mut(&root) {
            o.entries.push(Entry { ts, sort_id: id, has_id: true, raw, late: false });
            o.entries.sort_by(|a, b| (a.ts, &a.sort_id).cmp(&(b.ts, &b.sort_id)));
        }
    }
    count(&mut inner, 200);
    json_response(
        StatusCode::OK,
        format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":{lifetime}}}"#),
    )
}

/// `a=b&c=d` with `+` and `%XX`: the few lines a form body needs.
fn serde_urlencoded_lite(body: &[u8]) -> Option<TokenRequest> {
    let text = std::str::from_utf8(body).ok()?;
    let mut map = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=')?;
        map.insert(decode(k)?, decode(v)?);
    }
    Some(TokenRequest {
        grant_type: map.remove("grant_type"),
        client_id: map.remove("client_id"),
        client_secret: map.remove("client_secret"),
    })
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| inner.tokens.get(t))
        .is_some_and(|exp| *exp > now_ms())
}

/// Epoch ms (number or numeric string) or ISO 8601.
fn parse_date(v: &serde_json::Value) -> Result<i64, String> {
    match v {
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| "date is not an integer".to_string()),
        serde_json::Value::String(s) => s
            .parse::<i64>()
            .ok()
            .or_else(|| chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp_millis()))
            .ok_or_else(|| format!("malformed date `{s}`")),
        _ => Err("date must be epoch ms or ISO 8601".into()),
    }
}

#[derive(Deserialize)]
pub(crate) struct QueryParams {
    #[serde(rename = "cursorPagination", default)]
    cursor_pagination: Option<String>,
    #[serde(rename = "doIncludeTotal", default)]
    do_include_total: Option<String>,
}

pub(crate) async fn query(
    State(shared): State<Arc<Shared>>,
    Path(org): Path<String>,
    Query(params): Query<QueryParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _guard = InFlight::enter(&shared);
    let latency = shared.inner.lock().map(|i| i.config.latency).unwrap_or_default();
    tokio::time::sleep(latency).await;
    // Counted here, apart from the rest: a hung request must not hold the lock while it waits.
    let hang = {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.stats.requests += 1;
        inner.stats.query_requests += 1;
        let faults = &inner.config.faults;
        let hang = (inner.hung < faults.hang_first).then(|| faults.hang_for.unwrap_or(HUNG_REPLY));
        if hang.is_some() {
            inner.hung += 1;
            inner.stats.injected_faults += 1;
        }
        hang
    };
    if let Some(held) = hang {
        tokio::time::sleep(held).await;
    }
    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    if inner.over_limit() {
        inner.stats.throttled_503 += 1;
        count(&mut inner, 503);
        return error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    }
    if !authorized(&inner, &headers) {
        count(&mut inner, 401);
        return error(StatusCode::UNAUTHORIZED, "invalid or expired token");
    }
    // Faults, decided by the seeded generator.
    let faults = inner.config.faults.clone();
    if inner.throttled_429 < faults.throttle_429_first {
        inner.throttled_429 += 1;
        inner.stats.injected_faults += 1;
        count(&mut inner, 429);
        return too_many_requests(faults.retry_after_as_date);
    }
    let roll = inner.rng.u32(..1000);
    if roll < faults.server_error_permille {
        inner.stats.injected_faults += 1;
        let status = [500u16, 502, 503][inner.rng.usize(..3)];
        count(&mut inner, status);
        return error(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "injected fault");
    }
    let drop_it = roll >= faults.server_error_permille && roll < faults.server_error_permille + faults.drop_permille;
    let truncate = !drop_it
        && roll >= faults.server_error_permille + faults.drop_permille
        && roll < faults.server_error_permille + faults.drop_permille + faults.truncate_permille;
    if inner.garbage_sent < faults.garbage_first {
        inner.garbage_sent += 1;
        inner.stats.injected_faults += 1;
        count(&mut inner, 200);
        return (StatusCode::OK, "<html>Gateway says hello</html>").into_response();
    }
    if inner.oversized_sent < faults.oversized_first {
        inner.oversized_sent += 1;
        inner.stats.injected_faults += 1;
        count(&mut inner, 200);
        return crate::faults::oversized(faults.oversized_bytes);
    }
    if inner.slow_sent < faults.slow_body_first {
        inner.slow_sent += 1;
        inner.stats.injected_faults += 1;
        count(&mut inner, 200);
        return crate::faults::slow_body();
    }
    if inner.wrong_shape_sent < faults.wrong_shape_first {
        inner.wrong_shape_sent += 1;
        inner.stats.injected_faults += 1;
        count(&mut inner, 200);
        return json_response(StatusCode::OK, r#"{"data":{"id":"not-a-list"},"total":1}"#.into());
    }

    let Some(o) = inner.orgs.get(&org) else {
        count(&mut inner, 404);
        return error(StatusCode::NOT_FOUND, "organization not found");
    };
    if o.spec.forbidden {
        count(&mut inner, 403);
        return error(StatusCode::FORBIDDEN, "Forbidden");
    }
    let request: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            count(&mut inner, 400);
            return error(StatusCode::BAD_REQUEST, "body is not JSON");
        }
    };
    let Some(start) = request.get("startDate") else {
        count(&mut inner, 400);
        return error(StatusCode::BAD_REQUEST, "startDate is required");
    };
    let start = match parse_date(start) {
        Ok(v) => v,
        Err(m) => {
            count(&mut inner, 400);
            return error(StatusCode::BAD_REQUEST, &m);
        }
    };
    let end = match request.get("endDate").map(parse_date).transpose() {
        Ok(v) => v.unwrap_or(i64::MAX),
        Err(m) => {
            count(&mut inner, 400);
            return error(StatusCode::BAD_REQUEST, &m);
        }
    };
    let limit = request.get("limit").map_or(Some(20), serde_json::Value::as_u64).unwrap_or(0);
    if !(1..=200).contains(&limit) {
        count(&mut inner, 400);
        return error(StatusCode::BAD_REQUEST, "limit must be between 1 and 200");
    }
    let ascending = request.get("ascending").and_then(serde_json::Value::as_bool).unwrap_or(true);
    let use_cursor = params.cursor_pagination.as_deref() == Some("true");
    let paging = if use_cursor {
        Paging::Cursor(request.get("cursor").and_then(serde_json::Value::as_str).and_then(parse_cursor))
    } else {
        Paging::Offset(request.get("offset").and_then(serde_json::Value::as_u64).unwrap_or(0) as usize)
    };
    let o = inner.orgs.get(&org);
    let Page { entries: page, cursor: next_cursor, total } = one_page(
        o.map(|o| o.entries.as_slice()).unwrap_or_default(),
        &PageRequest { from: start, to: end, limit: limit as usize, ascending, paging },
        |e| inner.visible(e),
    );
    let mut body = String::with_capacity(page.iter().map(|e| e.raw.len() + 1).sum::<usize>() + 64);
    body.push_str(r#"{"data":["#);
    for (i, e) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&e.raw);
    }
    body.push(']');
    if use_cursor && params.do_include_total.as_deref() == Some("true") {
        body.push_str(&format!(r#","total":{total}"#));
    }
    match next_cursor {
        Some(c) => body.push_str(&format!(r#","cursor":"{c}"}}"#)),
        None if use_cursor => body.push('}'),
        None => body.push_str(&format!(r#","total":{total}}}"#)),
    }
    if drop_it || truncate {
        inner.stats.injected_faults += 1;
        count(&mut inner, 200);
        return cut_off(body, drop_it);
    }
    count(&mut inner, 200);
    json_response(StatusCode::OK, body)
}

/// The state, for a request that carries a token the simulator issued and names a known
/// organization; else the 401 or 404 to send.
fn admitted<'a>(
    shared: &'a Shared,
    headers: &HeaderMap,
    org: &str,
) -> Result<std::sync::MutexGuard<'a, Inner>, Box<Response>> {
    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    inner.stats.requests += 1;
    if !authorized(&inner, headers) {
        count(&mut inner, 401);
        return Err(Box::new(error(StatusCode::UNAUTHORIZED, "invalid or expired token")));
    }
    if !inner.orgs.contains_key(org) {
        count(&mut inner, 404);
        return Err(Box::new(error(StatusCode::NOT_FOUND, "organization not found")));
    }
    Ok(inner)
}

pub(crate) async fn retention(
    State(shared): State<Arc<Shared>>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut inner = match admitted(&shared, &headers, &org) {
        Ok(inner) => inner,
        Err(refused) => return *refused,
    };
    let (forbidden, days) = inner.orgs.get(&org).map(|o| (o.spec.forbidden, o.spec.retention_days)).unwrap_or_default();
    if forbidden {
        count(&mut inner, 403);
        return error(StatusCode::FORBIDDEN, "Forbidden");
    }
    count(&mut inner, 200);
    json_response(
        StatusCode::OK,
        format!(r#"{{"data":[{{"retentionPeriod":{days},"effectiveFrom":"2023-07-10T00:00:00.000Z"}}]}}"#),
    )
}

fn hierarchy_node(inner: &Inner, id: &str, seen: &mut HashSet<String>) -> serde_json::Value {
    seen.insert(id.to_string());
    let children: Vec<&OrgSpec> =
        inner.config.orgs.iter().filter(|o| o.parent.as_deref() == Some(id) && !seen.contains(&o.id)).collect();
    let subs: Vec<serde_json::Value> = children.iter().map(|c| hierarchy_node(inner, &c.id, seen)).collect();
    serde_json::json!({
        "id": id,
        "name": format!("Business group {id}"),
        "subOrganizationIds": children.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        "subOrganizations": subs,
    })
}

pub(crate) async fn hierarchy(
    State(shared): State<Arc<Shared>>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut inner = match admitted(&shared, &headers, &org) {
        Ok(inner) => inner,
        Err(refused) => return *refused,
    };
    let tree = hierarchy_node(&inner, &org, &mut HashSet::new());
    count(&mut inner, 200);
    json_response(StatusCode::OK, tree.to_string())
}

/// The counters as JSON, for a benchmark that runs the simulator as a separate process.
pub(crate) async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.inner.lock().unwrap_or_else(|p| p.into_inner()).stats.clone();
    json_response(StatusCode::OK, serde_json::to_string(&stats).unwrap_or_default())
}
