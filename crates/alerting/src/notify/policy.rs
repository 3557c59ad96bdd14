//! `alerting.notify`: the named receivers notifications go to, and the ordered routes that choose them for an
//! alert by matchers over its labels and its fields `severity`, `source` and `namespace`.
//!
//! Without `alerting.notify`, `alerting.slack` is the policy: one receiver `slack`, and one route taking the
//! severities its channel routes list. Either way the rest of the service sees one [`Policy`].
//!
//! A route also says what happens while an alert it notified stays firing and unacknowledged: its receiver is
//! notified again every `repeat_interval` (by default 2 h for P1 and P2, 4 h for P3 and P4), and the steps of its
//! `escalation` notify more receivers once the alert has been unacknowledged for their `after`.
//!
//! A route groups what it notifies: the notifications of alerts with the same values of its `group_by` labels
//! (by default `namespace`) go to a receiver together, as one message, once the group has waited `group_wait` (by
//! default 5 s for P1 and P2, 10 s for P3 and P4); the group's later changes wait until `group_interval` (5 m) after
//! its last message. Acknowledgements and assignments, which a person makes, go alone and at once.

use std::collections::BTreeMap;
use std::time::Duration;

use gomon_runtime::config::KeyError;
use serde::{Deserialize, Serialize};

use super::email::EmailConfig;
use super::pagerduty::PagerDutyConfig;
use super::slack::SlackConfig;
use super::webhook::WebhookConfig;
use sha2::Digest as _;

use crate::model::{Alert, FollowUp, Group, Severity, Target, to_hex, truncate};
use crate::silence::{MAX_MATCHERS, Matcher, alert_labels};

/// The name of the receiver `alerting.slack` stands for when `alerting.notify` is not set.
pub const IMPLICIT_SLACK: &str = "slack";

/// Longest receiver name.
pub const MAX_NAME: usize = 64;

/// Most escalation steps of a route, and most receivers of a step.
pub const MAX_ESCALATION: usize = 16;

/// Shortest `repeat_interval` and escalation `after` (other than `0s`, which turns repeats off).
pub const MIN_FOLLOW_UP: Duration = Duration::from_secs(1);

/// The labels a route groups by when it sets no `group_by`, as kube-prometheus-stack's default route does.
pub const DEFAULT_GROUP_BY: &str = "namespace";

/// `group_by: ['...']`: by every label, so each alert is its own group; its notifications go alone, at once.
pub const EVERY_LABEL: &str = "...";

/// The group interval of a route that sets none, Alertmanager's.
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);

/// Longest group key kept as it reads; a longer one is cut and ends in a hash of the whole.
pub const MAX_GROUP_KEY: usize = 200;

/// The group wait of a route that sets none: the seed's, 5 s for P1 and P2 and 10 s for P3 and P4.
pub fn default_group_wait(severity: Severity) -> Duration {
    match severity {
        Severity::P1 | Severity::P2 => Duration::from_secs(5),
        Severity::P3 | Severity::P4 => Duration::from_secs(10),
    }
}

/// The repeat interval of a route that sets none: the seed's, 2 h for P1 and P2 and 4 h for P3 and P4.
pub fn default_repeat_interval(severity: Severity) -> Duration {
    match severity {
        Severity::P1 | Severity::P2 => Duration::from_secs(2 * 3600),
        Severity::P3 | Severity::P4 => Duration::from_secs(4 * 3600),
    }
}

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
    /// PagerDuty's Events API v2.
    #[serde(rename = "pagerduty")]
    PagerDuty(PagerDutyConfig),
    /// Email through an SMTP smarthost.
    Email(EmailConfig),
}

impl ReceiverKind {
    /// The longest one request to this receiver may take.
    pub fn timeout(&self) -> std::time::Duration {
        match self {
            ReceiverKind::Slack(slack) => slack.timeout,
            ReceiverKind::Webhook(webhook) => webhook.timeout,
            ReceiverKind::PagerDuty(pagerduty) => pagerduty.timeout,
            ReceiverKind::Email(email) => email.timeout,
        }
    }

    /// Whether notifications of a group go to it as one message. PagerDuty takes each alert as its own event (it
    /// groups incidents itself), at once.
    pub fn groups(&self) -> bool {
        !matches!(self, ReceiverKind::PagerDuty(_))
    }

    /// The type's name, as `type:` spells it.
    pub fn type_name(&self) -> &'static str {
        match self {
            ReceiverKind::Slack(_) => "slack",
            ReceiverKind::Webhook(_) => "webhook",
            ReceiverKind::PagerDuty(_) => "pagerduty",
            ReceiverKind::Email(_) => "email",
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
    /// How often a firing, unacknowledged alert is notified again; `0s` never. Unset: 2 h for P1 and P2, 4 h for
    /// P3 and P4.
    #[serde(with = "humantime_serde")]
    pub repeat_interval: Option<Duration>,
    /// Steps that notify more receivers while the alert stays firing and unacknowledged, by increasing `after`.
    pub escalation: Vec<EscalationStep>,
    /// Where this route's notifications go while its receiver has been failing for longer than a bound.
    pub fallback: Option<FallbackConfig>,
    /// The labels (or fields `severity`, `source`, `namespace`) whose values make an alert's group; `[]` puts every
    /// alert of the route in one group, `['...']` each alert in its own (sent alone, at once). Unset: `[namespace]`.
    pub group_by: Option<Vec<String>>,
    /// How long a new group waits for more alerts before its first message. Unset: 5 s for P1 and P2, 10 s for P3
    /// and P4 (the group's first alert's severity).
    #[serde(with = "humantime_serde")]
    pub group_wait: Option<Duration>,
    /// How long after a group's message its next one may go. Unset: 5 m.
    #[serde(with = "humantime_serde")]
    pub group_interval: Option<Duration>,
}

/// A route's fallback: when its receiver's circuit breaker has been away from closed for `after`, the route's
/// notifications waiting for that receiver (and those made meanwhile) are also sent to `receiver`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    /// The receiver that takes over (not the route's own).
    pub receiver: String,
    /// How long the route's receiver must have been failing first.
    #[serde(with = "humantime_serde", default = "default_fallback_after")]
    pub after: Duration,
    /// Whether the route's receiver still gets them once it is back (default); false: they are marked failed
    /// there, delivered by the fallback alone.
    #[serde(default = "deliver_late_default")]
    pub deliver_late: bool,
}

fn default_fallback_after() -> Duration {
    Duration::from_secs(300)
}

fn deliver_late_default() -> bool {
    true
}

/// The fallback of one route, as the dispatcher of the route's receiver applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    /// The route's index in `alerting.notify.routes`.
    pub route: i32,
    /// Its settings.
    pub config: FallbackConfig,
}

/// One step of a route's escalation ladder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    /// How long after the alert started firing, still unacknowledged, the step fires.
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// The receivers it notifies (each once, with the event `escalated`).
    pub receivers: Vec<String>,
}

/// A route with its matchers parsed.
#[derive(Clone, Debug)]
pub struct Route {
    /// Its index in `alerting.notify.routes`; `None` for the route `alerting.slack` stands for.
    index: Option<i32>,
    matchers: Vec<Matcher>,
    receiver: String,
    continue_matching: bool,
    repeat_interval: Option<Duration>,
    escalation: Vec<EscalationStep>,
    fallback: Option<FallbackConfig>,
    /// The labels it groups by; `None`: it does not group.
    group_by: Option<Vec<String>>,
    group_wait: Option<Duration>,
    group_interval: Duration,
}

impl Route {
    /// The group this route puts `alert` in: the route and its `group_by` labels' values (those the alert has),
    /// and how long the group waits; `None` when the route does not group.
    pub fn group(&self, alert: &Alert) -> Option<Group> {
        self.group_by.as_ref()?;
        let values: Vec<String> = self
            .group_labels(alert)
            .iter()
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect();
        let route = self
            .index
            .map_or_else(|| IMPLICIT_SLACK.to_owned(), |index| index.to_string());
        let mut key = format!("{route}:{{{}}}", values.join(","));
        if key.len() > MAX_GROUP_KEY {
            let digest = to_hex(&sha2::Sha256::digest(key.as_bytes()));
            key = format!("{}…#{digest}", truncate(&key, MAX_GROUP_KEY / 2));
        }
        Some(Group {
            key,
            wait: self
                .group_wait
                .unwrap_or_else(|| default_group_wait(alert.severity)),
        })
    }

    /// The labels `alert`'s group is made by: those of its `group_by` it has, with their values (see
    /// [`route_labels`]); empty when the route does not group.
    pub fn group_labels(&self, alert: &Alert) -> BTreeMap<String, String> {
        let Some(by) = &self.group_by else {
            return BTreeMap::new();
        };
        let mut labels = route_labels(alert);
        labels.retain(|name, _| by.contains(name));
        labels
    }

    /// How long after a group's message its next one may go.
    pub fn group_interval(&self) -> Duration {
        self.group_interval
    }

    /// How often this route notifies `severity`'s firing, unacknowledged alerts again; `None`: never.
    pub fn repeat_interval(&self, severity: Severity) -> Option<Duration> {
        let interval = self
            .repeat_interval
            .unwrap_or_else(|| default_repeat_interval(severity));
        (!interval.is_zero()).then_some(interval)
    }

    /// The escalation steps, by increasing `after`.
    pub fn escalation(&self) -> &[EscalationStep] {
        &self.escalation
    }

    /// When this route's follow-ups of `alert` begin: its first repeat and its first escalation step.
    fn follow_up(&self, alert: &Alert) -> Option<FollowUp> {
        let later = |by: Duration| {
            chrono::Duration::from_std(by)
                .ok()
                .and_then(|by| alert.created_at.checked_add_signed(by))
        };
        let follow_up = FollowUp {
            repeat_at: self.repeat_interval(alert.severity).and_then(later),
            escalate_at: self.escalation.first().and_then(|step| later(step.after)),
            step: 0,
        };
        follow_up.due_at().map(|_| follow_up)
    }
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
                repeat_interval: None,
                escalation: Vec::new(),
                fallback: None,
                group_by: None,
                group_wait: None,
                group_interval: DEFAULT_GROUP_INTERVAL,
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
                ReceiverKind::PagerDuty(pagerduty) => {
                    pagerduty.check().map_err(|error| error.within(&key))?
                }
                ReceiverKind::Email(email) => email.check().map_err(|error| error.within(&key))?,
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
            if let Some(interval) = route.repeat_interval
                && !interval.is_zero()
                && interval < MIN_FOLLOW_UP
            {
                return Err(KeyError::new(
                    format!("{key}.repeat_interval"),
                    format!("must be 0s (never) or at least {MIN_FOLLOW_UP:?}, not {interval:?}"),
                ));
            }
            check_escalation(notify, &route.escalation, &key)?;
            if let Some(fallback) = &route.fallback {
                check_fallback(notify, fallback, &route.receiver, &key)?;
            }
            let group_by = check_group_by(route.group_by.as_deref(), &key)?;
            routes.push(Route {
                index: i32::try_from(index).ok(),
                matchers,
                receiver: route.receiver.clone(),
                continue_matching: route.continue_matching,
                repeat_interval: route.repeat_interval,
                escalation: route.escalation.clone(),
                fallback: route.fallback.clone(),
                group_by,
                group_wait: route.group_wait,
                group_interval: route.group_interval.unwrap_or(DEFAULT_GROUP_INTERVAL),
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

    /// The routes that take `alert`: each matching route in order, until one that matches without `continue`.
    fn matching(&self, alert: &Alert) -> Vec<&Route> {
        let labels = route_labels(alert);
        let mut matching = Vec::new();
        for route in &self.routes {
            if !route.matchers.iter().all(|m| m.matches(&labels)) {
                continue;
            }
            matching.push(route);
            if !route.continue_matching {
                break;
            }
        }
        matching
    }

    /// Where `alert`'s notifications go: the receiver of each matching route, in route order, until one that
    /// matches without `continue`; a receiver once only (with the first route that chose it).
    pub fn targets(&self, alert: &Alert) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        for route in self.matching(alert) {
            if !targets.iter().any(|t| t.receiver == route.receiver) {
                targets.push(Target {
                    receiver: route.receiver.clone(),
                    route: route.index,
                    follow_up: route.follow_up(alert),
                    group: self.group(route, &route.receiver, alert),
                });
            }
        }
        targets
    }

    /// The group `route` puts `alert`'s notifications to `receiver` in; `None` when the route does not group or the
    /// receiver takes each alert alone.
    pub fn group(&self, route: &Route, receiver: &str, alert: &Alert) -> Option<Group> {
        let groups = self
            .receivers
            .iter()
            .any(|r| r.name == receiver && r.kind.groups());
        route.group(alert).filter(|_| groups)
    }

    /// The groups `alert` is in as Alertmanager's API shows them: for each route that takes it, the route's
    /// receiver and the labels of its group (every label for `group_by: ['...']`; none for the route of
    /// `alerting.slack`).
    pub fn api_groups(&self, alert: &Alert) -> Vec<(String, BTreeMap<String, String>)> {
        self.matching(alert)
            .into_iter()
            .map(|route| {
                let labels = match (&route.group_by, route.index) {
                    (Some(_), _) => route.group_labels(alert),
                    (None, Some(_)) => route_labels(alert),
                    (None, None) => BTreeMap::new(),
                };
                (route.receiver.clone(), labels)
            })
            .collect()
    }

    /// The route at `index` in `alerting.notify.routes` (`None`: the route of `alerting.slack`), whatever its
    /// receiver.
    pub fn route_at(&self, index: Option<i32>) -> Option<&Route> {
        self.routes.iter().find(|route| route.index == index)
    }

    /// Where the notification of a change of `alert` (acknowledged, assigned, resolved) goes: its
    /// [`targets`](Self::targets), and the receivers of the escalation steps it reached while it fired
    /// unacknowledged (whose `after` is not longer than from its creation to its acknowledgement, or to now when
    /// it was never acknowledged), so that a receiver that was escalated to also hears how it ended. `grouped`: the
    /// change goes with its group (a resolution); otherwise alone and at once (an acknowledgement or an assignment,
    /// which a person makes).
    pub fn targets_of_change(&self, alert: &Alert, grouped: bool) -> Vec<Target> {
        // A change starts no follow-ups: only the `created` notification does.
        let mut targets: Vec<Target> = self
            .targets(alert)
            .into_iter()
            .map(|target| Target {
                follow_up: None,
                group: target.group.filter(|_| grouped),
                ..target
            })
            .collect();
        let unacknowledged = alert.acknowledged_at.unwrap_or(alert.updated_at) - alert.created_at;
        for route in self.matching(alert) {
            let reached = route.escalation.iter().filter(|step| {
                chrono::Duration::from_std(step.after).is_ok_and(|after| after <= unacknowledged)
            });
            for receiver in reached.flat_map(|step| &step.receivers) {
                if !targets.iter().any(|t| &t.receiver == receiver) {
                    targets.push(Target {
                        receiver: receiver.clone(),
                        route: route.index,
                        follow_up: None,
                        group: self.group(route, receiver, alert).filter(|_| grouped),
                    });
                }
            }
        }
        targets
    }

    /// The route a follow-up names: the route at `index` (`None`: the route of `alerting.slack`) if it still
    /// notifies `receiver` (the configuration may have changed since the follow-up was written).
    pub fn route(&self, index: Option<i32>, receiver: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|route| route.index == index && route.receiver == receiver)
    }

    /// The longest `group_wait` of each route that groups, under its key (`alerting.notify.routes[0].group_wait`).
    pub fn group_waits(&self) -> Vec<(String, Duration)> {
        self.routes
            .iter()
            .filter(|route| route.group_by.is_some())
            .map(|route| {
                let key = route.index.map_or_else(
                    || "alerting.slack".to_owned(),
                    |index| format!("alerting.notify.routes[{index}].group_wait"),
                );
                let longest = Severity::ALL
                    .into_iter()
                    .map(default_group_wait)
                    .max()
                    .unwrap_or_default();
                (key, route.group_wait.unwrap_or(longest))
            })
            .collect()
    }

    /// The fallbacks of the routes whose receiver is `receiver`.
    pub fn fallbacks_of(&self, receiver: &str) -> Vec<Fallback> {
        self.routes
            .iter()
            .filter(|route| route.receiver == receiver)
            .filter_map(|route| {
                Some(Fallback {
                    route: route.index?,
                    config: route.fallback.clone()?,
                })
            })
            .collect()
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

/// Most labels a route's `group_by` names.
pub const MAX_GROUP_BY: usize = 16;

/// Checks a route's `group_by` (under `key`) and says what it groups by: `None` for `['...']`, the names otherwise
/// (unset: [`DEFAULT_GROUP_BY`]).
fn check_group_by(group_by: Option<&[String]>, key: &str) -> Result<Option<Vec<String>>, KeyError> {
    let Some(names) = group_by else {
        return Ok(Some(vec![DEFAULT_GROUP_BY.to_owned()]));
    };
    let key = format!("{key}.group_by");
    if names.iter().any(|name| name == EVERY_LABEL) {
        if names.len() > 1 {
            return Err(KeyError::new(
                key,
                format!("'{EVERY_LABEL}' (every label) stands alone"),
            ));
        }
        return Ok(None);
    }
    if names.len() > MAX_GROUP_BY {
        return Err(KeyError::new(
            key,
            format!("at most {MAX_GROUP_BY} labels, not {}", names.len()),
        ));
    }
    for (at, name) in names.iter().enumerate() {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(KeyError::new(
                format!("{key}[{at}]"),
                format!(
                    "{name:?} is not a label name (letters, digits and '_', at most {MAX_NAME})"
                ),
            ));
        }
        if names[..at].contains(name) {
            return Err(KeyError::new(
                format!("{key}[{at}]"),
                format!("{name:?} is named twice"),
            ));
        }
    }
    Ok(Some(names.to_vec()))
}

/// Checks a route's `fallback` (under `key`): a known receiver other than the route's own, `after` at least
/// [`MIN_FOLLOW_UP`].
fn check_fallback(
    notify: &NotifyConfig,
    fallback: &FallbackConfig,
    receiver: &str,
    key: &str,
) -> Result<(), KeyError> {
    let key = format!("{key}.fallback");
    if !notify.receivers.iter().any(|r| r.name == fallback.receiver) {
        return Err(KeyError::new(
            format!("{key}.receiver"),
            format!("no receiver named {:?}", fallback.receiver),
        ));
    }
    if fallback.receiver == receiver {
        return Err(KeyError::new(
            format!("{key}.receiver"),
            "must be another receiver than the route's own",
        ));
    }
    if fallback.after < MIN_FOLLOW_UP {
        return Err(KeyError::new(
            format!("{key}.after"),
            format!(
                "must be at least {MIN_FOLLOW_UP:?}, not {:?}",
                fallback.after
            ),
        ));
    }
    Ok(())
}

/// Checks a route's `escalation` (under `key`): steps by strictly increasing `after` of at least
/// [`MIN_FOLLOW_UP`], each naming 1 to [`MAX_ESCALATION`] known receivers.
fn check_escalation(
    notify: &NotifyConfig,
    steps: &[EscalationStep],
    key: &str,
) -> Result<(), KeyError> {
    if steps.len() > MAX_ESCALATION {
        return Err(KeyError::new(
            format!("{key}.escalation"),
            format!("at most {MAX_ESCALATION} steps, not {}", steps.len()),
        ));
    }
    let mut previous: Option<Duration> = None;
    for (at, step) in steps.iter().enumerate() {
        let key = format!("{key}.escalation[{at}]");
        if step.after < MIN_FOLLOW_UP {
            return Err(KeyError::new(
                format!("{key}.after"),
                format!("must be at least {MIN_FOLLOW_UP:?}, not {:?}", step.after),
            ));
        }
        if let Some(previous) = previous
            && step.after <= previous
        {
            return Err(KeyError::new(
                format!("{key}.after"),
                format!(
                    "{:?} is not later than the step before ({previous:?}): steps go by increasing after",
                    step.after
                ),
            ));
        }
        previous = Some(step.after);
        if step.receivers.is_empty() || step.receivers.len() > MAX_ESCALATION {
            return Err(KeyError::new(
                format!("{key}.receivers"),
                format!(
                    "1 to {MAX_ESCALATION} receivers, not {}",
                    step.receivers.len()
                ),
            ));
        }
        for (index, name) in step.receivers.iter().enumerate() {
            if !notify.receivers.iter().any(|r| &r.name == name) {
                return Err(KeyError::new(
                    format!("{key}.receivers[{index}]"),
                    format!("no receiver named {name:?}"),
                ));
            }
        }
    }
    Ok(())
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
    fn routes_repeat_by_severity_unless_set_and_escalate_by_steps() {
        let config = parse(&format!(
            "{TWO}routes:\n\
             - matchers: ['namespace=\"prod\"']\n  receiver: team-slack\n  repeat_interval: 30m\n  continue: true\n  \
               escalation:\n  - after: 15m\n    receivers: [hook]\n  - after: 1h\n    receivers: [hook, team-slack]\n\
             - matchers: ['namespace=\"dev\"']\n  receiver: hook\n  repeat_interval: 0s\n\
             - receiver: hook\n"
        ));
        let policy = Policy::new(Some(&config), &SlackConfig::default()).expect("valid");
        let prod = alert(Severity::P3, Some("prod"), &[]);
        let targets = policy.targets(&prod);
        let follow_up = targets[0].follow_up.expect("a follow-up");
        let minutes = |m: i64| Some(prod.created_at + chrono::Duration::minutes(m));
        assert_eq!(follow_up.repeat_at, minutes(30));
        assert_eq!(follow_up.escalate_at, minutes(15));
        assert_eq!(follow_up.due_at(), minutes(15));
        // The route after `continue` repeats by the alert's severity: 4 h for P3.
        assert_eq!(targets[1].receiver, "hook");
        assert_eq!(
            targets[1].follow_up.map(|f| (f.repeat_at, f.escalate_at)),
            Some((Some(prod.created_at + chrono::Duration::hours(4)), None))
        );
        let route = policy.route(Some(0), "team-slack").expect("route 0");
        assert_eq!(route.escalation().len(), 2);
        assert_eq!(route.escalation()[1].receivers, ["hook", "team-slack"]);
        assert!(
            policy.route(Some(0), "hook").is_none(),
            "route 0 does not notify hook"
        );
        // `0s`: never repeated.
        let dev = alert(Severity::P1, Some("dev"), &[]);
        assert_eq!(policy.targets(&dev)[0].follow_up, None);
        // The default route repeats P1 every 2 h.
        let other = alert(Severity::P1, None, &[]);
        assert_eq!(
            policy.targets(&other)[0]
                .follow_up
                .and_then(|f| f.repeat_at),
            Some(other.created_at + chrono::Duration::hours(2))
        );
        // Without alerting.notify, the seed's defaults too.
        let slack = SlackConfig {
            webhook_url: Some("https://hooks.slack.com/services/T/B/x".into()),
            ..SlackConfig::default()
        };
        let implicit = Policy::new(None, &slack).expect("valid");
        let p4 = alert(Severity::P4, None, &[]);
        assert_eq!(
            implicit.targets(&p4)[0].follow_up.and_then(|f| f.repeat_at),
            Some(p4.created_at + chrono::Duration::hours(4))
        );
    }

    #[test]
    fn changes_also_reach_the_escalation_steps_the_alert_reached() {
        let config = parse(&format!(
            "{TWO}routes:\n\
             - receiver: team-slack\n  escalation: [{{after: 10m, receivers: [hook]}}]\n"
        ));
        let policy = Policy::new(Some(&config), &SlackConfig::default()).expect("valid");
        let mut alert = alert(Severity::P1, None, &[]);
        alert.updated_at = alert.created_at + chrono::Duration::minutes(5);
        assert_eq!(
            receivers(&policy.targets_of_change(&alert, true)),
            [("team-slack", Some(0))]
        );
        alert.updated_at = alert.created_at + chrono::Duration::minutes(11);
        assert_eq!(
            receivers(&policy.targets_of_change(&alert, true)),
            [("team-slack", Some(0)), ("hook", Some(0))]
        );
        // Acknowledged after 2 minutes, resolved an hour later: the step was never reached.
        alert.acknowledged_at = Some(alert.created_at + chrono::Duration::minutes(2));
        alert.updated_at = alert.created_at + chrono::Duration::hours(1);
        assert_eq!(
            receivers(&policy.targets_of_change(&alert, true)),
            [("team-slack", Some(0))]
        );
        assert_eq!(
            receivers(&policy.targets(&alert)),
            [("team-slack", Some(0))]
        );
    }

    #[test]
    fn follow_up_errors_name_the_key() {
        let error_of = |routes: &str| {
            Policy::new(
                Some(&parse(&format!("{TWO}routes:\n{routes}"))),
                &SlackConfig::default(),
            )
            .expect_err(routes)
            .to_string()
        };
        let error = error_of("- receiver: hook\n  repeat_interval: 10ms\n");
        assert!(
            error.starts_with("alerting.notify.routes[0].repeat_interval: "),
            "{error}"
        );
        let error = error_of(
            "- receiver: hook\n  escalation: [{after: 10m, receivers: [hook]}, {after: 5m, receivers: [hook]}]\n",
        );
        assert!(
            error.starts_with("alerting.notify.routes[0].escalation[1].after: "),
            "{error}"
        );
        let error = error_of("- receiver: hook\n  escalation: [{after: 10m, receivers: []}]\n");
        assert!(
            error.starts_with("alerting.notify.routes[0].escalation[0].receivers: "),
            "{error}"
        );
        let error =
            error_of("- receiver: hook\n  escalation: [{after: 10m, receivers: [pager]}]\n");
        assert_eq!(
            error,
            "alerting.notify.routes[0].escalation[0].receivers[0]: no receiver named \"pager\""
        );
        let error = error_of("- receiver: hook\n  fallback: {receiver: hook}\n");
        assert_eq!(
            error,
            "alerting.notify.routes[0].fallback.receiver: must be another receiver than the route's own"
        );
        let error = error_of("- receiver: hook\n  fallback: {receiver: pager}\n");
        assert!(
            error.starts_with("alerting.notify.routes[0].fallback.receiver: no receiver"),
            "{error}"
        );
        let error = error_of("- receiver: hook\n  fallback: {receiver: team-slack, after: 0s}\n");
        assert!(
            error.starts_with("alerting.notify.routes[0].fallback.after: "),
            "{error}"
        );
        let fallback = parse(&format!(
            "{TWO}routes:\n- receiver: hook\n  fallback: {{receiver: team-slack}}\n- receiver: team-slack\n"
        ));
        let policy = Policy::new(Some(&fallback), &SlackConfig::default()).expect("valid");
        let fallbacks = policy.fallbacks_of("hook");
        assert_eq!(fallbacks.len(), 1);
        assert_eq!(fallbacks[0].route, 0);
        assert_eq!(fallbacks[0].config.after, Duration::from_secs(300));
        assert!(fallbacks[0].config.deliver_late);
        assert!(policy.fallbacks_of("team-slack").is_empty());
        let error = error_of("- receiver: hook\n  escalation: [{after: 0s, receivers: [hook]}]\n");
        assert!(
            error.starts_with("alerting.notify.routes[0].escalation[0].after: "),
            "{error}"
        );
        assert!(
            yaml_serde::from_str::<NotifyConfig>(
                "routes:\n- receiver: h\n  escalation: [{after: 1m, receivers: [h], colour: red}]\n"
            )
            .is_err()
        );
        assert!(
            yaml_serde::from_str::<NotifyConfig>(
                "routes:\n- receiver: h\n  repeat_interval: soon\n"
            )
            .is_err()
        );
    }

    #[test]
    fn routes_group_by_namespace_unless_told_otherwise() {
        let config = parse(&format!(
            "{TWO}routes:\n\
             - matchers: ['severity=\"P1\"']\n  receiver: team-slack\n  continue: true\n\
             - matchers: ['severity=\"P1\"']\n  receiver: hook\n  group_by: ['...']\n  continue: true\n\
             - receiver: hook\n  group_by: [alertname, pod]\n  group_wait: 30s\n  group_interval: 1m\n"
        ));
        let policy = Policy::new(Some(&config), &SlackConfig::default()).expect("valid");
        let p1 = alert(Severity::P1, Some("prod"), &[("pod", "db-0")]);
        let targets = policy.targets(&p1);
        let group = targets[0].group.as_ref().expect("grouped by default");
        assert_eq!(group.key, "0:{namespace=\"prod\"}");
        assert_eq!(group.wait, Duration::from_secs(5));
        assert_eq!(targets[1].group, None, "'...': each alert alone, at once");
        let p3 = alert(Severity::P3, None, &[("pod", "db-0")]);
        let group = policy.targets(&p3)[0].group.clone().expect("grouped");
        assert_eq!(group.key, "2:{alertname=\"PodCrashLooping\",pod=\"db-0\"}");
        assert_eq!(group.wait, Duration::from_secs(30));
        assert_eq!(
            policy.route_at(Some(2)).map(Route::group_interval),
            Some(Duration::from_secs(60))
        );
        // A resolution goes with its group; an acknowledgement alone.
        assert!(policy.targets_of_change(&p3, true)[0].group.is_some());
        assert!(policy.targets_of_change(&p3, false)[0].group.is_none());
        // A label value of any length makes a key of bounded length, distinct from its neighbours'.
        let long = alert(Severity::P3, None, &[("pod", &"x".repeat(10_000))]);
        let longer = alert(Severity::P3, None, &[("pod", &"x".repeat(10_001))]);
        let key = |alert: &Alert| policy.targets(alert)[0].group.clone().expect("grouped").key;
        assert!(key(&long).len() < MAX_GROUP_KEY + 80, "{}", key(&long));
        assert_ne!(key(&long), key(&longer));
        // The default waits are the seed's; the longest is checked against the lease.
        assert_eq!(
            policy.group_waits(),
            [
                (
                    "alerting.notify.routes[0].group_wait".to_owned(),
                    Duration::from_secs(10)
                ),
                (
                    "alerting.notify.routes[2].group_wait".to_owned(),
                    Duration::from_secs(30)
                ),
            ]
        );
    }

    #[test]
    fn pagerduty_and_the_implicit_slack_route_do_not_group() {
        let config = parse(
            "receivers:\n- name: pager\n  type: pagerduty\n  routing_key: 0123456789abcdef0123456789abcdef\n\
             routes:\n- receiver: pager\n",
        );
        let policy = Policy::new(Some(&config), &SlackConfig::default()).expect("valid");
        let p1 = alert(Severity::P1, Some("prod"), &[]);
        assert_eq!(policy.targets(&p1)[0].group, None);
        let slack = SlackConfig {
            webhook_url: Some("https://hooks.slack.com/services/T/B/x".into()),
            ..SlackConfig::default()
        };
        let policy = Policy::new(None, &slack).expect("valid");
        assert_eq!(policy.targets(&p1)[0].group, None);
        assert!(policy.group_waits().is_empty());
    }

    #[test]
    fn group_by_is_checked() {
        let error_of = |group_by: &str| {
            Policy::new(
                Some(&parse(&format!(
                    "{TWO}routes:\n- receiver: hook\n  group_by: {group_by}\n"
                ))),
                &SlackConfig::default(),
            )
            .expect_err(group_by)
            .to_string()
        };
        assert_eq!(
            error_of("['...', namespace]"),
            "alerting.notify.routes[0].group_by: '...' (every label) stands alone"
        );
        assert!(
            error_of("['a b']")
                .starts_with("alerting.notify.routes[0].group_by[0]: \"a b\" is not a label name")
        );
        assert!(error_of("[pod, pod]").ends_with("\"pod\" is named twice"));
        let many: Vec<String> = (0..17).map(|i| format!("l{i}")).collect();
        assert!(error_of(&format!("[{}]", many.join(", "))).contains("at most 16 labels"));
    }

    #[test]
    fn unknown_keys_and_types_are_refused() {
        for yaml in [
            "receivers:\n- name: h\n  type: webhook\n  url: https://x.example/\n  colour: red\n",
            "receivers:\n- name: h\n  type: carrier-pigeon\n",
            "receivers:\n- name: h\n  type: pagerduty\n  service_key: x\n",
            "receivers:\n- name: h\n  url: https://x.example/\n",
            "routes:\n- receiver: h\n  mute_time_intervals: [weekends]\n",
            "receiver: h\n",
        ] {
            assert!(
                yaml_serde::from_str::<NotifyConfig>(yaml).is_err(),
                "{yaml}"
            );
        }
    }
}
