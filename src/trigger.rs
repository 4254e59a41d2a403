//! What a trigger request is and how it is answered: Pub/Sub push, a binary-mode CloudEvent or a
//! structured CloudEvent runs a pass; 204 acknowledges it, 500 makes Pub/Sub deliver it again.
//! `serve` (the host) and the edge component (`edge/trigger`) both answer by these rules.

use crate::variables::Values;
use base64::Engine as _;
use serde::Deserialize;

/// The largest trigger body taken: push bodies and CloudEvents are small JSON documents.
pub const MAX_BODY: usize = 1 << 20;

/// The first setting that is set and that a component run by an edge runtime cannot honour
/// (the table's [`Setting::edge_refusal`](crate::variables::Setting::edge_refusal)), as the line
/// that refuses it: refused before a pass, never silently ignored.
pub fn refuse_host_only(values: &Values) -> Result<(), String> {
    let refused = crate::variables::SETTINGS
        .iter()
        .find_map(|s| s.edge_refusal.filter(|_| values.get(s.name).is_some()).map(|instead| (s.name, instead)));
    match refused {
        Some((name, instead)) => Err(format!("{name} is not available at the edge: {instead}; unset it")),
        None => Ok(()),
    }
}

/// The kind of trigger a request carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    PubSub { message_id: String },
    CloudEventBinary { id: String },
    CloudEventStructured { id: String },
}

#[derive(Deserialize)]
struct PushBody {
    message: PushMessage,
}

#[derive(Deserialize)]
struct PushMessage {
    #[serde(default)]
    data: Option<String>,
    #[serde(default, alias = "message_id")]
    #[serde(rename = "messageId")]
    message_id: Option<String>,
}

#[derive(Deserialize)]
struct StructuredEvent {
    specversion: String,
    id: String,
    #[serde(rename = "type")]
    #[allow(dead_code)]
    event_type: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

fn push_message(body: &[u8]) -> Result<String, String> {
    let push: PushBody = serde_json::from_slice(body).map_err(|e| format!("not a Pub/Sub push body ({e})"))?;
    if let Some(data) = &push.message.data {
        base64::engine::general_purpose::STANDARD.decode(data).map_err(|_| "message.data is not base64".to_string())?;
    }
    Ok(push.message.message_id.unwrap_or_default())
}

/// Recognises the three trigger shapes from a request's headers (`header` looks one up by its
/// lowercase name) and body; anything else is a bad request, with the reason.
pub fn parse<'a>(header: impl Fn(&str) -> Option<&'a str>, body: &[u8]) -> Result<Trigger, String> {
    let content_type = header("content-type").unwrap_or("");
    if content_type.starts_with("application/cloudevents+json") {
        let event: StructuredEvent =
            serde_json::from_slice(body).map_err(|e| format!("not a structured CloudEvent ({e})"))?;
        if event.specversion != "1.0" {
            return Err(format!("CloudEvent specversion {} is not supported", event.specversion));
        }
        if let Some(data) = event.data {
            push_message(data.to_string().as_bytes())?;
        }
        return Ok(Trigger::CloudEventStructured { id: event.id });
    }
    if let Some(version) = header("ce-specversion") {
        if version != "1.0" {
            return Err(format!("CloudEvent specversion {version} is not supported"));
        }
        let id = header("ce-id").ok_or("binary CloudEvent without ce-id")?.to_string();
        header("ce-type").ok_or("binary CloudEvent without ce-type")?;
        header("ce-source").ok_or("binary CloudEvent without ce-source")?;
        push_message(body)?;
        return Ok(Trigger::CloudEventBinary { id });
    }
    Ok(Trigger::PubSub { message_id: push_message(body)? })
}

/// The answer to a trigger whose pass ended with `exit_code` ([`crate::report::Report`]'s):
/// 204 acknowledges; 500 asks Pub/Sub (or whatever pushed) to deliver the trigger again, and the
/// next pass continues from the checkpoints.
pub fn answer(exit_code: u8) -> (u16, String) {
    match exit_code {
        0 => (204, String::new()),
        code => (500, format!("pass failed (exit code {code}); see the logs")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    const PUSH: &str = r#"{"message":{"data":"e30=","attributes":{},"messageId":"42","publishTime":"2024-01-01T00:00:00Z"},"subscription":"projects/p/subscriptions/s"}"#;

    #[test]
    fn recognises_the_three_shapes() {
        assert_eq!(
            parse(headers(&[("content-type", "application/json")]), PUSH.as_bytes()),
            Ok(Trigger::PubSub { message_id: "42".into() })
        );
        let snake = r#"{"message":{"data":"e30=","message_id":"7"}}"#;
        assert_eq!(parse(headers(&[]), snake.as_bytes()), Ok(Trigger::PubSub { message_id: "7".into() }));
        let binary = [
            ("ce-specversion", "1.0"),
            ("ce-id", "e-1"),
            ("ce-type", "google.cloud.pubsub.topic.v1.messagePublished"),
            ("ce-source", "//pubsub.googleapis.com/projects/p/topics/t"),
        ];
        assert_eq!(parse(headers(&binary), PUSH.as_bytes()), Ok(Trigger::CloudEventBinary { id: "e-1".into() }));
        let structured = format!(
            r#"{{"specversion":"1.0","id":"s-1","type":"google.cloud.pubsub.topic.v1.messagePublished","source":"//pubsub.googleapis.com/projects/p/topics/t","data":{PUSH}}}"#
        );
        assert_eq!(
            parse(headers(&[("content-type", "application/cloudevents+json")]), structured.as_bytes()),
            Ok(Trigger::CloudEventStructured { id: "s-1".into() })
        );
    }

    #[test]
    fn refuses_bad_bodies() {
        assert!(parse(headers(&[]), b"hello").is_err());
        assert!(parse(headers(&[]), br#"{"message":{"data":"***"}}"#).is_err());
        assert!(parse(headers(&[("ce-specversion", "1.0")]), PUSH.as_bytes()).is_err());
        assert!(
            parse(
                headers(&[("content-type", "application/cloudevents+json")]),
                br#"{"specversion":"0.3","id":"x","type":"t"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn host_only_settings_are_refused_by_name() {
        assert_eq!(refuse_host_only(&Values::from_env([("MULE_ORG_ID".to_string(), "o".to_string())])), Ok(()));
        let refused = refuse_host_only(&Values::from_env([("MULESOFT_AUDIT_SCHEDULE".into(), "* * * * *".into())]));
        assert!(refused.is_err_and(|m| m.starts_with("MULESOFT_AUDIT_SCHEDULE is not available at the edge")));
        // Empty counts as unset, as everywhere.
        assert_eq!(refuse_host_only(&Values::from_env([("CLIENT_SECRET_FILE".to_string(), " ".to_string())])), Ok(()));
    }

    #[test]
    fn a_failed_pass_asks_for_the_trigger_again() {
        assert_eq!(answer(0), (204, String::new()));
        assert_eq!(answer(1).0, 500);
        assert!(answer(2).1.contains("exit code 2"));
    }
}
