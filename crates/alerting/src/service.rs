//! The alerting core: validation, deduplication, lifecycle and metrics, over a [`Store`].
//!
//! Every way an alert arrives (the REST API today; the pod watcher and webhooks later) goes through here.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{self, Alert, AlertFilter, AlertPage, AuditEntry, Change, NewAlert, Severity};
use crate::store::Store;
use gomon_runtime::metrics::must;

/// The metrics the core keeps; their names are a contract with the dashboards and alert rules.
#[derive(Clone, Debug)]
struct Metrics {
    created: IntCounterVec,
    active: IntGaugeVec,
}

impl Metrics {
    fn new(registry: &Registry) -> Self {
        let created = must(IntCounterVec::new(
            Opts::new(
                "alerting_alerts_created_total",
                "Alerts created (not counting deduplicated repeats).",
            ),
            &["severity", "source"],
        ));
        let active = must(IntGaugeVec::new(
            Opts::new(
                "alerting_active_alerts",
                "Alerts not resolved, by severity, as counted in the store.",
            ),
            &["severity"],
        ));
        must(registry.register(Box::new(created.clone())));
        must(registry.register(Box::new(active.clone())));
        Self { created, active }
    }
}

/// The alerting core. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Alerting {
    store: Store,
    metrics: Metrics,
}

impl Alerting {
    /// The core over `store`, registering its metrics in `registry`.
    pub fn new(store: Store, registry: &Registry) -> Self {
        Self {
            store,
            metrics: Metrics::new(registry),
        }
    }

    /// The store underneath, for health checks and shutdown.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates `new`, or returns the open alert with its fingerprint. The flag is true when it was created.
    pub async fn create(&self, new: NewAlert, actor: Option<String>) -> Result<(Alert, bool)> {
        new.validate()?;
        let alert = new.into_alert(model::now());
        let entry = AuditEntry::new(
            &alert,
            "created",
            actor,
            serde_json::json!({"severity": alert.severity, "source": alert.source}),
        );
        let (alert, created) = self.store.insert_or_get_open(alert, entry).await?;
        if created {
            self.metrics
                .created
                .with_label_values(&[alert.severity.as_str(), alert.source.as_str()])
                .inc();
            tracing::info!(alert_id = %alert.id, severity = %alert.severity, source = %alert.source,
                title = %alert.title, "alert created");
        }
        Ok((alert, created))
    }

    /// The alert with `id`.
    pub async fn get(&self, id: Uuid) -> Result<Alert> {
        self.store.get(id).await?.ok_or(Error::NotFound(id))
    }

    /// The alerts `filter` selects.
    pub async fn list(&self, filter: &AlertFilter) -> Result<AlertPage> {
        self.store.list(filter).await
    }

    /// Applies `change` to alert `id`; `actor` is the caller, recorded when the change names nobody.
    pub async fn change(&self, id: Uuid, change: Change, actor: Option<String>) -> Result<Alert> {
        change.validate()?;
        let alert = self
            .store
            .update(id, |current| change.apply(current, actor, model::now()))
            .await?;
        tracing::info!(alert_id = %alert.id, status = %alert.status, ?change, "alert changed");
        Ok(alert)
    }

    /// Deletes alert `id`; the audit trail keeps a copy of it.
    pub async fn delete(&self, id: Uuid, actor: Option<String>) -> Result<Alert> {
        let alert = self
            .store
            .delete(id, |alert| {
                let mut entry = AuditEntry::new(
                    alert,
                    "deleted",
                    actor,
                    serde_json::to_value(alert).unwrap_or_default(),
                );
                entry.created_at = model::now();
                entry
            })
            .await?;
        tracing::info!(alert_id = %alert.id, "alert deleted");
        Ok(alert)
    }

    /// The audit trail of alert `id`, oldest first; 404 when the alert never existed.
    pub async fn actions(&self, id: Uuid) -> Result<Vec<AuditEntry>> {
        let actions = self.store.actions(id).await?;
        if actions.is_empty() {
            return Err(Error::NotFound(id));
        }
        Ok(actions)
    }

    /// Sets `alerting_active_alerts` from the store's count, so it is true after a restart too.
    pub async fn refresh_gauges(&self) -> Result<()> {
        let counts = self.store.open_by_severity().await?;
        for severity in Severity::ALL {
            let count = counts
                .iter()
                .find(|(s, _)| *s == severity)
                .map_or(0, |(_, count)| *count);
            self.metrics
                .active
                .with_label_values(&[severity.as_str()])
                .set(count);
        }
        Ok(())
    }
}
