//! The console under load, in headless Chromium: `gomon alerting` (release build) on PostgreSQL with OPEN open alerts
//! (default 10,000), the alerts page opened RUNS times (default 5). Reports the time from navigation to the first
//! page of rows drawn (the page's own `performance` clock), to the page being interactive, the API calls the page
//! makes, and the assets' weight. Targets: interactive under 1 s, assets under 300 KB.
//!
//! Run by `scripts/bench-console.sh`, which starts PostgreSQL and builds the release binary.

use std::time::{Duration, Instant};

use gomon_testkit::browser::Browser;
use gomon_testkit::free_port;
use serde_json::{Value, json};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[index]
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let open = env_number("OPEN", 10_000);
    let runs = env_number("RUNS", 5);
    let database = std::env::var("BENCH_DATABASE_URL")
        .expect("BENCH_DATABASE_URL: run scripts/bench-console.sh, which starts PostgreSQL");
    let binary =
        std::env::var("BENCH_GOMON_BINARY").expect("BENCH_GOMON_BINARY: the release gomon");
    let port = free_port();
    let dir = tempfile::tempdir().expect("dir");
    let gomon = std::process::Command::new(binary)
        .arg("alerting")
        .env("GOMON_ALERTING__LISTEN", format!("127.0.0.1:{port}"))
        .env("GOMON_ALERTING__DATABASE__URL", &database)
        .env("GOMON_LOG", "warn")
        .current_dir(dir.path())
        .spawn()
        .expect("gomon alerting");
    let _gomon = Killed(gomon);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .is_ok_and(|response| response.status().is_success())
    {
        assert!(Instant::now() < deadline, "gomon alerting not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // OPEN open alerts, as a rule engine posts them, 500 a request.
    let loading = Instant::now();
    // Alertmanager's severity names, which GoMon maps to P1..P4.
    let severities = ["critical", "error", "warning", "info"];
    for start in (0..open).step_by(500) {
        let batch: Vec<Value> = (start..(start + 500).min(open))
            .map(|index| {
                json!({
                    "labels": {
                        "alertname": format!("HighLatency{}", index % 50),
                        "instance": format!("node-{index}"),
                        "namespace": format!("team-{}", index % 20),
                        "severity": severities[index % 4],
                    },
                    "annotations": {"summary": format!("p99 above 500 ms on node-{index}")},
                })
            })
            .collect();
        let response = http
            .post(format!("{base}/api/v2/alerts"))
            .json(&batch)
            .send()
            .await
            .expect("post alerts");
        assert!(response.status().is_success(), "{}", response.status());
    }
    println!(
        "loaded {open} open alerts in {:.1} s",
        loading.elapsed().as_secs_f64()
    );

    let mut weight = 0;
    for asset in [
        "/",
        "/console/app.js",
        "/console/app.css",
        "/console/favicon.svg",
    ] {
        weight += http
            .get(format!("{base}{asset}"))
            .send()
            .await
            .expect("asset")
            .bytes()
            .await
            .expect("asset body")
            .len();
    }

    let browser = Browser::start(1280, 900).await;
    let (mut drawn, mut interactive, mut wall) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        browser.goto("about:blank").await;
        let started = Instant::now();
        let page = if run % 2 == 0 {
            format!("{base}/?run={run}#/alerts")
        } else {
            format!("{base}/?run={run}#/alerts?severity=P2&q=latency7")
        };
        browser.goto(&page).await;
        browser
            .wait_for("table#alerts tbody tr[data-id]", Duration::from_secs(30))
            .await;
        wall.push(started.elapsed().as_secs_f64() * 1000.0);
        let timing = browser
            .execute(
                "const mark = performance.getEntriesByName('gomon:alerts-drawn')[0]; \
                 const nav = performance.getEntriesByType('navigation')[0]; \
                 return [mark ? mark.startTime : null, nav.domInteractive];",
                json!([]),
            )
            .await;
        drawn.push(timing[0].as_f64().expect("the page marks its first draw"));
        interactive.push(timing[1].as_f64().unwrap_or_default());
    }
    let rows = browser
        .find_all("table#alerts tbody tr[data-id]")
        .await
        .len();

    let mut api = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        for path in ["/api/v1/alerts?limit=50&offset=0", "/api/v1/alerts/summary"] {
            let response = http.get(format!("{base}{path}")).send().await.expect("API");
            assert!(response.status().is_success());
            response.bytes().await.expect("body");
        }
        api.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    println!(
        "alerts page with {open} open alerts, {runs} loads in headless Chromium ({rows} rows drawn):"
    );
    println!(
        "  rows drawn after navigation: p50 {:.0} ms, max {:.0} ms (target: interactive under 1000 ms)",
        percentile(&mut drawn, 0.5),
        percentile(&mut drawn, 1.0)
    );
    println!(
        "  DOM interactive: p50 {:.0} ms; navigation to rows seen by the driver: p50 {:.0} ms",
        percentile(&mut interactive, 0.5),
        percentile(&mut wall, 0.5)
    );
    println!(
        "  one refresh's API calls (page of 50 + counts): p50 {:.1} ms, max {:.1} ms",
        percentile(&mut api, 0.5),
        percentile(&mut api, 1.0)
    );
    println!(
        "  assets: {weight} bytes ({:.1} KB, target under 300 KB)",
        weight as f64 / 1024.0
    );
}

/// A child process killed when dropped, panic or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
