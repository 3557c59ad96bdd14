//! `alerting.notify`: the named receivers notifications go to, and the ordered routes that choose them for an
//! alert by matchers over its labels and its fields `severity`, `source` and `namespace`.
//!
//! Without `alerting.notify`, `alerting.slack` is the policy: one receiver `slack`, and one route taking the
//! severities its channel routes list. Either way the rest of the service sees one [`Policy`].

use std::collections::BTreeMap;

use gomon_runtime::config::KeyError;
use serde::{Deserialize, Serialize};

use super::slack::SlackConfig;
use super::webhook::WebhookConfig;
use crate::model::{Alert, Severity, Target};
use crate::silence::{MAX_MATCHERS, Matcher, alert_labels};

/// The name of the receiver `alerting.slack` stands for when `alerting.notify` is not set.
pub const IMPLICIT_SLACK: &str = "slack";

/// Longest receiver name.
pub const MAX_NAME: usize = 64;

/// `alerting.notify`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Where notifications can go, each under a unique name.
    pub receivers: Vec<ReceiverConfig>,
    /// Which receivers an alert's notifications go to, tried in order.
    pub routes: Vec<RouteConfig>,
}

/// One receiver: a unique `name`, a `type`, and the settings of that type.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReceiverConfig {
    /// How routes and the outbox name it: letters, digits, `_`, `-` and `.`, at most [`MAX_NAME`].
    pub name: String,
    /// Its type and settings.
    #[serde(flatten)]
    pub kind: ReceiverKind,
}

/// A receiver's type (`type:`) and the settings of that type.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ReceiverKind {
    /// Slack, with the keys of `alerting.slack` (its `routes` choose the channel by severity).
    Slack(SlackConfig),
    /// Alertmanager's webhook payload (version 4) posted to a URL.
    Webhook(WebhookConfig),
}

impl ReceiverKind {
    /// The longest one request to this receiver may take.
    pub fn timeout(&self) -> std::time::Duration {
        match self {
            ReceiverKind::Slack(slack) => slack.timeout,
            ReceiverKind::Webhook(webhook) => webhook.timeout,
        }
    }

    /// The type's name, as `type:` spells it.
    pub fn type_name(&self) -> &'static str {
        match self {
            ReceiverKind::Slack(_) => "slack",
            ReceiverKind::Webhook(_) => "webhook",
        }
    }
}

/// One route: when every matcher matches an alert, its notifications go to `receiver`; then the next routes are
/// tried only if `continue` is true.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// Matchers in Alertmanager's syntax (`name="value"`, `!=`, `=~`, `!~`); none matches every alert.
    pub matchers: Vec<String>,
    /// The receiver's name.
    pub receiver: String,
    /// Whether the routes after this one are tried when it matches.
    #[serde(rename = "continue")]
    pub continue_matching: bool,
}

/// A route with its matchers parsed.
#[derive(Clone, Debug)]
struct Route {
    /// Its index in `alerting.notify.routes`; `None` for the route `alerting.slack` stands for.
    index: Option<i32>,
    matchers: Vec<Matcher>,
    receiver: String,
    continue_matching: bool,
}

/// The receivers and the routes to them, checked.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    receivers: Vec<ReceiverConfig>,
    routes: Vec<Route>,
}

/// The labels routes match: the alert's labels (`alertname` defaulting to its title, as for silences), with the
/// fields `severity`, `source` and `namespace` in place of labels of the same name.
pub fn route_labels(alert: &Alert) -> BTreeMap<String, String> {
    let mut labels = alert_labels(alert);
    labels.insert("severity".into(), alert.severity.as_str().into());
    labels.insert("source".into(), alert.source.clone());
    match &alert.namespace {
        Some(namespace) => labels.insert("namespace".into(), namespace.clone()),
        None => labels.remove("namespace"),
    };
    labels
}

impl Policy {
    /// The policy `notify` describes, or, when it is not set, the one `slack` stands for. Errors name the key in
    /// full (`alerting.notify.routes[2].receiver`).
    pub fn new(notify: Option<&NotifyConfig>, slack: &SlackConfig) -> Result<Policy, KeyError> {
        match notify {
            Some(notify) => Self::explicit(notify, slack),
            None => Ok(Self::implicit(slack)),
        }
    }

    /// `alerting.slack` as a policy: receiver `slack` for the severities some channel route takes, if a
    /// destination is configured; else nothing.
    fn implicit(slack: &SlackConfig) -> Policy {
        if !slack.has_destination() {
            return Policy::default();
        }
        let severities: Vec<&str> = Severity::ALL
            .into_iter()
            .filter(|severity| slack.channel_for(*severity).is_some())
            .map(Severity::as_str)
            .collect();
        let routes = if severities.is_empty() {
            Vec::new()
        } else {
            vec![Route {
                index: None,
                matchers: vec![Matcher::new("severity", &severities.join("|"), true, true)],
                receiver: IMPLICIT_SLACK.to_owned(),
                continue_matching: false,
            }]
        };
        Policy {
            receivers: vec![ReceiverConfig {
                name: IMPLICIT_SLACK.to_owned(),
                kind: ReceiverKind::Slack(slack.clone()),
            }],
            routes,
        }
    }

    fn explicit(notify: &NotifyConfig, slack: &SlackConfig) -> Result<Policy, KeyError> {
        if slack.has_destination() {
            return Err(KeyError::new(
                "alerting.slack",
                "a Slack destination is set here and alerting.notify is set too: move it into \
                 alerting.notify.receivers (type: slack, with the same keys) and route to it in \
                 alerting.notify.routes",
            ));
        }
        if slack.routes != SlackConfig::default().routes {
            return Err(KeyError::new(
                "alerting.slack.routes",
                "not used when alerting.notify is set: route with alerting.notify.routes (matchers such as \
                 severity=~\"P1|P2\") to a receiver of type slack, whose own routes pick the channel",
            ));
        }
        for (index, receiver) in notify.receivers.iter().enumerate() {
            let key = format!("alerting.notify.receivers[{index}]");
            let name = &receiver.name;
            if name.is_empty()
                || name.len() > MAX_NAME
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(KeyError::new(
                    format!("{key}.name"),
                    format!("{name:?} is not 1 to {MAX_NAME} letters, digits, '_', '-' or '.'"),
                ));
            }
            if let Some(first) = notify.receivers[..index]
                .iter()
                .position(|other| &other.name == name)
            {
                return Err(KeyError::new(
                    format!("{key}.name"),
                    format!("{name:?} is already the name of alerting.notify.receivers[{first}]"),
                ));
            }
            match &receiver.kind {
                ReceiverKind::Slack(slack) => {
                    slack.check().map_err(|error| error.within(&key))?;
                    if !slack.has_destination() {
                        return Err(KeyError::new(
                            key,
                            "a slack receiver needs webhook_url or bot_token (or webhook_url_file, bot_token_file)",
                        ));
                    }
                }
                ReceiverKind::Webhook(webhook) => {
                    webhook.check().map_err(|error| error.within(&key))?
                }
            }
        }
        let mut routes = Vec::with_capacity(notify.routes.len());
        for (index, route) in notify.routes.iter().enumerate() {
            let key = format!("alerting.notify.routes[{index}]");
            if !notify.receivers.iter().any(|r| r.name == route.receiver) {
                return Err(KeyError::new(
                    format!("{key}.receiver"),
                    format!("no receiver named {:?}", route.receiver),
                ));
            }
            if route.matchers.len() > MAX_MATCHERS {
                return Err(KeyError::new(
                    format!("{key}.matchers"),
                    format!(
                        "at most {MAX_MATCHERS} matchers, not {}",
                        route.matchers.len()
                    ),
                ));
            }
            let matchers = route
                .matchers
                .iter()
                .enumerate()
                .map(|(at, text)| {
                    Matcher::parse(text)
                        .map_err(|error| KeyError::new(format!("{key}.matchers[{at}]"), error))
                })
                .collect::<Result<Vec<_>, _>>()?;
            routes.push(Route {
                index: i32::try_from(index).ok(),
                matchers,
                receiver: route.receiver.clone(),
                continue_matching: route.continue_matching,
            });
        }
        Ok(Policy {
            receivers: notify.receivers.clone(),
            routes,
        })
    }

    /// The receivers, in configuration order.
    pub fn receivers(&self) -> &[ReceiverConfig] {
        &self.receivers
    }

    /// Whether some route may notify something.
    pub fn notifies(&self) -> bool {
        !self.routes.is_empty()
    }

    /// Where `alert`'s notifications go: the receiver of each matching route, in route order, until one that
    /// matches without `continue`; a receiver once only (with the first route that chose it).
    pub fn targets(&self, alert: &Alert) -> Vec<Target> {
        let labels = route_labels(alert);
        let mut targets: Vec<Target> = Vec::new();
        for route in &self.routes {
            if !route.matchers.iter().all(|m| m.matches(&labels)) {
                continue;
            }
            if !targets.iter().any(|t| t.receiver == route.receiver) {
                targets.push(Target {
                    receiver: route.receiver.clone(),
                    route: route.index,
                });
            }
            if !route.continue_matching {
                break;
            }
        }
        targets
    }

    /// The severities some route may take, judging by `severity` matchers alone (other matchers may still leave
    /// an alert unrouted); for the start-up log and Alertmanager's configuration view.
    pub fn severities(&self) -> Vec<Severity> {
        Severity::ALL
            .into_iter()
            .filter(|severity| {
                let labels =
                    BTreeMap::from([("severity".to_owned(), severity.as_str().to_owned())]);
                self.routes.iter().any(|route| {
                    route
                        .matchers
                        .iter()
                        .filter(|m| m.name == "severity")
                        .all(|m| m.matches(&labels))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewAlert;

    fn alert(severity: Severity, namespace: Option<&str>, labels: &[(&str, &str)]) -> Alert {
        let new = NewAlert {
            source: "kubernetes".into(),
            severity,
            title: "PodCrashLooping".into(),
            namespace: namespace.map(str::to_owned),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..NewAlert::default()
        };
        new.into_alert(crate::model::now())
    }

    fn parse(yaml: &str) -> NotifyConfig {
        yaml_serde::from_str(yaml).expect("parse")
    }

    fn receivers(targets: &[Target]) -> Vec<(&str, Option<i32>)> {
        targets
            .iter()
            .map(|t| (t.receiver.as_str(), t.route))
            .collect()
    }

    const TWO: &str = "receivers:\n\
        - name: team-slack\n  type: slack\n  webhook_url: https://hooks.slack.com/services/T/B/x\n\
        - name: hook\n  type: webhook\n  url: https://hooks.example.com/in\n  timeout: 2s\n";

    #[test]
    fn routes_are_tried_in_order_with_continue() {
        let config = parse(&format!(
            "{TWO}routes:\n\
             - matchers: ['severity=~\"P1|P2\"', 'namespace=\"prod\"']\n  receiver: hook\n  continue: true\n\
             - matchers: ['source=\"kubernetes\"']\n  receiver: team-slack\n\
             - receiver: hook\n"
        ));
        let policy = Policy::new(Some(&config), &SlackConfig::default()).expect("valid");
        let p1_prod = alert(Severity::P1, Some("prod"), &[]);
        assert_eq!(
            receivers(&policy.targets(&p1_prod)),
            [("hook", Some(0)), ("team-slack", Some(1))]
        );
        let p3_prod = alert(Severity::P3, Some("prod"), &[]);
        assert_eq!(
            receivers(&policy.targets(&p3_prod)),
            [("team-slack", Some(1))]
        );
        // A label named like a field does not override the field.
        let labelled = alert(
            Severity::P4,
            None,
            &[("severity", "P1"), ("namespace", "prod")],
        );
        assert_eq!(
            receivers(&policy.targets(&labelled)),
            [("team-slack", Some(1))]
        );
        let mut other = alert(Severity::P1, Some("prod"), &[]);
        other.source = "api".into();
        assert_eq!(receivers(&policy.targets(&other)), [("hook", Some(0))]);
        let hook = policy
            .receivers()
            .iter()
            .find(|r| r.name == "hook")
            .expect("hook");
        assert_eq!(hook.kind.timeout(), std::time::Duration::from_secs(2));
        assert_eq!(policy.severities(), Severity::ALL.to_vec());
    }

    #[test]
    fn without_notify_alerting_slack_is_one_receiver_and_route() {
        let mut slack = SlackConfig::default();
        let policy = Policy::new(None, &slack).expect("valid");
        assert!(!policy.notifies());
        assert!(policy.receivers().is_empty());
        slack.webhook_url = Some("https://hooks.slack.com/services/T/B/x".into());
        slack.routes.truncate(1);
        let policy = Policy::new(None, &slack).expect("valid");
        assert_eq!(policy.receivers()[0].name, IMPLICIT_SLACK);
        assert_eq!(policy.severities(), [Severity::P1, Severity::P2]);
        let p2 = alert(Severity::P2, None, &[]);
        assert_eq!(receivers(&policy.targets(&p2)), [("slack", None)]);
        assert!(policy.targets(&alert(Severity::P3, None, &[])).is_empty());
        slack.routes.clear();
        assert!(!Policy::new(None, &slack).expect("valid").notifies());
    }

    #[test]
    fn errors_name_the_full_key() {
        let error_of = |yaml: &str| {
            Policy::new(Some(&parse(yaml)), &SlackConfig::default())
                .expect_err(yaml)
                .to_string()
        };
        assert_eq!(
            error_of(&format!(
                "{TWO}routes:\n- receiver: hook\n- receiver: hook\n- receiver: pager\n"
            )),
            "alerting.notify.routes[2].receiver: no receiver named \"pager\""
        );
        let error = error_of(&format!(
            "{TWO}routes:\n- receiver: hook\n  matchers: ['severity=~(']\n"
        ));
        assert!(
            error.starts_with("alerting.notify.routes[0].matchers[0]: "),
            "{error}"
        );
        let error = error_of(&format!(
            "{TWO}- name: hook\n  type: webhook\n  url: https://x.example/\n"
        ));
        assert!(
            error.starts_with("alerting.notify.receivers[2].name: "),
            "{error}"
        );
        let error =
            error_of("receivers:\n- name: 'a b'\n  type: webhook\n  url: https://x.example/\n");
        assert!(
            error.starts_with("alerting.notify.receivers[0].name: "),
            "{error}"
        );
        let error =
            error_of("receivers:\n- name: h\n  type: webhook\n  url: gopher://x.example/\n");
        assert!(
            error.starts_with("alerting.notify.receivers[0].url: "),
            "{error}"
        );
        let error = error_of("receivers:\n- name: s\n  type: slack\n");
        assert!(
            error.starts_with("alerting.notify.receivers[0]: "),
            "{error}"
        );
        let error = error_of(
            "receivers:\n- name: s\n  type: slack\n  bot_token: x\n  routes: [{severities: [P1], channel: ' '}]\n",
        );
        assert!(
            error.starts_with("alerting.notify.receivers[0].routes[0].channel: "),
            "{error}"
        );
        let mut slack = SlackConfig {
            bot_token: Some("xoxb-1".into()),
            ..SlackConfig::default()
        };
        let error = Policy::new(Some(&NotifyConfig::default()), &slack).expect_err("both");
        assert_eq!(error.key, "alerting.slack");
        slack.bot_token = None;
        slack.routes.pop();
        let error = Policy::new(Some(&NotifyConfig::default()), &slack).expect_err("old routes");
        assert_eq!(error.key, "alerting.slack.routes");
    }

    #[test]
    fn unknown_keys_and_types_are_refused() {
        for yaml in [
            "receivers:\n- name: h\n  type: webhook\n  url: https://x.example/\n  colour: red\n",
            "receivers:\n- name: h\n  type: pagerduty\n",
            "receivers:\n- name: h\n  url: https://x.example/\n",
            "routes:\n- receiver: h\n  group_by: [alertname]\n",
            "receiver: h\n",
        ] {
            assert!(
                yaml_serde::from_str::<NotifyConfig>(yaml).is_err(),
                "{yaml}"
            );
        }
    }
}
