//! What one message says: a notification read from its outbox row ([`Item`]), and the notifications of a group
//! sent together ([`Batch`]), with the summary every receiver's rendering of a group starts from.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::slack::{Event, event_actor, headline};
use crate::model::{Alert, Notification, Severity, Status};

/// Most alerts a group's Slack message or email lists by name; the others are counted.
pub const MAX_LISTED: usize = 20;

/// One notification as its outbox row keeps it: the alert after the change, what happened, by whom.
#[derive(Clone, Debug)]
pub struct Item {
    /// The outbox row's id.
    pub id: i64,
    /// The alert, as it was after the change.
    pub alert: Alert,
    /// What happened.
    pub event: Event,
    /// Who did it.
    pub actor: Option<String>,
    /// Their note.
    pub note: Option<String>,
}

/// What a notification's payload holds (see [`crate::model::NewNotification::new`]).
#[derive(Deserialize)]
struct Payload {
    alert: Alert,
    actor: Option<String>,
    note: Option<String>,
}

impl Item {
    /// Reads outbox row `row`; the error says why it cannot be sent.
    pub fn of(row: &Notification) -> Result<Item, String> {
        let payload: Payload = serde_json::from_value(row.payload.clone())
            .map_err(|error| format!("unreadable payload: {error}"))?;
        let event: Event = serde_json::from_value(serde_json::Value::String(row.event.clone()))
            .map_err(|_| format!("unknown event {:?}", row.event))?;
        Ok(Item {
            id: row.id,
            alert: payload.alert,
            event,
            actor: payload.actor,
            note: payload.note,
        })
    }

    /// The alert as it is now, as a group's edited message lists it: its state is the event.
    pub fn current(alert: Alert) -> Item {
        let event = match alert.status {
            Status::Resolved => Event::Resolved,
            Status::Acknowledged => Event::Acknowledged,
            _ if alert.assigned_to.is_some() => Event::Assigned,
            _ => Event::Created,
        };
        Item {
            id: 0,
            alert,
            event,
            actor: None,
            note: None,
        }
    }

    /// Who caused the change (see [`event_actor`]).
    pub fn actor(&self) -> Option<&str> {
        event_actor(&self.alert, self.event, self.actor.as_deref())
    }

    /// What the change says of the alert: `FIRING`, `RESOLVED by alice`… (see [`headline`]).
    pub fn headline(&self) -> String {
        headline(&self.alert, self.event, self.actor())
    }

    /// Whether the alert was resolved by then.
    pub fn resolved(&self) -> bool {
        self.alert.status == Status::Resolved
    }
}

/// The notifications of one group to one receiver, sent as one message.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The group's key.
    pub key: String,
    /// The labels the group is made by, with their values.
    pub labels: BTreeMap<String, String>,
    /// Each alert once, in the order it joined the group, as its latest notification of the batch tells it.
    pub items: Vec<Item>,
}

impl Batch {
    /// The batch of `items` (oldest first) in group `key` made by `labels`: an alert notified twice in the batch
    /// (fired, then resolved) appears once, in its latest state.
    pub fn new(key: String, labels: BTreeMap<String, String>, items: Vec<Item>) -> Batch {
        let mut latest: Vec<Item> = Vec::with_capacity(items.len());
        let mut at: std::collections::HashMap<uuid::Uuid, usize> = Default::default();
        for item in items {
            match at.get(&item.alert.id) {
                Some(&index) => latest[index] = item,
                None => {
                    at.insert(item.alert.id, latest.len());
                    latest.push(item);
                }
            }
        }
        Batch {
            key,
            labels,
            items: latest,
        }
    }

    /// How many of its alerts fire and how many are resolved.
    pub fn counts(&self) -> (usize, usize) {
        let resolved = self.items.iter().filter(|item| item.resolved()).count();
        (self.items.len() - resolved, resolved)
    }

    /// The most severe severity among its alerts that still fire (or among all, when none does).
    pub fn severity(&self) -> Severity {
        let most_severe = |resolved: bool| {
            self.items
                .iter()
                .filter(|item| resolved || !item.resolved())
                .map(|item| item.alert.severity)
                .min()
        };
        most_severe(false)
            .or_else(|| most_severe(true))
            .unwrap_or(Severity::P4)
    }

    /// Whether it tells of an alert's first firing (so it opens a conversation rather than continuing one).
    pub fn announces(&self) -> bool {
        self.items.iter().any(|item| item.event == Event::Created)
    }

    /// The first line of the message: `[FIRING:12, RESOLVED:3] namespace="payments"`, as Alertmanager's
    /// templates title a group; `(all)` for a group made by no label.
    pub fn title(&self) -> String {
        let (firing, resolved) = self.counts();
        let counts = match (firing, resolved) {
            (firing, 0) => format!("FIRING:{firing}"),
            (0, resolved) => format!("RESOLVED:{resolved}"),
            (firing, resolved) => format!("FIRING:{firing}, RESOLVED:{resolved}"),
        };
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect();
        let labels = if labels.is_empty() {
            "(all)".to_owned()
        } else {
            labels.join(", ")
        };
        format!("[{counts}] {labels}")
    }

    /// What a message says after the alerts it lists by name (the first `listed`): `…and 980 more (975 firing,
    /// 5 resolved)`; `None` when it lists them all.
    pub fn more(&self, listed: usize) -> Option<String> {
        let rest = self.items.get(listed..).filter(|rest| !rest.is_empty())?;
        let resolved = rest.iter().filter(|item| item.resolved()).count();
        Some(format!(
            "…and {} more ({} firing, {resolved} resolved)",
            rest.len(),
            rest.len() - resolved
        ))
    }
}

/// A batch of `firing` new alerts titled `title` in namespace `payments` and, after them, `resolved` resolved ones,
/// for the renderers' tests.
#[cfg(test)]
pub(crate) fn sample_batch(firing: usize, resolved: usize, title: &str) -> Batch {
    let items = (0..firing + resolved)
        .map(|index| {
            let mut alert = crate::model::NewAlert {
                source: "kubernetes".into(),
                severity: if index % 2 == 0 {
                    Severity::P1
                } else {
                    Severity::P3
                },
                title: title.into(),
                namespace: Some("payments".into()),
                labels: BTreeMap::from([("pod".to_owned(), format!("worker-{index}"))]),
                ..crate::model::NewAlert::default()
            }
            .into_alert(crate::model::now());
            let event = if index < firing {
                Event::Created
            } else {
                alert.status = Status::Resolved;
                Event::Resolved
            };
            Item {
                id: i64::try_from(index).unwrap_or_default() + 1,
                alert,
                event,
                actor: None,
                note: None,
            }
        })
        .collect();
    let labels = BTreeMap::from([("namespace".to_owned(), "payments".to_owned())]);
    Batch::new("0:{namespace=\"payments\"}".into(), labels, items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewAlert;

    fn item(id: i64, alert: &Alert, event: Event) -> Item {
        Item {
            id,
            alert: alert.clone(),
            event,
            actor: None,
            note: None,
        }
    }

    fn alert(severity: Severity, title: &str) -> Alert {
        NewAlert {
            source: "kubernetes".into(),
            severity,
            title: title.into(),
            namespace: Some("payments".into()),
            ..NewAlert::default()
        }
        .into_alert(crate::model::now())
    }

    #[test]
    fn a_batch_names_each_alert_once_in_its_latest_state() {
        let first = alert(Severity::P3, "DiskFilling");
        let second = alert(Severity::P1, "PodCrashLooping");
        let mut resolved = first.clone();
        resolved.status = Status::Resolved;
        let labels = BTreeMap::from([("namespace".to_owned(), "payments".to_owned())]);
        let batch = Batch::new(
            "0:{namespace=\"payments\"}".into(),
            labels,
            vec![
                item(1, &first, Event::Created),
                item(2, &second, Event::Created),
                item(3, &resolved, Event::Resolved),
            ],
        );
        assert_eq!(batch.items.len(), 2);
        assert_eq!(batch.items[0].id, 3);
        assert_eq!(batch.counts(), (1, 1));
        assert_eq!(batch.severity(), Severity::P1);
        assert!(batch.announces());
        assert_eq!(
            batch.title(),
            "[FIRING:1, RESOLVED:1] namespace=\"payments\""
        );
        assert_eq!(batch.more(2), None);
        assert_eq!(
            batch.more(1).as_deref(),
            Some("…and 1 more (1 firing, 0 resolved)")
        );
    }

    #[test]
    fn a_row_that_cannot_be_read_says_why() {
        let row = Notification {
            id: 7,
            alert_id: uuid::Uuid::nil(),
            event: "exploded".into(),
            status: crate::model::NotificationStatus::Pending,
            payload: serde_json::json!({"alert": alert(Severity::P2, "x")}),
            attempts: 0,
            next_attempt_at: crate::model::now(),
            last_error: None,
            created_at: crate::model::now(),
            sent_at: None,
            slack_channel: None,
            slack_ts: None,
            receiver: "slack".into(),
            route: None,
            group_key: None,
        };
        assert_eq!(
            Item::of(&row).expect_err("unknown event"),
            "unknown event \"exploded\""
        );
        let row = Notification {
            payload: serde_json::json!({"alert": 1}),
            ..row
        };
        assert!(
            Item::of(&row)
                .expect_err("bad payload")
                .starts_with("unreadable payload")
        );
    }
}
