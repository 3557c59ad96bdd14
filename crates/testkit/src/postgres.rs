//! A PostgreSQL server of a test's own, with the stock durable settings (`fsync` and `synchronous_commit` on), that
//! the test can crash (`pg_ctl stop -m immediate`) and start again. Started by `scripts/lib/postgres.sh`, as the
//! test command starts the shared one; removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The running server.
pub struct DurablePostgres {
    /// `postgres://postgres@127.0.0.1:PORT`: append `/postgres` for its default database.
    pub url: String,
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

/// Runs `script` in bash after sourcing `scripts/lib/postgres.sh`; its standard output, failing the test if it
/// fails.
fn with_helper(script: &str, env: &[(&str, &str)]) -> String {
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lib/postgres.sh");
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!(". '{}'; {script}", helper.display()))
        .envs(env.iter().copied())
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

impl DurablePostgres {
    /// Starts a new server on a free port (blocking, a few seconds).
    pub fn start() -> DurablePostgres {
        let out = with_helper(
            "start_postgres >/dev/null && echo \"$TEST_POSTGRES_URL $PG_DIR $PG_BIN\"",
            // Set and empty: the stock settings, not the test command's fast ones.
            &[("PG_SETTINGS", "")],
        );
        let mut words = out.split_whitespace();
        let (Some(url), Some(dir), Some(bin)) = (words.next(), words.next(), words.next()) else {
            panic!("unexpected output of start_postgres: {out:?}");
        };
        let port = url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("a port in the URL");
        DurablePostgres {
            url: url.to_owned(),
            dir: dir.into(),
            bin: bin.into(),
            port,
        }
    }

    fn pg_ctl(&self, args: &str) {
        with_helper(
            &format!(
                "as_postgres '{}/pg_ctl' -D '{}/data' {args} >/dev/null",
                self.bin.display(),
                self.dir.display()
            ),
            &[],
        );
    }

    /// Crashes the server: every process killed at once, nothing flushed, as a power cut would leave it.
    pub fn crash(&self) {
        self.pg_ctl("-m immediate stop");
    }

    /// Starts the server again on the same port (it recovers from its write-ahead log first).
    pub fn restart(&self) {
        self.pg_ctl(&format!(
            "-l '{dir}/server.log' -w -t 60 -o '-p {port} -k {dir} -c listen_addresses=127.0.0.1' start",
            dir = self.dir.display(),
            port = self.port
        ));
    }
}

impl Drop for DurablePostgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!(
                ". '{}'; PG_DIR='{}' PG_BIN='{}' stop_postgres",
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../scripts/lib/postgres.sh")
                    .display(),
                self.dir.display(),
                self.bin.display()
            ))
            .status();
    }
}
