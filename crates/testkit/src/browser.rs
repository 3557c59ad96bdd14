//! A real browser for the console's tests: Debian's Chromium, headless, driven by Debian's ChromeDriver over the
//! W3C WebDriver protocol (JSON over HTTP, spoken here with reqwest).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::free_port;

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A ChromeDriver process and one headless Chromium session; both end when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts ChromeDriver and a headless Chromium with a fresh profile, its window `width` x `height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        for program in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(program).exists(),
                "{program} is missing: apt-get install chromium chromium-driver (scripts/test.sh installs them)"
            );
        }
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client");
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http
            .get(format!("{root}/status"))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
        {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("browser profile");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let answer: Value = http
            .post(format!("{root}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new WebDriver session")
            .json()
            .await
            .expect("session answer");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        let mut browser = Browser {
            driver,
            base: format!("{root}/session/{session}"),
            http,
            _profile: profile,
        };
        browser.driver_started();
        browser
    }

    fn driver_started(&mut self) {
        assert!(
            self.driver.try_wait().ok().flatten().is_none(),
            "chromedriver exited"
        );
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("WebDriver {method} {path}: {error}"))
            .json()
            .await
            .unwrap_or_else(|error| panic!("WebDriver {method} {path}: {error}"));
        answer["value"].clone()
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        let answer = self
            .call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
        assert!(answer.is_null(), "navigating to {url}: {answer}");
    }

    /// The elements `selector` (CSS) selects now.
    pub async fn find_all(&self, selector: &str) -> Vec<Element> {
        let answer = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": selector})),
            )
            .await;
        answer
            .as_array()
            .map(|elements| {
                elements
                    .iter()
                    .filter_map(|element| element[ELEMENT].as_str())
                    .map(|id| Element(id.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element `selector` selects, waiting up to `limit` for it to appear.
    pub async fn wait_for(&self, selector: &str, limit: Duration) -> Element {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(element) = self.find_all(selector).await.into_iter().next() {
                return element;
            }
            assert!(
                Instant::now() < deadline,
                "{selector} did not appear within {limit:?}; the page shows:\n{}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to `limit` until the text of the first element `selector` selects satisfies `check`; that text.
    pub async fn wait_for_text(
        &self,
        selector: &str,
        limit: Duration,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(element) = self.find_all(selector).await.into_iter().next() {
                let text = self.text(&element).await;
                if check(&text) {
                    return text;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the text of {selector} never became what was expected within {limit:?}; the page shows:\n{}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The rendered text of `element`.
    pub async fn text(&self, element: &Element) -> String {
        self.string(&format!("/element/{}/text", element.0)).await
    }

    /// The current value of `element` (an input, a select or a text area).
    pub async fn value(&self, element: &Element) -> String {
        self.string(&format!("/element/{}/property/value", element.0))
            .await
    }

    /// What `GET path` answers, as text (empty when it is not a string).
    async fn string(&self, path: &str) -> String {
        self.call(reqwest::Method::GET, path, None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The rendered text of the whole page.
    pub async fn page_text(&self) -> String {
        match self.find_all("body").await.into_iter().next() {
            Some(body) => self.text(&body).await,
            None => String::new(),
        }
    }

    /// Clicks `element`.
    pub async fn click(&self, element: &Element) {
        let answer = self
            .call(
                reqwest::Method::POST,
                &format!("/element/{}/click", element.0),
                Some(json!({})),
            )
            .await;
        assert!(answer.is_null(), "click: {answer}");
    }

    /// Clears `element` (an input) and types `text` into it.
    pub async fn fill(&self, element: &Element, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/clear", element.0),
            Some(json!({})),
        )
        .await;
        let answer = self
            .call(
                reqwest::Method::POST,
                &format!("/element/{}/value", element.0),
                Some(json!({ "text": text })),
            )
            .await;
        assert!(answer.is_null(), "typing: {answer}");
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; what it returns.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Accepts the open `confirm` or `alert` dialog.
    pub async fn accept_dialog(&self) {
        self.call(reqwest::Method::POST, "/alert/accept", Some(json!({})))
            .await;
    }

    /// The text of the open dialog, if one is open.
    pub async fn dialog_text(&self) -> Option<String> {
        self.call(reqwest::Method::GET, "/alert/text", None)
            .await
            .as_str()
            .map(str::to_owned)
    }

    /// A PNG screenshot of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let answer = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(answer.as_str().unwrap_or_default())
            .expect("screenshot in base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium runs as ChromeDriver's child: end it first, or it would outlive the test.
        let _ = Command::new("pkill")
            .args(["-TERM", "-P", &self.driver.id().to_string()])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
