//! Test harness: the alerting API served on a free local port over a fresh SQLite file or a fresh PostgreSQL
//! database (on the server `scripts/test.sh` starts and names in `TEST_POSTGRES_URL`).

/// Runs each listed test once per backend: `mod sqlite { ... }` and `mod postgres { ... }` calling
/// `$name(Backend::Sqlite)` and `$name(Backend::Postgres)` of the test module.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
    };
}

use std::sync::Arc;
use std::time::Duration;

use gomon_alerting::api::{self, ApiToken, Auth};
use gomon_alerting::store::DatabaseConfig;
use gomon_alerting::{AlertService, Store};
use gomon_runtime::http::SharedListener;
use gomon_runtime::shutdown::{Shutdown, Trigger};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server the tests use; a test fails (never skips) without one.
pub(crate) fn postgres_server() -> String {
    std::env::var("TEST_POSTGRES_URL").expect(
        "TEST_POSTGRES_URL is not set: run the tests through scripts/test.sh, which starts PostgreSQL",
    )
}

/// A database of the test's own: a new SQLite directory, or a new PostgreSQL database.
pub(crate) struct Database {
    pub config: DatabaseConfig,
    _dir: TempDir,
}

impl Database {
    pub(crate) async fn new(backend: Backend) -> Database {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = DatabaseConfig {
            data_dir: dir.path().to_path_buf(),
            max_connections: 4,
            acquire_timeout: Duration::from_secs(2),
            ..DatabaseConfig::default()
        };
        if let Backend::Postgres = backend {
            let server = postgres_server();
            let name = format!("t_{}", uuid::Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&format!("{server}/postgres"))
                .await
                .expect("connect to the test PostgreSQL server");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .expect("create test database");
            admin.close().await;
            config.url = Some(format!("{server}/{name}").into());
        }
        Database { config, _dir: dir }
    }

    /// The URL of this PostgreSQL database (panics on SQLite).
    pub(crate) fn postgres_url(&self) -> String {
        self.config
            .url
            .clone()
            .expect("a PostgreSQL database")
            .expose()
            .to_owned()
    }

    /// A proxy in front of this PostgreSQL database, and a configuration reaching it through the proxy, waiting 1 s
    /// for a connection: `proxy.cut()` makes an outage.
    pub(crate) async fn behind_proxy(&self) -> (gomon_testkit::proxy::Proxy, DatabaseConfig) {
        let url = self.postgres_url();
        let address = url
            .trim_start_matches("postgres://")
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("host:port")
            .to_owned();
        let proxy = gomon_testkit::proxy::Proxy::start(address.clone()).await;
        let mut config = self.config.clone();
        config.url = Some(
            url.replace(&address, &format!("127.0.0.1:{}", proxy.port))
                .into(),
        );
        config.acquire_timeout = Duration::from_secs(1);
        (proxy, config)
    }
}

/// A running alerting API.
pub(crate) struct Server {
    pub base: String,
    pub client: reqwest::Client,
    store: Option<Store>,
    trigger: Trigger,
    task: JoinHandle<()>,
    service: Option<tokio::task::AbortHandle>,
}

impl Server {
    /// Serves the API over `config`'s database with `tokens`.
    pub(crate) async fn start(config: &DatabaseConfig, tokens: Vec<ApiToken>) -> Server {
        Self::start_with_timeout(config, tokens, Duration::from_secs(30)).await
    }

    /// Serves the API answering 408 to requests that take longer than `request_timeout`.
    pub(crate) async fn start_with_timeout(
        config: &DatabaseConfig,
        tokens: Vec<ApiToken>,
        request_timeout: Duration,
    ) -> Server {
        let store = Store::open(config).await.expect("open store");
        let registry = gomon_runtime::metrics::registry();
        let service = AlertService::new(store.clone(), &registry);
        let router = api::router(
            service.clone(),
            registry.clone(),
            Auth::new(tokens),
            request_timeout,
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (trigger, shutdown) = Shutdown::new();
        // The expiry sweep, often, so that tests of alerts past their endsAt need not wait long.
        tokio::spawn(gomon_alerting::sweep_expired(
            service,
            Duration::from_millis(200),
            shutdown.clone(),
        ));
        let task = tokio::spawn(async move {
            gomon_runtime::http::serve(
                SharedListener(Arc::new(listener)),
                router,
                shutdown,
                gomon_runtime::http::ListenerConfig::default(),
            )
            .await
            .expect("serve");
        });
        Server {
            base,
            client: reqwest::Client::new(),
            store: Some(store),
            trigger,
            task,
            service: None,
        }
    }

    /// Runs the whole service as `gomon alerting` does (`gomon_alerting::run`: store, API, outbox dispatcher)
    /// on a free local port, and waits until it is ready.
    pub(crate) async fn start_service(mut config: gomon_alerting::Config) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        config.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        let registry = gomon_runtime::metrics::registry();
        let (trigger, shutdown) = Shutdown::new();
        let service = tokio::spawn(gomon_alerting::run(config, registry.clone(), shutdown));
        let abort = service.abort_handle();
        let task = tokio::spawn(async move {
            match service.await {
                Ok(result) => result.expect("service"),
                Err(error) => assert!(error.is_cancelled(), "service task: {error}"),
            }
        });
        let server = Server {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            store: None,
            trigger,
            task,
            service: Some(abort),
        };
        for _ in 0..200 {
            let response = server.client.get(server.url("/health/ready")).send().await;
            if response.is_ok_and(|response| response.status().is_success()) {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the service did not become ready");
    }

    /// Stops serving (the dispatcher finishes its delivery under way) and closes the store.
    pub(crate) async fn stop(self) {
        self.trigger.fire();
        self.task.await.expect("server task");
        if let Some(store) = self.store {
            store.close().await;
        }
    }

    /// Kills the service at once, as a crash would: nothing is finished or recorded.
    pub(crate) fn kill(self) {
        if let Some(service) = self.service {
            service.abort();
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs `body` as JSON to `path`; returns status and parsed body.
    pub(crate) async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST");
        read(response).await
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        read(response).await
    }

    /// PUT with no body and no content type, as the seed's curl calls send.
    pub(crate) async fn put_empty(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.client.put(self.url(path)).send().await.expect("PUT");
        read(response).await
    }

    pub(crate) async fn put(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = self
            .client
            .put(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("PUT");
        read(response).await
    }

    pub(crate) async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }
}

/// Status and JSON body (Null when empty).
pub(crate) async fn read(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("non-JSON body {text:?}: {error}"))
    };
    (status, body)
}

/// Posts a new alert from source `api` to `/api/v1/alerts` (201 expected); its id.
pub(crate) async fn post_alert(server: &Server, severity: &str, title: &str) -> String {
    let (status, body) = server
        .post(
            "/api/v1/alerts",
            serde_json::json!({"source": "api", "severity": severity, "title": title}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("id").to_owned()
}

/// A minimal alert body.
pub(crate) fn alert(title: &str) -> serde_json::Value {
    serde_json::json!({"source": "api", "severity": "P2", "title": title})
}

pub(crate) mod kube;

/// POSTs `body` to `path` until it answers `status` (within 10 s); fails otherwise.
pub(crate) async fn eventually_status(
    server: &Server,
    path: &str,
    body: serde_json::Value,
    status: u16,
) {
    let mut last = (0, serde_json::Value::Null);
    for _ in 0..100 {
        last = server.post(path, body.clone()).await;
        if last.0 == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("POST {path} never answered {status}; last {last:?}");
}

/// The service over `store` with the notification policy of a Slack webhook taking every severity (receiver
/// `slack`), for tests that drive the service without its dispatchers.
pub(crate) fn notifying_to_slack(store: &gomon_alerting::Store) -> gomon_alerting::AlertService {
    let slack = gomon_alerting::notify::slack::SlackConfig {
        webhook_url: Some("http://127.0.0.1:9/hook".into()),
        ..Default::default()
    };
    let policy = gomon_alerting::notify::policy::Policy::new(None, &slack).expect("a valid policy");
    gomon_alerting::AlertService::new(store.clone(), &gomon_runtime::metrics::registry())
        .with_notifications(gomon_alerting::service::Notifications::new(
            policy,
            vec![std::sync::Arc::new(tokio::sync::Notify::new())],
        ))
}
