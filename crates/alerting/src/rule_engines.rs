//! Alerts from rule engines (Prometheus, vmalert through the Alertmanager API v2): their payload, and how it maps
//! onto GoMon's alerts. Pure data and pure functions, no I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gomon_runtime::config::KeyError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{Identity, MAX_NAMESPACE, MAX_SOURCE, MAX_TITLE, NewAlert, Severity, truncate};

/// How alerts of the Alertmanager API are mapped (the `alerting.alertmanager` section).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// `severity` label value (compared in lower case) -> severity. Replaces the default table when set.
    pub severities: BTreeMap<String, Severity>,
    /// Severity of an alert without a `severity` label, or with a value not in `severities`.
    pub default_severity: Severity,
    /// Source recorded for every alert; unset: `vmalert` or `prometheus` from the generator URL, else
    /// `alertmanager`.
    pub source: Option<String>,
    /// End time given to an alert sent without `endsAt` (Alertmanager's `resolve_timeout`).
    #[serde(with = "humantime_serde")]
    pub resolve_timeout: Duration,
    /// How often open alerts whose end time has passed without a re-send are resolved (and silences past their
    /// retention deleted). The open alerts are read then only when an end time this replica stored or last read
    /// has passed, or `full_sweep_interval` has.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// How often the sweep reads the open alerts whatever end times this replica knows of: for the alerts last
    /// stored by a replica that stopped before their end time.
    #[serde(with = "humantime_serde")]
    pub full_sweep_interval: Duration,
    /// How long an expired silence is kept (listed by `GET /api/v2/silences`) before it is deleted.
    #[serde(with = "humantime_serde")]
    pub silence_retention: Duration,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        Self {
            severities: BTreeMap::from([
                ("critical".into(), Severity::P1),
                ("error".into(), Severity::P2),
                ("high".into(), Severity::P2),
                ("warning".into(), Severity::P3),
                ("info".into(), Severity::P4),
            ]),
            default_severity: Severity::P3,
            source: None,
            resolve_timeout: Duration::from_secs(300),
            sweep_interval: Duration::from_secs(10),
            full_sweep_interval: Duration::from_secs(60),
            silence_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl AlertmanagerConfig {
    /// Checks what types alone cannot; the message names the key.
    pub fn check(&self) -> Result<(), KeyError> {
        if let Some(source) = &self.source
            && (source.trim().is_empty() || source.chars().count() > MAX_SOURCE)
        {
            return Err(KeyError::new(
                "source",
                format!("must be 1 to {MAX_SOURCE} characters, not {source:?}"),
            ));
        }
        for (key, value) in [
            ("resolve_timeout", self.resolve_timeout),
            ("sweep_interval", self.sweep_interval),
            ("full_sweep_interval", self.full_sweep_interval),
            ("silence_retention", self.silence_retention),
        ] {
            if value < Duration::from_millis(1) {
                return Err(KeyError::new(
                    key,
                    format!("must be at least 1ms, not {value:?}"),
                ));
            }
        }
        Ok(())
    }
}

/// One alert as Prometheus, vmalert and amtool post it to `/api/v2/alerts`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    /// The label set: the alert's identity. `alertname` is required.
    pub labels: BTreeMap<String, String>,
    /// Non-identifying annotations; `summary` goes into the title, `description` into the description.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When it started firing.
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    /// When it ends: in the past resolves the alert; in the future, the alert is resolved then unless re-sent.
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    /// Link back to the rule that raised it.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: Option<String>,
}

/// An alert from a rule engine, mapped: the alert to open or update, and when it ends.
#[derive(Clone, Debug)]
pub struct RuleAlert {
    /// What is created, or updates the open alert with the same label set.
    pub alert: NewAlert,
    /// When it ends: resolved then unless sent again; in the past, resolved now. `None`: it stays open until it is
    /// sent as resolved.
    pub ends_at: Option<DateTime<Utc>>,
    /// Sent as resolved: the open alert with the same label set is resolved.
    pub resolved: bool,
}

/// Annotation that keeps the generator URL of an alert.
pub const GENERATOR_URL: &str = "generatorURL";

/// A time Go's zero time (`0001-01-01T00:00:00Z`) or anything before 1970 stands for "not set".
fn set(time: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    time.filter(|time| time.timestamp() > 0)
}

/// Why one alert of a rule engine's request is not stored: a reason from a short fixed list (the label of
/// `alerting_alerts_invalid_total`), and a message for the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// `malformed`, `no_labels`, `no_alertname`, `empty_label_name`, `nul_byte`, `ends_before_starts`,
    /// `unknown_status` or `invalid`.
    pub reason: &'static str,
    /// What is wrong, naming the field.
    pub message: String,
}

impl Rejection {
    /// A rejection for `reason`, saying `message`.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
        }
    }
}

/// The first key or value of `map` (named `field`) that holds a NUL byte, which neither store keeps in text.
fn nul_in(field: &str, map: &BTreeMap<String, String>) -> Result<(), Rejection> {
    match map
        .iter()
        .find(|(key, value)| key.contains('\0') || value.contains('\0'))
    {
        Some((key, _)) => Err(Rejection::new(
            "nul_byte",
            format!(
                "{field}.{}: must not contain a NUL byte",
                key.replace('\0', "\\u0000")
            ),
        )),
        None => Ok(()),
    }
}

/// The source an alert is recorded with: configured, else guessed from the generator URL.
fn source_of(config: &AlertmanagerConfig, generator_url: Option<&str>) -> String {
    if let Some(source) = &config.source {
        return source.clone();
    }
    match generator_url {
        // vmalert links to its own UI (`/vmalert/alert?...`, or `/api/v1/alert?...` on older versions).
        Some(url) if url.contains("vmalert") || url.contains("/api/v1/alert?") => "vmalert".into(),
        // Prometheus links to its expression browser (`/graph?g0.expr=...`).
        Some(url) if url.contains("/graph?") => "prometheus".into(),
        _ => "alertmanager".into(),
    }
}

impl PostableAlert {
    /// Maps this alert onto GoMon's model at time `now`, or says what is wrong with it. Nothing is refused for
    /// its length: the labels and annotations are kept whole, and the title and namespace drawn from them are cut
    /// with an ellipsis to the length of their columns.
    pub fn map(
        self,
        config: &AlertmanagerConfig,
        now: DateTime<Utc>,
    ) -> Result<RuleAlert, Rejection> {
        if self.labels.is_empty() {
            return Err(Rejection::new("no_labels", "labels must not be empty"));
        }
        if self.labels.keys().any(|name| name.is_empty()) {
            return Err(Rejection::new(
                "empty_label_name",
                "label names must not be empty",
            ));
        }
        nul_in("labels", &self.labels)?;
        nul_in("annotations", &self.annotations)?;
        if self
            .generator_url
            .as_deref()
            .is_some_and(|url| url.contains('\0'))
        {
            return Err(Rejection::new(
                "nul_byte",
                "generatorURL: must not contain a NUL byte",
            ));
        }
        let alertname = self
            .labels
            .get("alertname")
            .filter(|name| !name.trim().is_empty())
            .ok_or_else(|| Rejection::new("no_alertname", "labels.alertname is required"))?;
        if let (Some(starts), Some(ends)) = (set(self.starts_at), set(self.ends_at))
            && ends < starts
        {
            return Err(Rejection::new(
                "ends_before_starts",
                format!("endsAt {ends} is before startsAt {starts}"),
            ));
        }
        let severity = self
            .labels
            .get("severity")
            .and_then(|value| config.severities.get(&value.to_lowercase()))
            .copied()
            .unwrap_or(config.default_severity);
        let title = match self.annotations.get("summary").map(|s| s.trim()) {
            Some(summary) if !summary.is_empty() => format!("{alertname}: {summary}"),
            _ => alertname.clone(),
        };
        let description = self
            .annotations
            .get("description")
            .filter(|text| !text.trim().is_empty())
            .cloned();
        let namespace = self
            .labels
            .get("namespace")
            .map(|namespace| truncate(namespace, MAX_NAMESPACE));
        let source = source_of(config, self.generator_url.as_deref());
        let ends_at = set(self.ends_at).unwrap_or_else(|| {
            now + chrono::Duration::from_std(config.resolve_timeout)
                .unwrap_or_else(|_| chrono::Duration::minutes(5))
        });
        let mut annotations = self.annotations;
        if let Some(url) = self.generator_url.filter(|url| !url.is_empty()) {
            annotations.insert(GENERATOR_URL.into(), url);
        }
        let alert = NewAlert {
            source,
            severity,
            title: truncate(&title, MAX_TITLE),
            description,
            namespace,
            labels: self.labels,
            annotations,
            trace_id: None,
            identity: Identity::LabelSet,
        };
        alert
            .validate()
            .map_err(|error| Rejection::new("invalid", error.to_string()))?;
        Ok(RuleAlert {
            alert,
            ends_at: Some(ends_at),
            resolved: ends_at <= now,
        })
    }
}

/// The body of a Grafana webhook contact point: only `alerts` is read (the rest describes the notification).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct GrafanaWebhook {
    /// The alerts of the notification, each firing or resolved.
    #[schema(value_type = Vec<GrafanaAlert>)]
    pub alerts: Vec<serde_json::Value>,
}

/// One alert of a Grafana webhook.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrafanaAlert {
    /// `firing` or `resolved`.
    pub status: String,
    /// The label set: the alert's identity. `alertname` is required.
    pub labels: BTreeMap<String, String>,
    /// Annotations; `summary` goes into the title, `description` into the description.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When it started firing.
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    /// When it was resolved (Go's zero time while firing).
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    /// Link to the alert rule.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: Option<String>,
    /// Grafana's fingerprint of the label set (kept as the `grafanaFingerprint` annotation).
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Link to silence it in Grafana.
    #[serde(default, rename = "silenceURL")]
    pub silence_url: Option<String>,
    /// Link to the dashboard of the rule, if any.
    #[serde(default, rename = "dashboardURL")]
    pub dashboard_url: Option<String>,
    /// Link to the panel of the rule, if any.
    #[serde(default, rename = "panelURL")]
    pub panel_url: Option<String>,
    /// The values of the rule's queries, as text.
    #[serde(default)]
    pub value_string: Option<String>,
}

/// Source of the alerts of the Grafana webhook.
pub const GRAFANA: &str = "grafana";

impl GrafanaAlert {
    /// Maps this alert onto GoMon's model at time `now`, as the Alertmanager API does (same label set identity,
    /// severity, title and description), or says what is wrong with it. A firing alert does not expire: Grafana
    /// sends it again only every repeat interval, and sends it as resolved when it is.
    pub fn map(
        self,
        config: &AlertmanagerConfig,
        now: DateTime<Utc>,
    ) -> Result<RuleAlert, Rejection> {
        let resolved = match self.status.as_str() {
            "firing" => false,
            "resolved" => true,
            other => {
                return Err(Rejection::new(
                    "unknown_status",
                    format!("status {other:?} is neither firing nor resolved"),
                ));
            }
        };
        let mut annotations = self.annotations;
        for (key, value) in [
            ("dashboardURL", self.dashboard_url),
            ("panelURL", self.panel_url),
            ("silenceURL", self.silence_url),
            ("grafanaFingerprint", self.fingerprint),
            ("valueString", self.value_string),
        ] {
            if let Some(value) = value.filter(|value| !value.is_empty()) {
                annotations.insert(key.into(), value);
            }
        }
        let postable = PostableAlert {
            labels: self.labels,
            annotations,
            starts_at: self.starts_at,
            ends_at: if resolved { self.ends_at } else { None },
            generator_url: self.generator_url,
        };
        let mut mapped = postable.map(config, now)?;
        mapped.alert.source = GRAFANA.into();
        mapped.ends_at = None;
        mapped.resolved = resolved;
        Ok(mapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postable(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> PostableAlert {
        let pairs = |items: &[(&str, &str)]| {
            items
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        PostableAlert {
            labels: pairs(labels),
            annotations: pairs(annotations),
            ..PostableAlert::default()
        }
    }

    #[test]
    fn maps_labels_and_annotations() {
        let config = AlertmanagerConfig::default();
        let now = crate::model::now();
        let mut alert = postable(
            &[
                ("alertname", "HighCPU"),
                ("severity", "Critical"),
                ("namespace", "prod"),
                ("instance", "a:9100"),
            ],
            &[("summary", "CPU at 97%"), ("description", "for 5 minutes")],
        );
        alert.generator_url = Some("http://vm:8880/vmalert/alert?group_id=1&alert_id=2".into());
        let mapped = alert.map(&config, now).expect("valid");
        assert_eq!(mapped.alert.severity, Severity::P1);
        assert_eq!(mapped.alert.title, "HighCPU: CPU at 97%");
        assert_eq!(mapped.alert.description.as_deref(), Some("for 5 minutes"));
        assert_eq!(mapped.alert.namespace.as_deref(), Some("prod"));
        assert_eq!(mapped.alert.source, "vmalert");
        assert_eq!(mapped.alert.labels.len(), 4);
        assert!(mapped.alert.annotations.contains_key(GENERATOR_URL));
        assert_eq!(
            mapped.ends_at,
            Some(now + chrono::Duration::from_std(config.resolve_timeout).expect("fits"))
        );
        assert!(!mapped.resolved);
    }

    #[test]
    fn identity_is_the_label_set() {
        let config = AlertmanagerConfig::default();
        let now = crate::model::now();
        let a = postable(&[("alertname", "X")], &[("summary", "value 1")])
            .map(&config, now)
            .expect("valid");
        let b = postable(&[("alertname", "X")], &[("summary", "value 2")])
            .map(&config, now)
            .expect("valid");
        assert_ne!(a.alert.title, b.alert.title);
        assert_eq!(a.alert.fingerprint(), b.alert.fingerprint());
        let c = postable(&[("alertname", "X"), ("pod", "p")], &[])
            .map(&config, now)
            .expect("valid");
        assert_ne!(a.alert.fingerprint(), c.alert.fingerprint());
    }

    #[test]
    fn severity_source_and_rejections() {
        let config = AlertmanagerConfig::default();
        let now = crate::model::now();
        for (value, severity) in [
            ("error", Severity::P2),
            ("high", Severity::P2),
            ("warning", Severity::P3),
            ("info", Severity::P4),
            ("odd", Severity::P3),
        ] {
            let mapped = postable(&[("alertname", "X"), ("severity", value)], &[])
                .map(&config, now)
                .expect("valid");
            assert_eq!(mapped.alert.severity, severity, "{value}");
        }
        let mut prometheus = postable(&[("alertname", "X")], &[]);
        prometheus.generator_url = Some("http://p:9090/graph?g0.expr=up".into());
        assert_eq!(
            prometheus.map(&config, now).expect("valid").alert.source,
            "prometheus"
        );
        assert!(postable(&[], &[]).map(&config, now).is_err());
        assert!(
            postable(&[("job", "x")], &[])
                .map(&config, now)
                .expect_err("no alertname")
                .message
                .contains("alertname")
        );
        let mut backwards = postable(&[("alertname", "X")], &[]);
        backwards.starts_at = Some(now);
        backwards.ends_at = Some(now - chrono::Duration::seconds(1));
        assert!(backwards.map(&config, now).is_err());
    }

    #[test]
    fn long_values_are_kept_whole_and_cut_in_their_columns() {
        let config = AlertmanagerConfig::default();
        let namespace = "n".repeat(101);
        let summary = "s".repeat(400);
        let mapped = postable(
            &[("alertname", "X"), ("namespace", &namespace)],
            &[("summary", &summary)],
        )
        .map(&config, crate::model::now())
        .expect("long values are accepted");
        let column = mapped.alert.namespace.expect("namespace");
        assert_eq!(column.chars().count(), MAX_NAMESPACE);
        assert!(column.ends_with('…'));
        assert_eq!(mapped.alert.labels["namespace"], namespace);
        assert_eq!(mapped.alert.title.chars().count(), MAX_TITLE);
        assert_eq!(mapped.alert.annotations["summary"], summary);
    }

    #[test]
    fn a_nul_byte_is_an_invalid_alert() {
        let config = AlertmanagerConfig::default();
        let now = crate::model::now();
        let rejected = postable(&[("alertname", "X"), ("pod", "a\0b")], &[])
            .map(&config, now)
            .expect_err("NUL in a label value");
        assert_eq!(rejected.reason, "nul_byte");
        assert!(rejected.message.contains("labels.pod"), "{rejected:?}");
        let rejected = postable(&[("alertname", "X")], &[("sum\0mary", "x")])
            .map(&config, now)
            .expect_err("NUL in an annotation name");
        assert_eq!(rejected.reason, "nul_byte");
    }

    #[test]
    fn grafana_alerts_map_without_expiry() {
        let config = AlertmanagerConfig::default();
        let now = crate::model::now();
        let labels = BTreeMap::from([
            ("alertname".to_owned(), "HighMemory".to_owned()),
            ("severity".to_owned(), "warning".to_owned()),
        ]);
        let firing = GrafanaAlert {
            status: "firing".into(),
            labels: labels.clone(),
            ends_at: Some(DateTime::<Utc>::MIN_UTC),
            dashboard_url: Some("http://grafana/d/abc".into()),
            panel_url: Some(String::new()),
            ..GrafanaAlert::default()
        }
        .map(&config, now)
        .expect("valid");
        assert_eq!(firing.alert.source, GRAFANA);
        assert_eq!(firing.alert.severity, Severity::P3);
        assert_eq!((firing.ends_at, firing.resolved), (None, false));
        assert_eq!(
            firing
                .alert
                .annotations
                .get("dashboardURL")
                .map(String::as_str),
            Some("http://grafana/d/abc")
        );
        assert!(!firing.alert.annotations.contains_key("panelURL"));
        let resolved = GrafanaAlert {
            status: "resolved".into(),
            labels,
            ends_at: Some(now),
            ..GrafanaAlert::default()
        }
        .map(&config, now)
        .expect("valid");
        assert!(resolved.resolved);
        assert_eq!(resolved.alert.fingerprint(), firing.alert.fingerprint());
        let unknown = GrafanaAlert {
            status: "pending".into(),
            ..GrafanaAlert::default()
        };
        assert!(unknown.map(&config, now).is_err());
    }
}
