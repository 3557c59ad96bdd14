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

/// Signs in with `token` on the console of `base`; waits for the alerts page.
async fn sign_in(browser: &Browser, base: &str, token: &str) {
    browser.goto(&format!("{base}/")).await;
    let input = browser.wait_for("#token", Duration::from_secs(10)).await;
    browser.fill(&input, token).await;
    let submit = browser
        .wait_for("form button[type=submit]", Duration::from_secs(5))
        .await;
    browser.click(&submit).await;
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
