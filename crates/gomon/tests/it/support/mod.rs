//! Running `gomon` roles as processes in the binary's tests.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A `gomon ROLE` process with its output in a log file; killed when dropped.
pub(crate) struct Gomon {
    pub role: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Gomon {
    pub(crate) fn start(
        role: &'static str,
        dir: &tempfile::TempDir,
        env: &[(&str, String)],
    ) -> Gomon {
        let log = dir.path().join(format!("{role}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_gomon"));
        command.arg(role);
        // Only this test's configuration: nothing from the caller's environment.
        for (key, _) in std::env::vars()
            .filter(|(key, _)| key.starts_with("GOMON_") || key.starts_with("OTEL_"))
        {
            command.env_remove(key);
        }
        command
            .env("GOMON_LOG", "info")
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        Gomon {
            role,
            child: Some(command.spawn().expect("spawn gomon")),
            log,
        }
    }

    /// Its whole log (stdout and stderr) so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of its log, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("--- gomon {} log (last 30 lines) ---\n{tail}", self.role)
    }

    /// Fails if the process has exited.
    pub(crate) fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("running");
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!(
                "gomon {} exited with {status}\n{}",
                self.role,
                self.log_tail()
            );
        }
    }

    /// CPU time it has used so far (user and system), from `/proc/PID/stat`.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        let pid = self.child.as_ref().expect("running").id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
        // Fields after the command name, which is in parentheses and may hold spaces: utime and stime are the
        // 14th and 15th fields of the line, the 12th and 13th after it.
        let after = stat.rsplit_once(')').expect("stat line").1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        let output = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("getconf");
        let per_second: f64 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("CLK_TCK");
        ticks as f64 / per_second
    }

    /// SIGTERM, then its exit status (within 20 s).
    pub(crate) fn terminate(self) -> ExitStatus {
        self.signal("TERM")
    }

    /// Sends `signal` (`TERM`, `INT`), then its exit status (within 20 s).
    pub(crate) fn signal(mut self, signal: &str) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "SIG{signal} to gomon {}", self.role);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "gomon {} did not stop within 20 s of SIG{signal}\n{}",
                    self.role,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gomon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The environment of a `gomon up` kept to itself: listening on `port`, its SQLite, `HOME` and no kubeconfig in
/// `dir`, collecting every second as `host`; `more` added.
pub(crate) fn up_env(
    dir: &tempfile::TempDir,
    port: u16,
    host: &str,
    more: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("GOMON_ALERTING__LISTEN", format!("127.0.0.1:{port}")),
        (
            "GOMON_ALERTING__DATABASE__DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        ("GOMON_AGENT__INTERVAL", "1s".to_owned()),
        ("GOMON_AGENT__HOSTNAME", host.to_owned()),
        ("HOME", dir.path().display().to_string()),
        ("KUBECONFIG", dir.path().join("none").display().to_string()),
    ];
    env.extend_from_slice(more);
    env
}

/// A new, empty database on the test PostgreSQL server; its URL.
pub(crate) fn postgres_database() -> String {
    let server = std::env::var("TEST_POSTGRES_URL").expect(
        "TEST_POSTGRES_URL is not set: run the tests through scripts/test.sh, which starts PostgreSQL",
    );
    // A counter, not a free port: two tests may be handed the same port one after the other.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let database = format!(
        "e2e_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let created = Command::new("psql")
        .args([
            &format!("{server}/postgres"),
            "-qc",
            &format!("CREATE DATABASE {database}"),
        ])
        .status()
        .expect("psql (apt-get install postgresql; scripts/test.sh installs it)");
    assert!(created.success(), "CREATE DATABASE {database}");
    format!("{server}/{database}")
}

/// Waits until `url` answers 200, while `process` runs.
pub(crate) async fn wait_ready(process: &mut Gomon, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        process.assert_running();
        if reqwest::get(url)
            .await
            .is_ok_and(|response| response.status().is_success())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready within 60 s\n{}",
            process.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
