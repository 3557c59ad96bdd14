//! The web console in a real browser (Debian's Chromium through ChromeDriver) against the built `gomon alerting`
//! on PostgreSQL, with API tokens and a fake Slack: what a person sees and does, and what the API lets them do.

use std::time::{Duration, Instant};

use gomon_testkit::browser::Browser;
use gomon_testkit::free_port;
use gomon_testkit::slack::FakeSlack;
use serde_json::{Value, json};

use crate::support::{self, Gomon};

const OPERATOR: &str = "op-3f9a-token";
const VIEWER: &str = "view-77c1-token";
const RULES: &str = "ingest-5d2e-token";

/// A `gomon alerting` with three tokens (alice operates, bob reads, the rule engine ingests) and Slack notifications.
struct Service {
    process: Gomon,
    base: String,
    slack: FakeSlack,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Service {
    async fn start() -> Service {
        let dir = tempfile::tempdir().expect("dir");
        let tokens = dir.path().join("tokens.yaml");
        std::fs::write(
            &tokens,
            format!(
                "- {{name: alice, token: {OPERATOR}, access: operate}}\n\
                 - {{name: bob, token: {VIEWER}, access: read}}\n\
                 - {{name: rules, token: {RULES}, access: ingest}}\n"
            ),
        )
        .expect("tokens file");
        let slack = FakeSlack::start().await;
        let port = free_port();
        let mut process = Gomon::start(
            "alerting",
            &dir,
            &[
                ("GOMON_ALERTING__LISTEN", format!("127.0.0.1:{port}")),
                (
                    "GOMON_ALERTING__DATABASE__URL",
                    support::postgres_database(),
                ),
                (
                    "GOMON_ALERTING__AUTH__TOKENS_FILE",
                    tokens.display().to_string(),
                ),
                (
                    "GOMON_ALERTING__SLACK__WEBHOOK_URL",
                    slack.webhook_url.clone(),
                ),
                ("GOMON_ALERTING__OUTBOX__POLL_INTERVAL", "200ms".to_owned()),
            ],
        );
        let base = format!("http://127.0.0.1:{port}");
        support::wait_ready(&mut process, &format!("{base}/health/ready")).await;
        Service {
            process,
            base,
            slack,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// `method path` with `token` and `body`; the status and the JSON answer.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("API call");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post_alert(&self, title: &str, labels: Value) -> String {
        let (status, alert) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/alerts",
                RULES,
                Some(json!({"source": "api", "severity": "P1", "title": title, "namespace": "payments", "labels": labels})),
            )
            .await;
        assert_eq!(status, 201, "{alert}");
        alert["id"].as_str().expect("id").to_owned()
    }

    /// The Slack messages so far whose text contains `needle`.
    fn slack_messages(&self, needle: &str) -> usize {
        self.slack
            .accepted()
            .iter()
            .filter(|message| message.text.contains(needle))
            .count()
    }
}

/// Signs in with `token` on the console of `base` with the keyboard alone (the token field has the focus; Enter
/// submits); waits for the alerts page.
async fn sign_in(browser: &Browser, base: &str, token: &str) {
    browser.goto(&format!("{base}/")).await;
    browser.wait_for("#token", Duration::from_secs(10)).await;
    let focused = browser
        .execute(
            "return document.activeElement && document.activeElement.id",
            json!([]),
        )
        .await;
    assert_eq!(focused, "token", "the token field has the focus");
    let input = browser.wait_for("#token", Duration::from_secs(5)).await;
    browser.fill(&input, &format!("{token}\u{E007}")).await;
    browser
        .wait_for("table#alerts", Duration::from_secs(10))
        .await;
}

const HOSTILE: &str = "Disk full <img src=x onerror=alert(1)><script>alert(2)</script>";

/// An alert created through the API appears within 3 s; its hostile title is text; acknowledging it in the page
/// records alice in the audit trail; a silence made from it in the page mutes the next notification of a matching
/// alert while others are still sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_follows_and_handles_an_alert_in_the_browser() {
    let service = Service::start().await;
    let browser = Browser::start(1280, 900).await;
    sign_in(&browser, &service.base, OPERATOR).await;
    assert!(
        browser.page_text().await.contains("alice (operate)"),
        "the page names the signed-in token and its role"
    );

    // Appears by itself within 3 s, its title as text.
    let posted = Instant::now();
    let id = service
        .post_alert(HOSTILE, json!({"team": "db", "node": "n1"}))
        .await;
    let row = format!("tr[data-id='{id}'] td.title");
    let title = browser
        .wait_for_text(&row, Duration::from_secs(3), |text| !text.is_empty())
        .await;
    let appeared = posted.elapsed();
    assert!(
        appeared < Duration::from_secs(3),
        "appeared after {appeared:?}"
    );
    assert_eq!(title, HOSTILE, "the title is shown as the text it is");
    assert_eq!(
        browser
            .execute(
                "return document.querySelectorAll('#alerts img, #alerts script').length",
                json!([])
            )
            .await,
        json!(0),
        "no element was made from the title"
    );
    assert_eq!(
        browser.dialog_text().await,
        None,
        "no script of the title ran"
    );
    let firing = browser
        .wait_for_text("a[data-count=firing]", Duration::from_secs(5), |text| {
            text.contains('1')
        })
        .await;
    assert!(firing.contains("firing"), "{firing}");
    std::fs::create_dir_all("../../target/screenshots").expect("screenshot folder");
    std::fs::write(
        "../../target/screenshots/console-alerts.png",
        browser.screenshot().await,
    )
    .expect("screenshot");

    // The list redraws every 2 s; a person moving with the keyboard keeps their place.
    let href = format!("#/alerts/{id}");
    browser
        .execute(
            "document.querySelector(`a[href='${arguments[0]}']`).focus()",
            json!([href]),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        browser
            .execute(
                "return document.activeElement.getAttribute('href')",
                json!([])
            )
            .await,
        json!(href),
        "the focus survives a redraw"
    );

    // Acknowledge in the page: the status changes and the audit trail names alice.
    let link = browser
        .wait_for(&format!("{row} a"), Duration::from_secs(5))
        .await;
    browser.click(&link).await;
    let acknowledge = browser
        .wait_for("div[role=group] button.primary", Duration::from_secs(10))
        .await;
    assert_eq!(browser.text(&acknowledge).await, "Acknowledge");
    browser.click(&acknowledge).await;
    browser
        .wait_for_text(
            "#audit li[data-action=acknowledged]",
            Duration::from_secs(5),
            |text| text.contains("acknowledged by alice"),
        )
        .await;
    let (_, stored) = service
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/alerts/{id}"),
            VIEWER,
            None,
        )
        .await;
    assert_eq!(stored["status"], "acknowledged");
    assert_eq!(stored["acknowledged_by"], "alice");

    // Resolving twice is refused: the page says so in words.
    let resolve = browser
        .wait_for(
            "div[role=group] button:not(.primary):not(.danger)",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(browser.text(&resolve).await, "Resolve");
    browser.click(&resolve).await;
    browser
        .wait_for_text("#flash", Duration::from_secs(5), |text| {
            text.contains("Resolve: done")
        })
        .await;
    let (status, _) = service
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/alerts/{id}/resolve"),
            OPERATOR,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 409, "resolving a resolved alert is a conflict");

    // "Silence this": the form holds the alert's labels as matchers and previews what it mutes.
    browser
        .goto(&format!("{}/#/silences/new?alert={id}", service.base))
        .await;
    let comment = browser.wait_for("#comment", Duration::from_secs(10)).await;
    browser
        .wait_for_text("#preview", Duration::from_secs(5), |text| {
            text.contains("would be muted")
        })
        .await;
    let mut names = Vec::new();
    for input in browser.find_all("#matchers input[name=name]").await {
        names.push(browser.value(&input).await);
    }
    names.sort();
    assert_eq!(names, ["alertname", "node", "team"]);
    browser.fill(&comment, "maintenance of n1").await;
    let create = browser
        .wait_for("form button[type=submit]", Duration::from_secs(5))
        .await;
    browser.click(&create).await;
    browser
        .wait_for_text("#flash", Duration::from_secs(5), |text| {
            text.contains("Silence created")
        })
        .await;

    // The next matching alert is stored but not notified; another one is.
    let before = service.slack_messages("Disk full");
    service
        .post_alert(HOSTILE, json!({"team": "db", "node": "n1"}))
        .await;
    service
        .post_alert("Queue backlog on n2", json!({"team": "db", "node": "n2"}))
        .await;
    gomon_testkit::eventually(
        Duration::from_secs(10),
        "the unsilenced alert notified",
        || async { (service.slack_messages("Queue backlog") > 0).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        service.slack_messages("Disk full"),
        before,
        "the silenced alert was not notified"
    );

    // The Notifications page names each row's receiver and each receiver's breaker.
    browser
        .goto(&format!("{}/#/notifications", service.base))
        .await;
    browser
        .wait_for_text(
            "#delivery [data-receiver=slack] h2",
            Duration::from_secs(10),
            |text| text.contains("Receiver: slack (slack)"),
        )
        .await;
    browser
        .wait_for_text("table tbody tr", Duration::from_secs(10), |text| {
            text.contains("slack")
        })
        .await;
    // Each row names the route that chose its receiver (here the one alerting.slack stands for) and its group
    // (none: alerting.slack sends each change alone).
    browser
        .wait_for_text("table thead", Duration::from_secs(10), |text| {
            text.contains("Route") && text.contains("Group")
        })
        .await;
    browser
        .wait_for_text("table tbody tr", Duration::from_secs(10), |text| {
            text.contains("alerting.slack") && text.contains("alone")
        })
        .await;
    // Filtered by a receiver that has none, the outbox is empty; by slack, it is not.
    browser
        .goto(&format!("{}/#/notifications?receiver=pager", service.base))
        .await;
    browser
        .wait_for_text("#n-summary", Duration::from_secs(10), |text| {
            text.starts_with("0 notifications")
        })
        .await;
    let field = browser
        .wait_for("#n-receiver", Duration::from_secs(5))
        .await;
    assert_eq!(browser.value(&field).await, "pager");
    browser
        .goto(&format!("{}/#/notifications?receiver=slack", service.base))
        .await;
    browser
        .wait_for_text("#n-summary", Duration::from_secs(10), |text| {
            !text.starts_with("0 ")
        })
        .await;
    drop(browser);
    let mut process = service.process;
    process.assert_running();
}

/// A read-only token sees the alerts but no action, and the API refuses the actions anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_token_sees_no_actions_and_the_api_refuses_them() {
    let service = Service::start().await;
    let id = service
        .post_alert("Replication lag", json!({"team": "db"}))
        .await;
    let browser = Browser::start(1280, 900).await;
    sign_in(&browser, &service.base, VIEWER).await;
    browser
        .goto(&format!("{}/#/alerts/{id}", service.base))
        .await;
    let notice = browser
        .wait_for("#read-only", Duration::from_secs(10))
        .await;
    assert!(browser.text(&notice).await.contains("Read-only"));
    assert!(
        browser.find_all("div[role=group] button").await.is_empty(),
        "no action button for a read-only token"
    );
    browser.goto(&format!("{}/#/silences", service.base)).await;
    browser
        .wait_for("#sil-active", Duration::from_secs(10))
        .await;
    assert!(
        !browser.page_text().await.contains("New silence"),
        "no silence form for a read-only token"
    );
    for (method, path) in [
        (
            reqwest::Method::PUT,
            format!("/api/v1/alerts/{id}/acknowledge"),
        ),
        (reqwest::Method::PUT, format!("/api/v1/alerts/{id}/resolve")),
        (reqwest::Method::DELETE, format!("/api/v1/alerts/{id}")),
    ] {
        let (status, body) = service
            .call(method.clone(), &path, VIEWER, Some(json!({})))
            .await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    // A wrong token is asked again, in words.
    browser.execute("sessionStorage.clear()", json!([])).await;
    browser.goto(&format!("{}/#/alerts", service.base)).await;
    browser.execute("location.reload()", json!([])).await;
    let input = browser.wait_for("#token", Duration::from_secs(10)).await;
    browser.fill(&input, "not-a-token").await;
    let submit = browser
        .wait_for("form button[type=submit]", Duration::from_secs(5))
        .await;
    browser.click(&submit).await;
    browser
        .wait_for_text("#flash", Duration::from_secs(5), |text| {
            text.contains("not accepted")
        })
        .await;
}

/// The Hosts page of `gomon up` shows this host's CPU, memory, disk and network from its own aggregator, with a
/// sparkline of the last hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_page_of_gomon_up_shows_this_host_with_a_sparkline() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut process = Gomon::start(
        "up",
        &dir,
        &support::up_env(&dir, port, "console-host", &[]),
    );
    let base = format!("http://127.0.0.1:{port}");
    support::wait_ready(&mut process, &format!("{base}/health/ready")).await;
    let browser = Browser::start(1280, 900).await;
    browser.goto(&format!("{base}/#/hosts")).await;
    let host = "section[data-host='console-host']";
    let cpu = browser
        .wait_for_text(
            &format!("{host} [data-metric=cpu] strong"),
            Duration::from_secs(20),
            |text| text.ends_with('%') && !text.starts_with('–'),
        )
        .await;
    let busy: f64 = cpu.trim_end_matches(" %").parse().expect("a percentage");
    assert!((0.0..=100.0).contains(&busy), "{cpu}");
    for metric in ["memory", "disk", "network"] {
        browser
            .wait_for_text(
                &format!("{host} [data-metric={metric}] strong"),
                Duration::from_secs(10),
                |text| !text.starts_with('–'),
            )
            .await;
    }
    // Two points ten seconds apart make a line.
    browser
        .wait_for(
            &format!("{host} [data-metric=cpu] svg polyline"),
            Duration::from_secs(40),
        )
        .await;
    let source = browser
        .wait_for("#hosts-source", Duration::from_secs(5))
        .await;
    assert!(browser.text(&source).await.contains("aggregator"));
    process.assert_running();
}

/// Where the console runs apart from the aggregator, the Hosts page reads VictoriaMetrics' query API; when that is
/// down the page is told so (503), and without a URL it says how to enable it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_api_reads_victoria_metrics_or_says_why_not() {
    let vm = gomon_testkit::VictoriaMetrics::start();
    // Ten minutes of one host, a sample a minute: CPU half idle, memory three quarters used, one ext4 disk 60 %
    // full, 1,000 bytes a second each way on eth0.
    let now = chrono_now();
    let mut lines = String::new();
    for minute in 0..10_i64 {
        let at = (now - (10 - minute) * 60) * 1000;
        let seconds = (minute * 60) as f64;
        for (series, value) in [
            (
                r#"node_cpu_seconds_total{host="db-1",cpu="0",mode="idle"}"#,
                seconds * 0.5,
            ),
            (
                r#"node_cpu_seconds_total{host="db-1",cpu="0",mode="user"}"#,
                seconds * 0.5,
            ),
            (r#"node_memory_MemAvailable_bytes{host="db-1"}"#, 250.0),
            (r#"node_memory_MemTotal_bytes{host="db-1"}"#, 1000.0),
            (
                r#"node_filesystem_avail_bytes{host="db-1",mountpoint="/",fstype="ext4"}"#,
                40.0,
            ),
            (
                r#"node_filesystem_size_bytes{host="db-1",mountpoint="/",fstype="ext4"}"#,
                100.0,
            ),
            (
                r#"node_network_receive_bytes_total{host="db-1",device="eth0"}"#,
                seconds * 1000.0,
            ),
            (
                r#"node_network_transmit_bytes_total{host="db-1",device="eth0"}"#,
                seconds * 1000.0,
            ),
        ] {
            lines.push_str(&format!("{series} {value} {at}\n"));
        }
    }
    let imported = reqwest::Client::new()
        .post(format!("{}/api/v1/import/prometheus", vm.url()))
        .body(lines)
        .send()
        .await
        .expect("import");
    assert!(imported.status().is_success());
    let flushed = reqwest::get(format!("{}/internal/force_flush", vm.url()))
        .await
        .expect("flush");
    assert!(flushed.status().is_success());

    let dir = tempfile::tempdir().expect("dir");
    let start = |metrics_url: Option<String>| {
        let port = free_port();
        let mut env = vec![
            ("GOMON_ALERTING__LISTEN", format!("127.0.0.1:{port}")),
            (
                "GOMON_ALERTING__DATABASE__DATA_DIR",
                dir.path()
                    .join(format!("data-{port}"))
                    .display()
                    .to_string(),
            ),
        ];
        if let Some(url) = metrics_url {
            env.push(("GOMON_ALERTING__CONSOLE__METRICS_URL", url));
        }
        (
            Gomon::start("alerting", &dir, &env),
            format!("http://127.0.0.1:{port}"),
        )
    };
    let hosts = |base: String| async move {
        let response = reqwest::get(format!("{base}/api/v1/hosts"))
            .await
            .expect("hosts");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("JSON"))
    };

    let (mut reading, base) = start(Some(vm.url()));
    support::wait_ready(&mut reading, &format!("{base}/health/ready")).await;
    let answer = gomon_testkit::eventually(Duration::from_secs(20), "db-1 in the hosts", || {
        let hosts = hosts(base.clone());
        async move {
            let (status, answer) = hosts.await;
            (status == 200 && answer["hosts"][0]["cpu"]["now"].is_number()).then_some(answer)
        }
    })
    .await;
    assert_eq!(answer["source"], "query");
    let host = &answer["hosts"][0];
    assert_eq!(host["host"], "db-1");
    let near = |value: &Value, expected: f64| {
        value
            .as_f64()
            .is_some_and(|value| (value - expected).abs() < expected * 0.05 + 1e-9)
    };
    assert!(near(&host["cpu"]["now"], 0.5), "{host}");
    assert!(near(&host["memory"]["now"], 0.75), "{host}");
    assert!(near(&host["disk"]["now"], 0.6), "{host}");
    assert!(near(&host["network"]["now"], 2000.0), "{host}");
    assert!(
        host["cpu"]["points"]
            .as_array()
            .is_some_and(|points| points.len() >= 5),
        "{host}"
    );

    // VictoriaMetrics down: 503 naming it, not an empty page.
    let (mut down, base) = start(Some(format!("http://127.0.0.1:{}", free_port())));
    support::wait_ready(&mut down, &format!("{base}/health/ready")).await;
    let (status, answer) = hosts(base).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|error| error.contains("cannot be reached")),
        "{answer}"
    );

    // Nowhere to read from: the page says how to enable it.
    let (mut none, base) = start(None);
    support::wait_ready(&mut none, &format!("{base}/health/ready")).await;
    let (status, answer) = hosts(base).await;
    assert_eq!(status, 200);
    assert!(answer["source"].is_null());
    assert!(
        answer["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("metrics_url")),
        "{answer}"
    );
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}
