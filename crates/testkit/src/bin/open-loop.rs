//! An open-loop HTTP load generator for the benchmark scripts: requests leave at a fixed rate whatever the server
//! answers, and each one's latency runs from the moment it was due, not from when it could be sent. A slow server
//! therefore cannot slow the load down and hide its own queueing, as a closed-loop tool (wrk) lets it do.
//!
//! ```text
//! open-loop URL --rate N --duration SECONDS [--warmup SECONDS] [--method POST] [--body TEMPLATE]
//!           [--header 'Name: value']... [--lines FILE]
//! ```
//!
//! `{n}` in the URL or the body becomes the request's number, so that each request can carry a new alert, and
//! `{line}` the next line of FILE, in turn (alert ids to read, say). Prints
//! one line, latencies in milliseconds over the requests due after the warm-up:
//! `RESULT offered=.. rate=.. ok=.. errors=.. p50_ms=.. p95_ms=.. p99_ms=.. max_ms=..`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests in flight beyond this count as errors instead of being sent: the server is far behind.
const MAX_IN_FLIGHT: usize = 20_000;

struct Options {
    url: String,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    method: reqwest::Method,
    body: Option<String>,
    headers: Vec<(String, String)>,
    lines: Vec<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        url: String::new(),
        rate: 0.0,
        duration: Duration::ZERO,
        warmup: Duration::ZERO,
        method: reqwest::Method::GET,
        body: None,
        headers: Vec::new(),
        lines: Vec::new(),
    };
    let seconds = |value: Option<String>, name: &str| -> Result<Duration, String> {
        value
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("{name} takes a number of seconds"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rate" => {
                options.rate = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v: &f64| v.is_finite() && *v > 0.0)
                    .ok_or("--rate takes requests per second")?;
            }
            "--duration" => options.duration = seconds(args.next(), "--duration")?,
            "--warmup" => options.warmup = seconds(args.next(), "--warmup")?,
            "--method" => {
                options.method = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--method takes an HTTP method")?;
            }
            "--body" => options.body = Some(args.next().ok_or("--body takes a template")?),
            "--header" => {
                let header = args.next().ok_or("--header takes 'Name: value'")?;
                let (name, value) = header
                    .split_once(':')
                    .ok_or("--header takes 'Name: value'")?;
                options
                    .headers
                    .push((name.trim().to_owned(), value.trim().to_owned()));
            }
            "--lines" => {
                let path = args.next().ok_or("--lines takes a file")?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|error| format!("--lines {path}: {error}"))?;
                options.lines = text
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect();
                if options.lines.is_empty() {
                    return Err(format!("--lines {path}: no line"));
                }
            }
            url if !url.starts_with("--") && options.url.is_empty() => options.url = url.to_owned(),
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    if options.url.is_empty() || options.rate == 0.0 || options.duration.is_zero() {
        return Err(
            "usage: open-loop URL --rate N --duration SECONDS [--warmup SECONDS] [--method M] \
             [--body TEMPLATE] [--header 'Name: value']..."
                .into(),
        );
    }
    Ok(options)
}

/// The answer to one request: when it was due, how long it took from then, and whether it succeeded.
struct Answer {
    due: Instant,
    latency: Duration,
    ok: bool,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Sends request `n`, due at `due`, and records its answer.
async fn send(
    client: reqwest::Client,
    options: Arc<Options>,
    n: u64,
    due: Instant,
    answers: Arc<Mutex<Vec<Answer>>>,
    in_flight: Arc<AtomicUsize>,
) {
    let number = n.to_string();
    let line = options
        .lines
        .get(usize::try_from(n).unwrap_or(0) % options.lines.len().max(1))
        .map_or("", String::as_str);
    let fill = |template: &str| template.replace("{n}", &number).replace("{line}", line);
    let mut request = client.request(options.method.clone(), fill(&options.url));
    for (name, value) in &options.headers {
        request = request.header(name, value);
    }
    if let Some(body) = &options.body {
        request = request.body(fill(body));
    }
    let ok = match request.send().await {
        Ok(response) => {
            let success = response.status().is_success();
            // The whole answer counts: read the body.
            response.bytes().await.is_ok() && success
        }
        Err(_) => false,
    };
    let latency = due.elapsed();
    if let Ok(mut answers) = answers.lock() {
        answers.push(Answer { due, latency, ok });
    }
    in_flight.fetch_sub(1, Ordering::AcqRel);
}

async fn run(options: Options) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .build()
        .map_err(|error| format!("HTTP client: {error}"))?;
    let options = Arc::new(options);
    let answers = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let total = ((options.warmup + options.duration).as_secs_f64() * options.rate).round() as u64;
    let start = Instant::now() + Duration::from_millis(50);
    // Paced by a thread of its own: the runtime's timer fires on millisecond ticks, rounded up, which would send
    // each request up to a millisecond after it was due and count that against the server.
    let runtime = tokio::runtime::Handle::current();
    let pacer = {
        let (answers, in_flight) = (answers.clone(), in_flight.clone());
        let options = options.clone();
        std::thread::spawn(move || {
            for n in 0..total {
                let due = start + interval.mul_f64(n as f64);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                if in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
                    in_flight.fetch_sub(1, Ordering::AcqRel);
                    if let Ok(mut answers) = answers.lock() {
                        answers.push(Answer {
                            due,
                            latency: Duration::ZERO,
                            ok: false,
                        });
                    }
                    continue;
                }
                runtime.spawn(send(
                    client.clone(),
                    options.clone(),
                    n,
                    due,
                    answers.clone(),
                    in_flight.clone(),
                ));
            }
        })
    };
    tokio::task::spawn_blocking(move || pacer.join())
        .await
        .map_err(|_| "pacer")?
        .map_err(|_| "pacer panicked")?;
    // The client's timeout bounds the wait for the last answers.
    while in_flight.load(Ordering::Acquire) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answers = answers.lock().map_err(|_| "poisoned")?;
    let measured_from = start + options.warmup;
    let measured: Vec<&Answer> = answers.iter().filter(|a| a.due >= measured_from).collect();
    let errors = measured.iter().filter(|a| !a.ok).count();
    let mut latencies: Vec<Duration> = measured
        .iter()
        .filter(|a| a.ok)
        .map(|a| a.latency)
        .collect();
    latencies.sort();
    let span = options.duration.as_secs_f64();
    Ok(format!(
        "RESULT offered={:.0} rate={:.0} ok={} errors={errors} p50_ms={:.2} p95_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        options.rate,
        latencies.len() as f64 / span,
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        latencies
            .last()
            .map_or(f64::NAN, |l| l.as_secs_f64() * 1000.0),
    ))
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("open-loop: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("open-loop: runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("open-loop: {error}");
            ExitCode::FAILURE
        }
    }
}
