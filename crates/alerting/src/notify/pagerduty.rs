//! The PagerDuty receiver (`alerting.notify.receivers[]` with `type: pagerduty`): PagerDuty's Events API v2. An
//! alert is one PagerDuty alert whose `dedup_key` is the alert's group (its fingerprint's id), so the events of its
//! lifecycle land on the same incident: `created`, `repeated` and `escalated` trigger it (PagerDuty deduplicates a
//! trigger of an open alert), `acknowledged` acknowledges it, `resolved` resolves it. `assigned` has no PagerDuty
//! action: nothing is sent, and the row is recorded as sent.

use std::path::PathBuf;
use std::time::Duration;

use gomon_runtime::config::{KeyError, Secret};
use gomon_runtime::http_client::{HttpTlsConfig, is_http_url};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::breaker::BreakerConfig;
use super::outcome::{SendOutcome, post, redact};
use super::slack::Event;
use crate::model::{Alert, Severity, truncate};

/// PagerDuty's Events API v2.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Length of a routing (integration) key.
pub const ROUTING_KEY_LENGTH: usize = 32;

/// Longest `payload.summary` PagerDuty takes.
pub const MAX_SUMMARY: usize = 1024;

/// Most bytes of annotations sent in `custom_details` (PagerDuty refuses events over 512 KB); larger ones are left
/// out, with their size.
pub const MAX_DETAILS_BYTES: usize = 256 * 1024;

/// A PagerDuty receiver's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The Events API v2 integration key of the PagerDuty service (32 characters); or `routing_key_file`.
    pub routing_key: Option<Secret>,
    /// File holding the routing key.
    pub routing_key_file: Option<PathBuf>,
    /// Where events are posted.
    pub url: String,
    /// TLS to the API: a CA to trust, a client certificate, `insecure_skip_verify` (false by default).
    pub tls: HttpTlsConfig,
    /// Longest time one request may take, from connecting to reading the answer.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Base URL under which people reach this GoMon: the event's `client_url` and link to the alert. Unset: none.
    pub external_url: Option<String>,
    /// When to stop sending while PagerDuty is failing.
    pub circuit_breaker: BreakerConfig,
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        Self {
            routing_key: None,
            routing_key_file: None,
            url: DEFAULT_URL.to_owned(),
            tls: HttpTlsConfig::default(),
            timeout: Duration::from_secs(10),
            external_url: None,
            circuit_breaker: BreakerConfig::default(),
        }
    }
}

impl PagerDutyConfig {
    /// Checks what types cannot: a routing key of 32 printable ASCII characters (inline or from its file), `url`
    /// and `external_url` `http(s)` with a host, readable TLS files, a timeout of at least 1 ms. The error names
    /// the key within this receiver and never the routing key.
    pub fn check(&self) -> Result<(), KeyError> {
        self.routing_key()?;
        if !is_http_url(&self.url) {
            return Err(KeyError::new(
                "url",
                format!("{:?} is not an http(s) URL with a host", self.url),
            ));
        }
        self.tls.read("tls").map(|_| ())?;
        super::check_common(
            self.timeout,
            self.external_url.as_deref(),
            &self.circuit_breaker,
        )
    }

    /// The routing key from `routing_key` or `routing_key_file`, trimmed and checked.
    pub fn routing_key(&self) -> Result<String, KeyError> {
        let key = gomon_runtime::config::secret(
            "routing_key",
            self.routing_key.as_ref().map(Secret::expose),
            self.routing_key_file.as_deref(),
        )?
        .ok_or_else(|| {
            KeyError::new(
                "routing_key",
                "a pagerduty receiver needs routing_key or routing_key_file",
            )
        })?;
        let name = if self.routing_key.is_some() {
            "routing_key"
        } else {
            "routing_key_file"
        };
        if key.len() != ROUTING_KEY_LENGTH || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KeyError::new(
                name,
                format!(
                    "not a PagerDuty Events API v2 integration key ({ROUTING_KEY_LENGTH} printable characters)"
                ),
            ));
        }
        Ok(key)
    }
}

/// PagerDuty's severity for `severity`.
fn pagerduty_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::P1 => "critical",
        Severity::P2 => "error",
        Severity::P3 => "warning",
        Severity::P4 => "info",
    }
}

/// What happened to an alert, as an Events API v2 event; `None` for an event PagerDuty has no action for
/// (`assigned`). `actor` and `note` are the change's; `external_url` this GoMon's base URL (may be empty).
pub fn event(
    routing_key: &str,
    alert: &Alert,
    event: Event,
    actor: Option<&str>,
    note: Option<&str>,
    external_url: &str,
) -> Option<Value> {
    let action = match event {
        Event::Created | Event::Repeated | Event::Escalated => "trigger",
        Event::Acknowledged => "acknowledge",
        Event::Resolved => "resolve",
        Event::Assigned => return None,
    };
    let mut value = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": alert.alert_group_id.to_string(),
    });
    if action != "trigger" {
        return Some(value);
    }
    let source = ["instance", "host"]
        .iter()
        .find_map(|name| alert.labels.get(*name))
        .or(alert.namespace.as_ref())
        .unwrap_or(&alert.source);
    let annotations = serde_json::to_value(&alert.annotations).unwrap_or_default();
    let annotations = match serde_json::to_string(&annotations).map(|text| text.len()) {
        Ok(size) if size > MAX_DETAILS_BYTES => json!(format!("{size} bytes, left out")),
        _ => annotations,
    };
    let mut details = json!({
        "gomon_alert_id": alert.id,
        "gomon_event": event.as_str(),
        "status": alert.status.as_str(),
        "source": alert.source,
        "labels": alert.labels,
        "annotations": annotations,
    });
    for (name, value) in [
        ("namespace", alert.namespace.as_deref()),
        ("description", alert.description.as_deref()),
        ("actor", actor),
        ("note", note),
    ] {
        if let Some(value) = value {
            details[name] = json!(truncate(value, MAX_SUMMARY * 4));
        }
    }
    value["payload"] = json!({
        "summary": truncate(&format!("[{}] {}", alert.severity.as_str(), alert.title), MAX_SUMMARY),
        "source": truncate(source, 255),
        "severity": pagerduty_severity(alert.severity),
        "timestamp": alert.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "class": truncate(alert.labels.get("alertname").unwrap_or(&alert.title), 255),
        "custom_details": details,
    });
    if let Some(namespace) = &alert.namespace {
        value["payload"]["group"] = json!(truncate(namespace, 255));
    }
    value["client"] = json!("GoMon");
    if !external_url.is_empty() {
        let link = format!(
            "{}/api/v1/alerts/{}",
            external_url.trim_end_matches('/'),
            alert.id
        );
        value["client_url"] = json!(link);
        value["links"] = json!([{"href": link, "text": "The alert in GoMon"}]);
    }
    Some(value)
}

/// Posts Events API v2 events for one PagerDuty service.
pub struct PagerDutyClient {
    http: reqwest::Client,
    url: reqwest::Url,
    routing_key: String,
    timeout: Duration,
    external_url: String,
}

impl std::fmt::Debug for PagerDutyClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PagerDutyClient")
            .field("url", &self.url.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PagerDutyClient {
    /// The client `config` describes, its files (routing key, TLS) read; the error names the key within the
    /// receiver.
    pub fn new(config: &PagerDutyConfig) -> Result<PagerDutyClient, KeyError> {
        config.check()?;
        let url = reqwest::Url::parse(&config.url)
            .map_err(|_| KeyError::new("url", "not an http(s) URL with a host"))?;
        let http = super::http_client(&config.tls, config.timeout)?;
        Ok(PagerDutyClient {
            http,
            url,
            routing_key: config.routing_key()?,
            timeout: config.timeout,
            external_url: config.external_url.clone().unwrap_or_default(),
        })
    }

    /// The event for `change` on `alert` (see [`event`]); `None`: nothing to send.
    pub fn event(
        &self,
        alert: &Alert,
        change: Event,
        actor: Option<&str>,
        note: Option<&str>,
    ) -> Option<Value> {
        event(
            &self.routing_key,
            alert,
            change,
            actor,
            note,
            &self.external_url,
        )
    }

    /// Posts `event` and says what came of it: 2xx (PagerDuty answers 202) accepted; 429, 5xx and network errors
    /// transient; 400 (an event PagerDuty finds invalid) and other statuses permanent. No reason holds the
    /// routing key.
    pub async fn send(&self, event: &Value) -> SendOutcome {
        let request = self.http.post(self.url.clone()).json(event);
        let outcome = post(request, self.timeout).await;
        redact(outcome, std::slice::from_ref(&self.routing_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewAlert;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn alert() -> Alert {
        NewAlert {
            source: "prometheus".into(),
            severity: Severity::P2,
            title: "Disk full".into(),
            namespace: Some("prod".into()),
            labels: [("instance".to_owned(), "node-1:9100".to_owned())].into(),
            ..NewAlert::default()
        }
        .into_alert(crate::model::now())
    }

    #[test]
    fn every_event_is_valid_for_pagerduty_and_shares_the_dedup_key() {
        let alert = alert();
        let trigger = event(
            KEY,
            &alert,
            Event::Created,
            None,
            None,
            "https://gomon.example.com/",
        )
        .expect("a trigger");
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["dedup_key"], alert.alert_group_id.to_string());
        assert_eq!(trigger["payload"]["summary"], "[P2] Disk full");
        assert_eq!(trigger["payload"]["severity"], "error");
        assert_eq!(trigger["payload"]["source"], "node-1:9100");
        assert_eq!(trigger["payload"]["group"], "prod");
        assert_eq!(
            trigger["client_url"],
            format!("https://gomon.example.com/api/v1/alerts/{}", alert.id)
        );
        for change in [
            Event::Created,
            Event::Repeated,
            Event::Escalated,
            Event::Acknowledged,
            Event::Resolved,
        ] {
            let value =
                event(KEY, &alert, change, Some("alice"), Some("on it"), "").expect("an event");
            assert_eq!(value["dedup_key"], trigger["dedup_key"]);
            assert_eq!(
                gomon_testkit::pagerduty::check(&value),
                Vec::<String>::new(),
                "{value}"
            );
        }
        assert_eq!(
            event(KEY, &alert, Event::Acknowledged, None, None, "").expect("ack")["event_action"],
            "acknowledge"
        );
        assert_eq!(
            event(KEY, &alert, Event::Resolved, None, None, "").expect("resolve")["event_action"],
            "resolve"
        );
        assert!(event(KEY, &alert, Event::Assigned, None, None, "").is_none());
    }

    #[test]
    fn oversized_fields_are_cut_to_what_pagerduty_takes() {
        let mut alert = alert();
        alert.title = "x".repeat(5000);
        alert
            .annotations
            .insert("runbook".into(), "y".repeat(MAX_DETAILS_BYTES + 1));
        let value = event(KEY, &alert, Event::Created, None, None, "").expect("a trigger");
        assert_eq!(
            gomon_testkit::pagerduty::check(&value),
            Vec::<String>::new()
        );
        assert!(value.to_string().len() < gomon_testkit::pagerduty::MAX_EVENT_BYTES);
        assert!(value["payload"]["custom_details"]["annotations"].is_string());
    }

    #[test]
    fn check_names_the_key_and_never_the_routing_key() {
        let with_key = |key: &str| PagerDutyConfig {
            routing_key: Some(key.into()),
            ..PagerDutyConfig::default()
        };
        assert!(with_key(KEY).check().is_ok());
        for key in ["hunter2", "hunter2 hunter2 hunter2 hunter2 hu", ""] {
            let error = with_key(key).check().expect_err(key);
            assert_eq!(error.key, "routing_key");
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
        let error = PagerDutyConfig::default().check().expect_err("no key");
        assert_eq!(error.key, "routing_key");
        let error = PagerDutyConfig {
            url: "ftp://events.example.com/".into(),
            ..with_key(KEY)
        }
        .check()
        .expect_err("url");
        assert_eq!(error.key, "url");
        let error = PagerDutyConfig {
            timeout: Duration::ZERO,
            ..with_key(KEY)
        }
        .check()
        .expect_err("timeout");
        assert_eq!(error.key, "timeout");
        let debug = format!("{:?}", with_key(KEY));
        assert!(!debug.contains(KEY), "{debug}");
    }
}
