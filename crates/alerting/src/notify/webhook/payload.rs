//! Alertmanager's webhook payload, version 4, made from a notification: the message (`version`, `groupKey`,
//! `truncatedAlerts`, `status`, `receiver`, `groupLabels`, `commonLabels`, `commonAnnotations`, `externalURL`,
//! `alerts`) and each alert (`status`, `labels`, `annotations`, `startsAt`, `endsAt`, `generatorURL`,
//! `fingerprint`), with the field names and formats Alertmanager's webhook notifier sends.
//!
//! A group's notifications go as one payload ([`group`]): `groupKey` is the group's, `groupLabels` the labels it is
//! made by. A notification that goes alone carries one alert: its group is the alert, `groupLabels` is empty and
//! `groupKey` names the receiver and the alert, so a receiver can tell notifications of one alert from another's.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::model::{Alert, Status};
use crate::notify::group::Batch;
use crate::silence::alert_labels;

/// What a Go zero `time.Time` reads as in JSON: Alertmanager's `endsAt` of an alert with no known end.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The message posted to a webhook.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookMessage {
    /// Always `"4"`.
    pub version: &'static str,
    /// Identifies the group of alerts (here: the receiver and the alert).
    pub group_key: String,
    /// Alerts left out because of `max_alerts`.
    pub truncated_alerts: u64,
    /// `firing` when any alert fires, else `resolved`.
    pub status: &'static str,
    /// The receiver's name.
    pub receiver: String,
    /// The labels the group is made by.
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert has, with the same value.
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert has, with the same value.
    pub common_annotations: BTreeMap<String, String>,
    /// Base URL of this GoMon (`external_url`), empty when not configured.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<WebhookAlert>,
}

/// One alert of a [`WebhookMessage`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    /// `firing` or `resolved`.
    pub status: &'static str,
    /// Its labels, with `alertname` (its title when it has none) and, when not labels already, `severity`,
    /// `source` and `namespace`.
    pub labels: BTreeMap<String, String>,
    /// Its annotations, with `summary` (the title) and `description` when not set, and what happened:
    /// `gomon_event`, `gomon_alert_id`, and `gomon_actor` and `gomon_note` when known.
    pub annotations: BTreeMap<String, String>,
    /// When it started (RFC 3339).
    pub starts_at: String,
    /// When it ended or will end; `0001-01-01T00:00:00Z` when unknown, as Alertmanager sends it.
    pub ends_at: String,
    /// Link to the alert in this GoMon's API, when `external_url` is configured; else empty.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// Its fingerprint.
    pub fingerprint: String,
}

/// What a notification says happened to the alert.
#[derive(Clone, Copy, Debug)]
pub struct Change<'a> {
    /// `created`, `acknowledged`, `assigned` or `resolved`.
    pub event: &'a str,
    /// Who made the change.
    pub actor: Option<&'a str>,
    /// The change's note.
    pub note: Option<&'a str>,
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The payload alert of `alert` after `change`; `external_url` is this GoMon's base URL (may be empty).
pub fn webhook_alert(alert: &Alert, change: Change<'_>, external_url: &str) -> WebhookAlert {
    let mut labels = alert_labels(alert);
    labels
        .entry("severity".into())
        .or_insert_with(|| alert.severity.as_str().into());
    labels
        .entry("source".into())
        .or_insert_with(|| alert.source.clone());
    if let Some(namespace) = &alert.namespace {
        labels
            .entry("namespace".into())
            .or_insert_with(|| namespace.clone());
    }
    let mut annotations = alert.annotations.clone();
    annotations
        .entry("summary".into())
        .or_insert_with(|| alert.title.clone());
    if let Some(description) = &alert.description {
        annotations
            .entry("description".into())
            .or_insert_with(|| description.clone());
    }
    annotations.insert("gomon_event".into(), change.event.into());
    annotations.insert("gomon_alert_id".into(), alert.id.to_string());
    if let Some(actor) = change.actor {
        annotations.insert("gomon_actor".into(), actor.into());
    }
    if let Some(note) = change.note {
        annotations.insert("gomon_note".into(), note.into());
    }
    let resolved = alert.status == Status::Resolved;
    let ends_at = if resolved {
        alert.resolved_at.or(Some(alert.updated_at))
    } else {
        alert.ends_at
    };
    let generator_url = if external_url.is_empty() {
        String::new()
    } else {
        format!(
            "{}/api/v1/alerts/{}",
            external_url.trim_end_matches('/'),
            alert.id
        )
    };
    WebhookAlert {
        status: if resolved { "resolved" } else { "firing" },
        labels,
        annotations,
        starts_at: rfc3339(alert.created_at),
        ends_at: ends_at.map_or_else(|| ZERO_TIME.to_owned(), rfc3339),
        generator_url,
        fingerprint: alert.fingerprint.clone(),
    }
}

/// The message of `alerts` to `receiver`, at most `max_alerts` of them (0: all), in group `group_key` made by
/// `group_labels`.
pub fn message(
    receiver: &str,
    group_key: String,
    group_labels: BTreeMap<String, String>,
    mut alerts: Vec<WebhookAlert>,
    max_alerts: u32,
    external_url: &str,
) -> WebhookMessage {
    let common = |field: fn(&WebhookAlert) -> &BTreeMap<String, String>| {
        let mut common = alerts.first().map(field).cloned().unwrap_or_default();
        for alert in alerts.iter().skip(1) {
            common.retain(|key, value| field(alert).get(key) == Some(value));
        }
        common
    };
    let common_labels = common(|alert| &alert.labels);
    let common_annotations = common(|alert| &alert.annotations);
    let status = if alerts.iter().any(|alert| alert.status == "firing") {
        "firing"
    } else {
        "resolved"
    };
    let limit = usize::try_from(max_alerts).unwrap_or(usize::MAX);
    let mut truncated_alerts = 0;
    if limit > 0 && alerts.len() > limit {
        truncated_alerts = u64::try_from(alerts.len() - limit).unwrap_or(u64::MAX);
        alerts.truncate(limit);
    }
    WebhookMessage {
        version: "4",
        group_key,
        truncated_alerts,
        status,
        receiver: receiver.to_owned(),
        group_labels,
        common_labels,
        common_annotations,
        external_url: external_url.to_owned(),
        alerts,
    }
}

/// The message of one notification: `alert` after `change`, to `receiver`.
pub fn notification(
    receiver: &str,
    alert: &Alert,
    change: Change<'_>,
    max_alerts: u32,
    external_url: &str,
) -> WebhookMessage {
    let group_key = format!(
        "{{}}/{{receiver=\"{receiver}\"}}:{{gomon_alert_id=\"{}\"}}",
        alert.id
    );
    message(
        receiver,
        group_key,
        BTreeMap::new(),
        vec![webhook_alert(alert, change, external_url)],
        max_alerts,
        external_url,
    )
}

/// The message of a group's notifications (`batch`) to `receiver`: each alert in its latest state.
pub fn group(receiver: &str, batch: &Batch, max_alerts: u32, external_url: &str) -> WebhookMessage {
    let alerts = batch
        .items
        .iter()
        .map(|item| {
            let change = Change {
                event: item.event.as_str(),
                actor: item.actor.as_deref(),
                note: item.note.as_deref(),
            };
            webhook_alert(&item.alert, change, external_url)
        })
        .collect();
    message(
        receiver,
        batch.key.clone(),
        batch.labels.clone(),
        alerts,
        max_alerts,
        external_url,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NewAlert, Severity};

    fn alert(title: &str, labels: &[(&str, &str)]) -> Alert {
        NewAlert {
            source: "prometheus".into(),
            severity: Severity::P2,
            title: title.into(),
            namespace: Some("prod".into()),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..NewAlert::default()
        }
        .into_alert(crate::model::now())
    }

    const CREATED: Change<'static> = Change {
        event: "created",
        actor: None,
        note: None,
    };

    #[test]
    fn one_notification_is_a_version_4_message() {
        let mut firing = alert("HighCPU", &[("severity", "critical"), ("team", "db")]);
        firing
            .annotations
            .insert("runbook".into(), "https://runbooks/cpu".into());
        let message = notification("hook", &firing, CREATED, 0, "https://gomon.example.com/");
        let json = serde_json::to_value(&message).expect("JSON");
        assert_eq!(json["version"], "4");
        assert_eq!(json["status"], "firing");
        assert_eq!(json["truncatedAlerts"], 0);
        assert_eq!(json["externalURL"], "https://gomon.example.com/");
        assert_eq!(json["groupLabels"], serde_json::json!({}));
        let one = &json["alerts"][0];
        assert_eq!(one["labels"]["alertname"], "HighCPU");
        assert_eq!(
            one["labels"]["severity"], "critical",
            "a label is kept as it is"
        );
        assert_eq!(one["labels"]["namespace"], "prod");
        assert_eq!(one["annotations"]["summary"], "HighCPU");
        assert_eq!(one["annotations"]["gomon_event"], "created");
        assert_eq!(one["endsAt"], ZERO_TIME);
        assert_eq!(
            one["generatorURL"],
            format!("https://gomon.example.com/api/v1/alerts/{}", firing.id)
        );
        assert_eq!(json["commonLabels"], one["labels"]);
        assert!(DateTime::parse_from_rfc3339(one["startsAt"].as_str().unwrap_or_default()).is_ok());
        let mut resolved = firing.clone();
        resolved.status = Status::Resolved;
        resolved.resolved_at = Some(crate::model::now());
        let message = notification("hook", &resolved, CREATED, 0, "");
        assert_eq!(message.status, "resolved");
        assert_ne!(message.alerts[0].ends_at, ZERO_TIME);
        assert_eq!(message.alerts[0].generator_url, "");
    }

    #[test]
    fn common_labels_and_truncation() {
        let alerts = vec![
            webhook_alert(&alert("A", &[("team", "db"), ("zone", "a")]), CREATED, ""),
            webhook_alert(&alert("B", &[("team", "db"), ("zone", "b")]), CREATED, ""),
            webhook_alert(&alert("C", &[("team", "db")]), CREATED, ""),
        ];
        let message = message("hook", "k".into(), BTreeMap::new(), alerts, 2, "");
        assert_eq!(message.truncated_alerts, 1);
        assert_eq!(message.alerts.len(), 2);
        assert_eq!(
            message.common_labels.get("team").map(String::as_str),
            Some("db")
        );
        assert!(!message.common_labels.contains_key("zone"));
        assert!(!message.common_labels.contains_key("alertname"));
    }

    #[test]
    fn a_group_is_one_version_4_message_with_its_labels() {
        let batch = crate::notify::group::sample_batch(3, 2, "PodCrashLooping");
        let message = group("team", &batch, 0, "https://gomon.example.com");
        let value = serde_json::to_value(&message).expect("JSON");
        assert_eq!(gomon_testkit::webhook::check(&value), Vec::<String>::new());
        assert_eq!(message.group_key, "0:{namespace=\"payments\"}");
        assert_eq!(message.group_labels["namespace"], "payments");
        assert_eq!(message.common_labels["namespace"], "payments");
        assert_eq!(message.status, "firing");
        assert_eq!(message.alerts.len(), 5);
        assert_eq!(message.alerts[4].status, "resolved");
        let truncated = group("team", &batch, 2, "");
        assert_eq!(truncated.alerts.len(), 2);
        assert_eq!(truncated.truncated_alerts, 3);
    }
}
