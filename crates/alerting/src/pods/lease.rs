//! Leader election on a Kubernetes Lease (`coordination.k8s.io/v1`), as client-go does it: the holder renews the
//! Lease every `renew_interval`; another replica takes it over once it has seen the same record, unrenewed, for
//! `lease_duration` on its own clock (so the replicas' clocks need not agree). Every write carries the
//! `resourceVersion` it read, so two replicas racing for the Lease cannot both win.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

/// One replica's hold on the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The holder and renew time last read, and when this replica first saw that record.
    observed: Option<(Option<String>, Option<MicroTime>, Instant)>,
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

impl LeaseLock {
    /// A lock on Lease `name` in `api`'s namespace, for `identity`.
    pub fn new(api: Api<Lease>, name: String, identity: String, duration: Duration) -> Self {
        Self {
            api,
            name,
            identity,
            duration,
            observed: None,
        }
    }

    /// Who this replica is in the Lease.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn spec(&self, now: Timestamp, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Takes or renews the Lease. True when this replica holds it afterwards; false when another replica does
    /// (or won a race for it).
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, 0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(error) if is_conflict(&error) => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.identity.as_str());
        if !ours && holder.is_some() {
            let record = (holder.clone(), spec.renew_time.clone());
            let seen_at = match &self.observed {
                Some((h, r, at)) if (h, r) == (&record.0, &record.1) => *at,
                _ => {
                    let at = Instant::now();
                    self.observed = Some((record.0, record.1, at));
                    at
                }
            };
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.duration, Duration::from_secs);
            if seen_at.elapsed() < duration {
                return Ok(false);
            }
            tracing::warn!(lease = %self.name, previous = ?holder, identity = %self.identity,
                "taking over the watcher Lease: its holder stopped renewing it");
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours { spec.acquire_time } else { None };
        lease.spec = Some(self.spec(now, transitions, acquired));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if is_conflict(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Gives the Lease up (on shutdown), so that another replica takes it at once instead of after
    /// `lease_duration`.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(error) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(%error, lease = %self.name, "could not release the watcher Lease");
        }
    }
}
