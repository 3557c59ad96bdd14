//! What the stand-ins for HTTP receivers (Alertmanager's webhook, PagerDuty's Events API) share: how a valid
//! request is answered ([`Behaviour`]), the record of every request, and the running server ([`StandIn`]), which
//! each stand-in starts with its own routes and checks.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::task::JoinHandle;

/// How a stand-in answers a valid request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// As the real receiver does when it takes it (200 for a webhook, 202 for PagerDuty).
    Accept,
    /// This HTTP status (429 as a rate limit, 5xx as an outage), with a short text body.
    Status(u16),
}

/// One request a stand-in recorded.
pub trait Request: Clone {
    /// The body, parsed (`Value::Null` when it is not JSON).
    fn body(&self) -> &Value;
    /// Why the real receiver would refuse it; empty when it would not.
    fn problems(&self) -> &[String];
    /// Whether it was answered with 2xx.
    fn accepted(&self) -> bool;
}

/// How valid requests are answered now, and every request so far.
pub(crate) struct Inner<R> {
    pub(crate) behaviour: Behaviour,
    pub(crate) received: Vec<R>,
}

/// The state a stand-in's handlers share.
pub(crate) type Shared<R> = Arc<Mutex<Inner<R>>>;

/// A new state: valid requests accepted, none received.
pub(crate) fn shared<R>() -> Shared<R> {
    Arc::new(Mutex::new(Inner {
        behaviour: Behaviour::Accept,
        received: Vec::new(),
    }))
}

pub(crate) fn lock<R>(shared: &Shared<R>) -> MutexGuard<'_, Inner<R>> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running stand-in that records requests of type `R`; stops when dropped.
pub struct StandIn<R> {
    /// Where to send requests.
    pub url: String,
    shared: Shared<R>,
    task: JoinHandle<()>,
}

impl<R> Drop for StandIn<R> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<R: Request> StandIn<R> {
    /// Serves `router` (its handlers holding `shared`) on a free local port; `path` is where requests go.
    pub(crate) async fn serve(
        router: axum::Router,
        shared: Shared<R>,
        path: &str,
        what: &'static str,
    ) -> Self {
        let (address, task) = crate::serve_local(router, what).await;
        StandIn {
            url: format!("http://{address}{path}"),
            shared,
            task,
        }
    }

    /// How valid requests are answered from now on.
    pub fn set(&self, behaviour: Behaviour) {
        lock(&self.shared).behaviour = behaviour;
    }

    /// Every request received, in arrival order.
    pub fn received(&self) -> Vec<R> {
        lock(&self.shared).received.clone()
    }

    /// The bodies of the requests answered with 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(Request::accepted)
            .map(|received| received.body().clone())
            .collect()
    }

    /// The problems of every invalid request received.
    pub fn problems(&self) -> Vec<String> {
        self.received()
            .iter()
            .flat_map(|received| received.problems().to_vec())
            .collect()
    }
}
