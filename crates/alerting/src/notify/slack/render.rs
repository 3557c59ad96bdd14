//! Rendering of alert events as Slack messages: the fallback text and the Block Kit blocks, escaped and cut to
//! Slack's limits.

use std::fmt;

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::SlackConfig;
use crate::model::{Alert, Severity, truncate};
use crate::notify::group::{Batch, MAX_LISTED};

/// Slack's limit on a header block's text, in characters.
pub const MAX_HEADER: usize = 150;
/// Slack's limit on a section's text, in characters.
pub const MAX_TEXT: usize = 3000;
/// Slack's limit on one section field's text, in characters.
pub const MAX_FIELD: usize = 2000;

/// What happened to an alert, as notified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// It fired.
    Created,
    /// Someone took it.
    Acknowledged,
    /// Someone was made its owner.
    Assigned,
    /// It is over.
    Resolved,
    /// Still firing and unacknowledged: a reminder (`repeat_interval`).
    Repeated,
    /// Still firing and unacknowledged: a step of its route's escalation.
    Escalated,
}

impl Event {
    /// The name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Created => "created",
            Event::Acknowledged => "acknowledged",
            Event::Assigned => "assigned",
            Event::Resolved => "resolved",
            Event::Repeated => "repeated",
            Event::Escalated => "escalated",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Slack message: the plain fallback `text` (notifications, clients without blocks) and the Block Kit `blocks`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Message {
    /// Fallback text, escaped for Slack.
    pub text: String,
    /// The Block Kit blocks (a JSON array).
    pub blocks: Value,
}

/// Escapes `&`, `<` and `>` as Slack requires in mrkdwn text.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        push_escaped(&mut escaped, c);
    }
    escaped
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    }
}

/// Escapes `text` and cuts it to at most `max` characters, ending in `…` when cut, never inside an escape.
fn escape_truncated(text: &str, max: usize) -> String {
    let escaped = escape(text);
    if escaped.chars().count() <= max {
        return escaped;
    }
    let budget = max.saturating_sub(1);
    let mut out = String::new();
    let mut length = 0;
    for c in text.chars() {
        let mut piece = String::new();
        push_escaped(&mut piece, c);
        let piece_length = piece.chars().count();
        if length + piece_length > budget {
            break;
        }
        out.push_str(&piece);
        length += piece_length;
    }
    out.push('…');
    out
}

/// Percent-encodes `text` for use as one URL path segment.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

fn emoji(event: Event, severity: Severity) -> &'static str {
    match (event, severity) {
        (Event::Created, Severity::P1) => ":rotating_light:",
        (Event::Created, Severity::P2) => ":red_circle:",
        (Event::Created, Severity::P3) => ":warning:",
        (Event::Created, Severity::P4) => ":information_source:",
        (Event::Acknowledged, _) => ":eyes:",
        (Event::Assigned, _) => ":bust_in_silhouette:",
        (Event::Resolved, _) => ":white_check_mark:",
        (Event::Repeated, _) => ":repeat:",
        (Event::Escalated, _) => ":arrow_double_up:",
    }
}

fn field(name: &str, value: &str) -> Value {
    let label = format!("*{name}*\n");
    let budget = MAX_FIELD.saturating_sub(label.chars().count());
    json!({"type": "mrkdwn", "text": label + &escape_truncated(value, budget)})
}

fn button(text: &str, action_id: &str, url: String) -> Value {
    json!({
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "url": url,
    })
}

/// Who caused `event` on `alert`: `actor`, or for an acknowledgement without one, who acknowledged it.
pub fn event_actor<'a>(alert: &'a Alert, event: Event, actor: Option<&'a str>) -> Option<&'a str> {
    let actor = non_empty(actor);
    match event {
        Event::Acknowledged => actor.or(non_empty(alert.acknowledged_by.as_deref())),
        _ => actor,
    }
}

/// What `event` says of `alert`, for a message's first line: `FIRING`, `ACKNOWLEDGED by alice`, `ASSIGNED to bob`,
/// `RESOLVED`, `STILL FIRING` or `ESCALATED`; `actor` as [`event_actor`] gives it.
pub fn headline(alert: &Alert, event: Event, actor: Option<&str>) -> String {
    let assigned_to = non_empty(alert.assigned_to.as_deref());
    match (event, actor, assigned_to) {
        (Event::Created, ..) => "FIRING".to_owned(),
        (Event::Acknowledged, Some(actor), _) => format!("ACKNOWLEDGED by {actor}"),
        (Event::Acknowledged, None, _) => "ACKNOWLEDGED".to_owned(),
        (Event::Assigned, _, Some(owner)) => format!("ASSIGNED to {owner}"),
        (Event::Assigned, ..) => "ASSIGNED".to_owned(),
        (Event::Resolved, Some(actor), _) => format!("RESOLVED by {actor}"),
        (Event::Resolved, None, _) => "RESOLVED".to_owned(),
        (Event::Repeated, ..) => "STILL FIRING".to_owned(),
        (Event::Escalated, ..) => "ESCALATED".to_owned(),
    }
}

/// Renders `event` on `alert` as a Slack message. `actor` is who caused the event, `note` an optional comment.
pub fn render(
    alert: &Alert,
    event: Event,
    actor: Option<&str>,
    note: Option<&str>,
    config: &SlackConfig,
) -> Message {
    let severity = alert.severity.as_str();
    let actor = event_actor(alert, event, actor);
    let assigned_to = non_empty(alert.assigned_to.as_deref());
    let what = headline(alert, event, actor);
    let line = format!(
        "{} [{severity}] {what}: {}",
        emoji(event, alert.severity),
        alert.title
    );

    let time = match event {
        Event::Created => alert.created_at,
        _ => alert.updated_at,
    };
    let mut fields = vec![
        field("Severity", severity),
        field("Status", alert.status.as_str()),
    ];
    if let Some(namespace) = non_empty(alert.namespace.as_deref()) {
        fields.push(field("Namespace", namespace));
    }
    fields.push(field("Source", &alert.source));
    fields.push(field(
        "Time",
        &time.to_rfc3339_opts(SecondsFormat::Secs, true),
    ));
    if let Some(actor) = actor {
        fields.push(field("Actor", actor));
    }
    if let Some(owner) = assigned_to {
        fields.push(field("Assigned to", owner));
    }
    if let Some(note) = non_empty(note) {
        fields.push(field("Note", note));
    }

    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(&line, MAX_HEADER), "emoji": true},
        }),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(description) = non_empty(alert.description.as_deref()) {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": escape_truncated(description, MAX_TEXT)},
        }));
    }
    if !alert.labels.is_empty() {
        let labels: Vec<String> = alert
            .labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": escape_truncated(&labels.join(", "), MAX_TEXT)}],
        }));
    }
    let mut buttons = Vec::new();
    if let Some(base) = non_empty(config.public_url.as_deref()) {
        let url = format!("{}/api/v1/alerts/{}", base.trim_end_matches('/'), alert.id);
        buttons.push(button("View alert", "view_alert", url));
    }
    if let (Some(base), Some(trace)) = (
        non_empty(config.jaeger_url.as_deref()),
        non_empty(alert.jaeger_trace_id.as_deref()),
    ) {
        let url = format!(
            "{}/trace/{}",
            base.trim_end_matches('/'),
            path_segment(trace)
        );
        buttons.push(button("Trace in Jaeger", "jaeger_trace", url));
    }
    if let Some(url) = non_empty(config.grafana_url.as_deref()) {
        buttons.push(button("Grafana", "grafana", url.to_owned()));
    }
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }

    Message {
        text: escape(&line),
        blocks: Value::Array(blocks),
    }
}

/// Renders the notifications of a group (`batch`) as one Slack message: its title with the counts of firing and
/// resolved alerts, a line per alert for the first [`MAX_LISTED`] (within Slack's limit on a section), and how
/// many more there are.
pub fn render_group(batch: &Batch, config: &SlackConfig) -> Message {
    let severity = batch.severity();
    let (firing, _) = batch.counts();
    let event = if firing == 0 {
        Event::Resolved
    } else {
        Event::Created
    };
    let line = format!("{} {}", emoji(event, severity), batch.title());
    let base = non_empty(config.public_url.as_deref()).map(|base| base.trim_end_matches('/'));
    let mut list = String::new();
    let mut listed = 0;
    // Room for the count of the alerts not listed.
    let budget = MAX_TEXT - 100;
    for item in batch.items.iter().take(MAX_LISTED) {
        let alert = &item.alert;
        let title = escape_truncated(&alert.title, 200);
        let title = match base {
            Some(base) => format!("<{base}/api/v1/alerts/{}|{title}>", alert.id),
            None => format!("*{title}*"),
        };
        let mut entry = format!(
            "• [{}] {title}: {}",
            alert.severity.as_str(),
            escape_truncated(&item.headline(), 100)
        );
        if let Some(owner) = non_empty(alert.assigned_to.as_deref()) {
            entry.push_str(&format!(" (assigned to {})", escape_truncated(owner, 100)));
        }
        entry.push('\n');
        if list.chars().count() + entry.chars().count() > budget {
            break;
        }
        list.push_str(&entry);
        listed += 1;
    }
    if let Some(more) = batch.more(listed) {
        list.push_str(&format!("_{}_", escape(&more)));
    }
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(&line, MAX_HEADER), "emoji": true},
        }),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": list}}),
    ];
    if let Some(url) = non_empty(config.grafana_url.as_deref()) {
        blocks.push(
            json!({"type": "actions", "elements": [button("Grafana", "grafana", url.to_owned())]}),
        );
    }
    Message {
        text: escape(&line),
        blocks: Value::Array(blocks),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::model::Status;

    fn alert() -> Alert {
        let created = Utc
            .with_ymd_and_hms(2024, 11, 25, 10, 0, 0)
            .single()
            .expect("valid time");
        Alert {
            id: Uuid::from_u128(0x1234),
            alert_group_id: Uuid::from_u128(0x5678),
            fingerprint: "f".repeat(64),
            source: "vmalert".into(),
            severity: Severity::P1,
            status: Status::Firing,
            title: "Database <primary> down & out".into(),
            description: Some("Connections refused > 5m".into()),
            namespace: Some("payments".into()),
            labels: BTreeMap::from([("app".into(), "db".into()), ("pod".into(), "db-0".into())]),
            annotations: BTreeMap::new(),
            incident_id: None,
            jaeger_trace_id: Some("abc123".into()),
            created_at: created,
            acknowledged_at: None,
            acknowledged_by: None,
            updated_at: created + chrono::Duration::minutes(5),
            resolved_at: None,
            assigned_to: None,
            ends_at: None,
        }
    }

    fn linked_config() -> SlackConfig {
        SlackConfig {
            public_url: Some("https://gomon.example.com/".into()),
            jaeger_url: Some("https://jaeger.example.com".into()),
            grafana_url: Some("https://grafana.example.com/d/alerts".into()),
            ..SlackConfig::default()
        }
    }

    fn blocks_of_type<'a>(message: &'a Message, kind: &str) -> Vec<&'a Value> {
        message
            .blocks
            .as_array()
            .expect("blocks array")
            .iter()
            .filter(|block| block["type"] == kind)
            .collect()
    }

    fn fields(message: &Message) -> Vec<String> {
        blocks_of_type(message, "section")[0]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|field| field["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn button_urls(message: &Message) -> Vec<(String, String)> {
        blocks_of_type(message, "actions")
            .first()
            .map(|block| {
                block["elements"]
                    .as_array()
                    .expect("elements")
                    .iter()
                    .map(|button| {
                        (
                            button["text"]["text"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                            button["url"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn created_renders_header_fields_description_labels_and_links() {
        let message = render(&alert(), Event::Created, None, None, &linked_config());
        assert_eq!(
            message.text,
            ":rotating_light: [P1] FIRING: Database &lt;primary&gt; down &amp; out"
        );
        let header = blocks_of_type(&message, "header");
        assert_eq!(header.len(), 1);
        assert_eq!(header[0]["text"]["type"], "plain_text");
        assert_eq!(
            header[0]["text"]["text"],
            ":rotating_light: [P1] FIRING: Database <primary> down & out"
        );
        assert_eq!(
            fields(&message),
            [
                "*Severity*\nP1",
                "*Status*\nfiring",
                "*Namespace*\npayments",
                "*Source*\nvmalert",
                "*Time*\n2024-11-25T10:00:00Z",
            ]
        );
        let sections = blocks_of_type(&message, "section");
        assert_eq!(sections[1]["text"]["type"], "mrkdwn");
        assert_eq!(sections[1]["text"]["text"], "Connections refused &gt; 5m");
        let context = blocks_of_type(&message, "context");
        assert_eq!(context[0]["elements"][0]["text"], "app=db, pod=db-0");
        assert_eq!(
            button_urls(&message),
            [
                (
                    "View alert".to_owned(),
                    format!(
                        "https://gomon.example.com/api/v1/alerts/{}",
                        Uuid::from_u128(0x1234)
                    )
                ),
                (
                    "Trace in Jaeger".to_owned(),
                    "https://jaeger.example.com/trace/abc123".to_owned()
                ),
                (
                    "Grafana".to_owned(),
                    "https://grafana.example.com/d/alerts".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn acknowledged_assigned_and_resolved_name_who_and_when() {
        let mut alert = alert();
        alert.status = Status::Acknowledged;
        alert.acknowledged_by = Some("alice".into());
        let config = SlackConfig::default();
        let message = render(&alert, Event::Acknowledged, None, None, &config);
        assert_eq!(
            message.text,
            ":eyes: [P1] ACKNOWLEDGED by alice: Database &lt;primary&gt; down &amp; out"
        );
        let texts = fields(&message);
        assert!(texts.contains(&"*Actor*\nalice".to_owned()), "{texts:?}");
        assert!(
            texts.contains(&"*Time*\n2024-11-25T10:05:00Z".to_owned()),
            "{texts:?}"
        );

        alert.assigned_to = Some("bob".into());
        let message = render(
            &alert,
            Event::Assigned,
            Some("alice"),
            Some("you know <this> one"),
            &config,
        );
        assert!(
            message.text.contains("[P1] ASSIGNED to bob:"),
            "{}",
            message.text
        );
        let texts = fields(&message);
        assert!(
            texts.contains(&"*Assigned to*\nbob".to_owned()),
            "{texts:?}"
        );
        assert!(texts.contains(&"*Actor*\nalice".to_owned()), "{texts:?}");
        assert!(
            texts.contains(&"*Note*\nyou know &lt;this&gt; one".to_owned()),
            "{texts:?}"
        );

        alert.status = Status::Resolved;
        let message = render(&alert, Event::Resolved, None, None, &config);
        assert!(
            message
                .text
                .starts_with(":white_check_mark: [P1] RESOLVED: "),
            "{}",
            message.text
        );
        assert!(fields(&message).contains(&"*Status*\nresolved".to_owned()));
        let message = render(&alert, Event::Resolved, Some("carol"), None, &config);
        assert!(
            message.text.contains("RESOLVED by carol"),
            "{}",
            message.text
        );
    }

    #[test]
    fn optional_parts_are_omitted() {
        let mut alert = alert();
        alert.namespace = None;
        alert.description = Some("   ".into());
        alert.labels.clear();
        let message = render(&alert, Event::Created, None, None, &SlackConfig::default());
        assert!(blocks_of_type(&message, "actions").is_empty());
        assert!(blocks_of_type(&message, "context").is_empty());
        assert_eq!(blocks_of_type(&message, "section").len(), 1);
        assert!(
            !fields(&message)
                .iter()
                .any(|field| field.contains("Namespace"))
        );

        // Jaeger needs both the base URL and a trace id.
        alert.jaeger_trace_id = None;
        let config = linked_config();
        let names: Vec<String> = button_urls(&render(&alert, Event::Created, None, None, &config))
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["View alert", "Grafana"]);
        let config = SlackConfig {
            jaeger_url: Some("https://jaeger.example.com".into()),
            ..SlackConfig::default()
        };
        assert!(button_urls(&render(&alert, Event::Created, None, None, &config)).is_empty());
    }

    #[test]
    fn trace_ids_are_encoded_in_the_link() {
        let mut alert = alert();
        alert.jaeger_trace_id = Some("a b/c?d".into());
        let config = SlackConfig {
            jaeger_url: Some("https://jaeger.example.com/".into()),
            ..SlackConfig::default()
        };
        let urls = button_urls(&render(&alert, Event::Created, None, None, &config));
        assert_eq!(urls[0].1, "https://jaeger.example.com/trace/a%20b%2Fc%3Fd");
    }

    #[test]
    fn long_texts_are_cut_to_slack_limits() {
        let mut alert = alert();
        alert.title = "t".repeat(255);
        alert.description = Some("&".repeat(MAX_TEXT));
        let message = render(
            &alert,
            Event::Created,
            None,
            Some(&"n".repeat(5000)),
            &SlackConfig::default(),
        );
        let header = blocks_of_type(&message, "header")[0]["text"]["text"]
            .as_str()
            .expect("header text")
            .to_owned();
        assert_eq!(header.chars().count(), MAX_HEADER);
        assert!(header.ends_with('…'));
        let description = blocks_of_type(&message, "section")[1]["text"]["text"]
            .as_str()
            .expect("description")
            .to_owned();
        assert!(description.chars().count() <= MAX_TEXT);
        assert!(
            description.ends_with("&amp;…"),
            "never cut inside an escape"
        );
        let note = fields(&message)
            .into_iter()
            .find(|field| field.starts_with("*Note*"))
            .expect("note field");
        assert_eq!(note.chars().count(), MAX_FIELD);
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a & b < c > d"), "a &amp; b &lt; c &gt; d");
        assert_eq!(escape("<!channel>"), "&lt;!channel&gt;");
        assert_eq!(escape_truncated("<<<", 9), "&lt;&lt;…");
        assert_eq!(escape_truncated("<<<", 8), "&lt;…");
        assert_eq!(escape_truncated("ok", 2), "ok");
    }

    #[test]
    fn events_are_named_in_lowercase() {
        assert_eq!(Event::Acknowledged.as_str(), "acknowledged");
        assert_eq!(
            serde_json::to_string(&Event::Created).expect("serialise"),
            "\"created\""
        );
    }

    #[test]
    fn a_group_lists_twenty_alerts_and_counts_the_rest_within_slacks_limits() {
        let batch = crate::notify::group::sample_batch(990, 10, "Disk <full> & more");
        let message = render_group(&batch, &linked_config());
        assert!(
            message
                .text
                .contains("[FIRING:990, RESOLVED:10] namespace=\"payments\"")
        );
        let list = message.blocks[1]["text"]["text"].as_str().expect("list");
        assert_eq!(list.matches("\u{2022} [").count(), 20, "{list}");
        assert!(list.contains("Disk &lt;full&gt; &amp; more"), "{list}");
        assert!(
            list.contains("<https://gomon.example.com/api/v1/alerts/"),
            "{list}"
        );
        assert!(
            list.ends_with("_\u{2026}and 980 more (970 firing, 10 resolved)_"),
            "{list}"
        );
        // Titles of any length: the list stays within a section's limit, the count says what is left out.
        let long = crate::notify::group::sample_batch(30, 0, &"x".repeat(10_000));
        let message = render_group(&long, &SlackConfig::default());
        let list = message.blocks[1]["text"]["text"].as_str().expect("list");
        assert!(list.chars().count() <= MAX_TEXT, "{}", list.chars().count());
        assert!(list.contains("more ("));
        let header = message.blocks[0]["text"]["text"].as_str().expect("header");
        assert!(header.chars().count() <= MAX_HEADER);
    }
}
