//! A fake Kubernetes API server on a free local port, speaking the real list and watch protocol for pods (and
//! get/create/replace for Leases), since no API server can run here:
//!
//! - `GET /api/v1/namespaces/{ns}/pods` and `GET /api/v1/pods` list pods as a `PodList` with the current
//!   `metadata.resourceVersion`;
//! - the same with `watch=1` stream `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}` lines (newline
//!   delimited JSON) from the `resourceVersion` asked for, then live; a `resourceVersion` older than the last
//!   [`FakeKube::expire`] is answered with an `ERROR` event carrying a `410 Gone` Status, as a real API server does
//!   when its watch cache no longer has it; `BOOKMARK`s only to watches that asked (`allowWatchBookmarks`);
//! - `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]`: GET, POST and PUT with optimistic concurrency
//!   on `resourceVersion` (409 on a stale one).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One change to a pod, as the watch stream sends it.
#[derive(Clone, Debug)]
struct Change {
    version: u64,
    kind: &'static str,
    object: Value,
}

struct Watch {
    namespace: Option<String>,
    /// Asked for bookmarks (`allowWatchBookmarks=true`).
    bookmarks: bool,
    lines: mpsc::UnboundedSender<Result<Bytes, Infallible>>,
}

#[derive(Default)]
struct Inner {
    version: u64,
    /// Pods by (namespace, name).
    pods: BTreeMap<(String, String), Value>,
    /// Every change, for watches resuming from a resourceVersion.
    changes: Vec<Change>,
    /// Watches from a version below this are answered 410 Gone.
    expired_below: u64,
    watches: Vec<Watch>,
    /// Watches kept open that are sent nothing more.
    silenced: Vec<Watch>,
    leases: HashMap<(String, String), Value>,
    lists: u64,
    watch_requests: u64,
    fail_requests: bool,
    /// Lists wait while true.
    lists_held: bool,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

fn gone(version: u64, current: u64) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {version} ({current})"),
        "reason": "Expired", "code": 410
    })
}

fn namespace_of(object: &Value) -> String {
    object["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The running fake; stops when dropped.
pub(crate) struct FakeKube {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Shared,
    task: JoinHandle<()>,
    bookmarks: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(task) = self.bookmarks.lock().ok().and_then(|mut task| task.take()) {
            task.abort();
        }
    }
}

impl FakeKube {
    pub(crate) async fn start() -> FakeKube {
        let shared = Shared::default();
        let router = Router::new()
            .route("/api/v1/pods", get(all_pods))
            .route("/api/v1/namespaces/{namespace}/pods", get(namespace_pods))
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
                axum::routing::post(create_lease),
            )
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}",
                get(get_lease).put(replace_lease),
            )
            .with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake API server");
        let address = listener.local_addr().expect("fake API server address");
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                eprintln!("fake API server stopped: {error}");
            }
        });
        FakeKube {
            url: format!("http://{address}"),
            shared,
            task,
            bookmarks: Mutex::new(None),
        }
    }

    /// A kubeconfig file in `dir` pointing at this server, with `monitoring` as the default namespace.
    pub(crate) fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: watcher\n  \
             user:\n    token: test-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: watcher\n    \
             namespace: monitoring\ncurrent-context: fake\n",
            self.url
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    fn record(&self, kind: &'static str, mut object: Value) {
        let mut inner = lock(&self.shared);
        inner.version += 1;
        let version = inner.version;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let key = (
            namespace_of(&object),
            object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        if kind == "DELETED" {
            inner.pods.remove(&key);
        } else {
            inner.pods.insert(key.clone(), object.clone());
        }
        inner.changes.push(Change {
            version,
            kind,
            object: object.clone(),
        });
        let bytes = line(kind, &object);
        inner.watches.retain(|watch| {
            if watch.namespace.as_ref().is_some_and(|n| *n != key.0) {
                return !watch.lines.is_closed();
            }
            watch.lines.send(Ok(bytes.clone())).is_ok()
        });
    }

    /// Creates or changes a pod: `ADDED` or `MODIFIED` to the watches.
    pub(crate) fn put(&self, pod: Value) {
        let key = (
            namespace_of(&pod),
            pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        let exists = lock(&self.shared).pods.contains_key(&key);
        self.record(if exists { "MODIFIED" } else { "ADDED" }, pod);
    }

    /// Creates or changes a pod without telling the watches (a change they will only learn from a re-list).
    pub(crate) fn put_silently(&self, mut pod: Value) {
        let mut inner = lock(&self.shared);
        inner.version += 1;
        pod["metadata"]["resourceVersion"] = json!(inner.version.to_string());
        let key = (
            namespace_of(&pod),
            pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        inner.pods.insert(key, pod);
    }

    /// Deletes a pod: `DELETED` to the watches.
    #[allow(dead_code)] // No test deletes a pod yet; the fake speaks the whole watch protocol.
    pub(crate) fn delete(&self, namespace: &str, name: &str) {
        let pod = lock(&self.shared)
            .pods
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned();
        if let Some(pod) = pod {
            self.record("DELETED", pod);
        }
    }

    /// Sends a `BOOKMARK` with the current resourceVersion to every watch that asked for bookmarks.
    pub(crate) fn bookmark(&self) {
        bookmark(&self.shared);
    }

    /// Sends bookmarks every `period` from now on, as a real API server does (about every minute).
    pub(crate) fn bookmark_every(&self, period: std::time::Duration) {
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            loop {
                interval.tick().await;
                bookmark(&shared);
            }
        });
        if let Ok(mut slot) = self.bookmarks.lock()
            && let Some(previous) = slot.replace(task)
        {
            previous.abort();
        }
    }

    /// The watches open now stay open but are sent nothing more, bookmarks included (a proxy or NAT entry that
    /// died without closing the connection). Watches opened later are served as usual.
    pub(crate) fn silence_watches(&self) {
        let mut inner = lock(&self.shared);
        let watches: Vec<Watch> = inner.watches.drain(..).collect();
        inner.silenced.extend(watches);
    }

    /// Silenced watch connections the client has not closed.
    pub(crate) fn silenced_open(&self) -> usize {
        let mut inner = lock(&self.shared);
        inner.silenced.retain(|watch| !watch.lines.is_closed());
        inner.silenced.len()
    }

    /// While true, lists (not watches) wait without answering.
    pub(crate) fn hold_lists(&self, hold: bool) {
        lock(&self.shared).lists_held = hold;
    }

    /// Forgets the history: every open watch gets an `ERROR` event with `410 Gone` and is closed, and resuming
    /// from any version seen so far is answered the same way, so the watcher must list again.
    pub(crate) fn expire(&self) {
        let mut inner = lock(&self.shared);
        inner.version += 1;
        inner.expired_below = inner.version;
        inner.changes.clear();
        let bytes = line("ERROR", &gone(inner.version - 1, inner.version));
        for watch in inner.watches.drain(..) {
            let _ = watch.lines.send(Ok(bytes.clone()));
        }
    }

    /// Closes every open watch connection, as a proxy or the API server timing out would.
    pub(crate) fn drop_watches(&self) {
        lock(&self.shared).watches.clear();
    }

    /// While true, every request is answered 503 (the API server is unreachable behind its load balancer).
    pub(crate) fn fail_requests(&self, fail: bool) {
        lock(&self.shared).fail_requests = fail;
    }

    /// Lists served so far.
    pub(crate) fn lists(&self) -> u64 {
        lock(&self.shared).lists
    }

    /// Watch requests served so far.
    pub(crate) fn watch_requests(&self) -> u64 {
        lock(&self.shared).watch_requests
    }

    /// Open watch connections.
    pub(crate) fn open_watches(&self) -> usize {
        let mut inner = lock(&self.shared);
        inner.watches.retain(|watch| !watch.lines.is_closed());
        inner.watches.len()
    }

    /// The Lease `namespace/name`, if any.
    pub(crate) fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.shared)
            .leases
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "the server is currently unable to handle the request", "reason": "ServiceUnavailable",
            "code": 503})),
    )
        .into_response()
}

fn bookmark(shared: &Shared) {
    let mut inner = lock(shared);
    let bookmark = json!({"kind": "Pod", "apiVersion": "v1",
        "metadata": {"resourceVersion": inner.version.to_string()}});
    let bytes = line("BOOKMARK", &bookmark);
    inner.watches.retain(|watch| {
        if !watch.bookmarks {
            return !watch.lines.is_closed();
        }
        watch.lines.send(Ok(bytes.clone())).is_ok()
    });
}

fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    query.get(name).is_some_and(|v| v == "1" || v == "true")
}

async fn all_pods(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    pods(shared, None, query).await
}

async fn namespace_pods(
    State(shared): State<Shared>,
    Path(namespace): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    pods(shared, Some(namespace), query).await
}

async fn pods(
    shared: Shared,
    namespace: Option<String>,
    query: HashMap<String, String>,
) -> Response {
    let watching = flag(&query, "watch");
    while !watching && lock(&shared).lists_held {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut inner = lock(&shared);
    if inner.fail_requests {
        return unavailable();
    }
    if !watching {
        inner.lists += 1;
        let items: Vec<Value> = inner
            .pods
            .iter()
            .filter(|((ns, _), _)| namespace.as_ref().is_none_or(|n| n == ns))
            .map(|(_, pod)| pod.clone())
            .collect();
        let list = json!({"kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": inner.version.to_string()}, "items": items});
        return axum::Json(list).into_response();
    }
    inner.watch_requests += 1;
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (lines, receiver) = mpsc::unbounded_channel();
    if from < inner.expired_below {
        let _ = lines.send(Ok(line("ERROR", &gone(from, inner.version))));
        drop(lines);
    } else {
        for change in &inner.changes {
            let in_namespace = namespace
                .as_ref()
                .is_none_or(|n| *n == namespace_of(&change.object));
            if change.version > from && in_namespace {
                let _ = lines.send(Ok(line(change.kind, &change.object)));
            }
        }
        inner.watches.push(Watch {
            namespace,
            bookmarks: flag(&query, "allowWatchBookmarks"),
            lines,
        });
    }
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code.as_u16()}),
        ),
    )
        .into_response()
}

async fn get_lease(
    State(shared): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let inner = lock(&shared);
    if inner.fail_requests {
        return unavailable();
    }
    match inner.leases.get(&(namespace, name.clone())) {
        Some(lease) => axum::Json(lease.clone()).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("leases.coordination.k8s.io \"{name}\" not found"),
        ),
    }
}

async fn create_lease(
    State(shared): State<Shared>,
    Path(namespace): Path<String>,
    axum::Json(mut lease): axum::Json<Value>,
) -> Response {
    let mut inner = lock(&shared);
    if inner.fail_requests {
        return unavailable();
    }
    let name = lease["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let key = (namespace.clone(), name.clone());
    if inner.leases.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("leases.coordination.k8s.io \"{name}\" already exists"),
        );
    }
    inner.version += 1;
    lease["apiVersion"] = json!("coordination.k8s.io/v1");
    lease["kind"] = json!("Lease");
    lease["metadata"]["namespace"] = json!(namespace);
    lease["metadata"]["resourceVersion"] = json!(inner.version.to_string());
    inner.leases.insert(key, lease.clone());
    (StatusCode::CREATED, axum::Json(lease)).into_response()
}

async fn replace_lease(
    State(shared): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    axum::Json(mut lease): axum::Json<Value>,
) -> Response {
    let mut inner = lock(&shared);
    if inner.fail_requests {
        return unavailable();
    }
    let key = (namespace, name.clone());
    let Some(current) = inner.leases.get(&key) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("leases.coordination.k8s.io \"{name}\" not found"),
        );
    };
    if lease["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been \
                 modified; please apply your changes to the latest version and try again"
            ),
        );
    }
    inner.version += 1;
    lease["apiVersion"] = json!("coordination.k8s.io/v1");
    lease["kind"] = json!("Lease");
    lease["metadata"]["resourceVersion"] = json!(inner.version.to_string());
    inner.leases.insert(key, lease.clone());
    axum::Json(lease).into_response()
}

/// A pod fixture (`tests/fixtures/pods/<name>.json`).
pub(crate) fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/pods/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{path}: {error}"))
}
