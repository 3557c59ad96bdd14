//! Real systems for integration tests, started on free loopback ports in temporary directories and stopped when
//! dropped: a Kafka-protocol broker ([`Broker`], tansu in memory; [`tls::TlsBroker`] behind stunnel for TLS),
//! [`VictoriaMetrics`] and [`Prometheus`]; and a fake Slack
//! ([`slack::FakeSlack`]) speaking Slack's webhook and Web API wire formats, a receiver of Alertmanager's webhook
//! payload ([`webhook::WebhookReceiver`]) that checks it strictly, and an OTLP/HTTP trace receiver
//! ([`otlp::OtlpReceiver`]); a TCP [`proxy::Proxy`] that cuts or freezes the way to a real server.
//!
//! A missing program is a test failure with the command that installs it, never a skip; `scripts/test.sh`
//! installs them all.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

pub mod browser;
pub mod otlp;
pub mod pagerduty;
pub mod postgres;
pub mod proxy;
pub mod slack;
pub mod smtp;
pub mod stand_in;
pub mod tls;
pub mod webhook;

/// The value of `series` (a metric name, with its labels as rendered: `name{label="value"}`) on the Prometheus
/// text page at `url`; `None` when the page cannot be fetched or has no such series.
pub async fn metric(url: &str, series: &str) -> Option<f64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Serves `router` on a free loopback port on the calling test's runtime: its address, and the task (abort it to
/// stop). `what` names the server in the message printed if it stops with an error.
pub async fn serve_local(
    router: axum::Router,
    what: &'static str,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|error| panic!("bind the {what}: {error}"));
    let address = listener
        .local_addr()
        .unwrap_or_else(|error| panic!("the {what}'s address: {error}"));
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            eprintln!("{what} stopped: {error}");
        }
    });
    (address, task)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port")
}

/// Waits until something listens on `port`.
fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A tansu broker storing in memory; killed on drop. Its topics are gone when it stops.
pub struct Broker {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker on a free port.
    pub fn start() -> Broker {
        Broker::start_on(free_port())
    }

    /// Starts a broker on `port`.
    pub fn start_on(port: u16) -> Broker {
        Broker::start_advertising(port, port)
    }

    /// Starts a broker listening on `port` that names `advertised` as its address in metadata (a proxy's port:
    /// clients then reach it only through the proxy).
    pub fn start_advertising(port: u16, advertised: u16) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised}");
        let child = Command::new(std::env::var("TANSU").unwrap_or_else(|_| "tansu".to_owned()))
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu is required (cargo install tansu --features dynostore; scripts/test.sh installs it)");
        wait_listening(port, "tansu");
        Broker {
            port,
            child: Some(child),
        }
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A producer to this broker, with the client's defaults.
    pub fn producer(&self) -> rdkafka::producer::FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.address())
            .create()
            .expect("producer")
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.address());
        create_topic(config, topic, partitions).await;
    }
}

/// Creates `topic` with `partitions` partitions through an admin client of `config`.
async fn create_topic(config: ClientConfig, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = config.create().expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topic");
    for result in results {
        result.expect("topic created");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A VictoriaMetrics single-node server with deduplication on (`-dedup.minScrapeInterval=1ms`, so a replayed
/// sample with the same series and timestamp is stored once); stopped on drop. It can be stopped and started
/// again on the same port and data.
pub struct VictoriaMetrics {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl VictoriaMetrics {
    /// Starts a server on a free port in a new temporary directory.
    pub fn start() -> VictoriaMetrics {
        let mut server = VictoriaMetrics {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        server.resume();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the stopped server again, on the same port and data.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let program =
            std::env::var("VICTORIA_METRICS").unwrap_or_else(|_| "victoria-metrics".to_owned());
        let log = std::fs::File::create(self.dir.path().join("log")).expect("log file");
        let child = Command::new(&program)
            .arg(format!("-storageDataPath={}", self.data().display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg("-dedup.minScrapeInterval=1ms")
            .arg("-search.latencyOffset=0s")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("victoria-metrics is required (apt-get install victoria-metrics; scripts/test.sh installs it)");
        self.child = Some(child);
        wait_listening(self.port, "victoria-metrics");
    }

    /// Stops the server as an orchestrator does (SIGTERM, then waits): it flushes what it accepted. (A SIGKILL loses
    /// its last second of accepted samples, which no client can tell.)
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let terminated = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .is_ok_and(|status| status.success());
            if !terminated {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its remote write URL.
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.url())
    }

    /// Every series matching `selector` with its samples, as `/api/v1/export` gives them (after a forced flush).
    pub async fn export(&self, selector: &str) -> Vec<Exported> {
        let client = reqwest::Client::new();
        let _ = client
            .get(format!("{}/internal/force_flush", self.url()))
            .send()
            .await;
        let text = client
            .get(format!("{}/api/v1/export", self.url()))
            .query(&[("match[]", selector)])
            .send()
            .await
            .expect("export")
            .error_for_status()
            .expect("export status")
            .text()
            .await
            .expect("export body");
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).expect("export line");
                let labels = value["metric"]
                    .as_object()
                    .expect("metric")
                    .iter()
                    .map(|(name, value)| {
                        (name.clone(), value.as_str().unwrap_or_default().to_owned())
                    })
                    .collect();
                let values = value["values"]
                    .as_array()
                    .expect("values")
                    .iter()
                    .map(|v| v.as_f64().expect("number"))
                    .collect();
                let timestamps = value["timestamps"]
                    .as_array()
                    .expect("timestamps")
                    .iter()
                    .map(|t| t.as_i64().expect("timestamp"))
                    .collect();
                Exported {
                    labels,
                    values,
                    timestamps,
                }
            })
            .collect()
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A Prometheus server (Debian's `prometheus`) with the remote write receiver on, scraping what `scrape_configs`
/// (YAML, the items of that list, indented; empty for none) says every second; killed on drop.
pub struct Prometheus {
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Prometheus {
    /// Starts a server on a free port and waits until it is ready.
    pub async fn start(scrape_configs: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(
            &config_file,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}\n",
                if scrape_configs.trim().is_empty() {
                    "  []"
                } else {
                    scrape_configs
                }
            ),
        )
        .expect("config");
        let port = free_port();
        let child = Command::new(
            std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".to_owned()),
        )
        .arg(format!("--config.file={}", config_file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is required (apt-get install prometheus; scripts/test.sh installs it)");
        let server = Prometheus {
            port,
            _dir: dir,
            child: Some(child),
        };
        let ready = format!("{}/-/ready", server.url());
        eventually(Duration::from_secs(30), "Prometheus ready", || async {
            let answer = reqwest::get(&ready).await.ok()?;
            answer.status().is_success().then_some(())
        })
        .await;
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `data.result` of the instant query `promql` at `time_ms` (now when `None`); empty on any failure.
    pub async fn query(&self, promql: &str, time_ms: Option<i64>) -> Vec<serde_json::Value> {
        let mut query = vec![("query", promql.to_owned())];
        if let Some(time_ms) = time_ms {
            query.push(("time", format!("{}", time_ms as f64 / 1000.0)));
        }
        let answer: Option<serde_json::Value> = async {
            reqwest::Client::new()
                .get(format!("{}/api/v1/query", self.url()))
                .query(&query)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()
        }
        .await;
        answer
            .and_then(|answer| answer["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// One series of an export.
#[derive(Clone, Debug, PartialEq)]
pub struct Exported {
    /// Its labels, `__name__` included, sorted by name.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Values, in timestamp order.
    pub values: Vec<f64>,
    /// Timestamps in milliseconds.
    pub timestamps: Vec<i64>,
}

/// Polls `check` every 100 ms until it returns `Some`, or fails with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Holds `count` connections to `address` (`127.0.0.1:PORT`) that send half a request line and nothing more, as a
/// slow or hostile client would; returns once each has been closed by the server or `within` has passed, with how
/// many were closed.
pub async fn slow_clients_closed(address: &str, count: usize, within: Duration) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..count {
        let address = address.to_owned();
        clients.spawn(async move {
            let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await else {
                return false;
            };
            if stream.write_all(b"GET /health/li").await.is_err() {
                return true;
            }
            let mut buffer = [0u8; 256];
            let deadline = tokio::time::Instant::now() + within;
            loop {
                match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
                    // Closed (an answer such as 408 before the close is fine too).
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    Ok(Ok(_)) => continue,
                    Err(_) => return false,
                }
            }
        });
    }
    let mut closed = 0;
    while let Some(result) = clients.join_next().await {
        if result.unwrap_or(false) {
            closed += 1;
        }
    }
    closed
}
