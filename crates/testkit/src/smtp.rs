//! A real SMTP server for the email receiver's tests: aiosmtpd (Debian's `python3-aiosmtpd`) on a free local port,
//! with STARTTLS and AUTH required, its certificate signed by a test CA ([`crate::tls::Pki`]). Every message it
//! accepts is read back with its envelope.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::free_port;
use crate::tls::Pki;

/// The server's script.
const SCRIPT: &str = include_str!("smtp_server.py");

/// The user name and password the server accepts.
pub const USER: &str = "gomon";
/// The password of [`USER`].
pub const PASSWORD: &str = "s3cret-smtp-password";

/// One message the server accepted.
#[derive(Clone, Debug)]
pub struct Mail {
    /// The message as received (headers and body).
    pub raw: String,
    /// The envelope sender.
    pub mail_from: String,
    /// The envelope recipients.
    pub rcpt_tos: Vec<String>,
    /// Whether the session was upgraded to TLS.
    pub tls: bool,
    /// Who authenticated.
    pub user: Option<String>,
}

impl Mail {
    /// The value of header `name` (first occurrence, unfolded), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut lines = self
            .raw
            .lines()
            .take_while(|line| !line.is_empty())
            .peekable();
        while let Some(line) = lines.next() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key.eq_ignore_ascii_case(name) {
                let mut value = value.trim().to_owned();
                while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
                    value.push(' ');
                    value.push_str(next.trim());
                    lines.next();
                }
                return Some(value);
            }
        }
        None
    }

    /// The body (after the blank line ending the headers), decoded from quoted-printable when its
    /// `Content-Transfer-Encoding` says so, as a mail client shows it.
    pub fn body(&self) -> String {
        let body = self
            .raw
            .split_once("\r\n\r\n")
            .or_else(|| self.raw.split_once("\n\n"))
            .map_or("", |(_, body)| body);
        let quoted = self
            .header("Content-Transfer-Encoding")
            .is_some_and(|encoding| encoding.eq_ignore_ascii_case("quoted-printable"));
        if !quoted {
            return body.to_owned();
        }
        let joined = body.replace("=\r\n", "").replace("=\n", "");
        let bytes = joined.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut at = 0;
        while at < bytes.len() {
            let hex = bytes
                .get(at + 1..at + 3)
                .and_then(|pair| std::str::from_utf8(pair).ok())
                .and_then(|pair| u8::from_str_radix(pair, 16).ok());
            match (bytes[at], hex) {
                (b'=', Some(byte)) => {
                    decoded.push(byte);
                    at += 3;
                }
                (byte, _) => {
                    decoded.push(byte);
                    at += 1;
                }
            }
        }
        String::from_utf8_lossy(&decoded).into_owned()
    }
}

/// The running server; stopped when dropped.
pub struct SmtpServer {
    /// `127.0.0.1:PORT`.
    pub address: String,
    out: tempfile::TempDir,
    child: Child,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpServer {
    /// Starts the server with `pki`'s certificate for `127.0.0.1` and `localhost`.
    pub fn start(pki: &Pki) -> SmtpServer {
        let out = tempfile::tempdir().expect("mail directory");
        let port = free_port();
        let python = if std::path::Path::new("/usr/bin/python3").exists() {
            PathBuf::from("/usr/bin/python3")
        } else {
            PathBuf::from("python3")
        };
        let mut child = Command::new(python)
            .arg("-c")
            .arg(SCRIPT)
            .arg("127.0.0.1")
            .arg(port.to_string())
            .arg(pki.broker_cert_file())
            .arg(pki.broker_key_file())
            .arg(USER)
            .arg(PASSWORD)
            .arg(out.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "start the SMTP server (python3 with aiosmtpd: apt-get install python3-aiosmtpd)",
            );
        let stdout = child.stdout.take().expect("server stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("read the SMTP server's readiness");
        assert_eq!(first.trim(), "ready", "the SMTP server did not start");
        SmtpServer {
            address: format!("127.0.0.1:{port}"),
            out,
            child,
        }
    }

    /// Every message accepted so far, in arrival order.
    pub fn mails(&self) -> Vec<Mail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.out.path())
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                    .filter(|path| path.extension().is_some_and(|e| e == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .into_iter()
            .filter_map(|path| {
                let raw = std::fs::read_to_string(&path).ok()?;
                let meta: Value = serde_json::from_str(
                    &std::fs::read_to_string(path.with_extension("json")).ok()?,
                )
                .ok()?;
                Some(Mail {
                    raw,
                    mail_from: meta["mail_from"].as_str().unwrap_or_default().to_owned(),
                    rcpt_tos: meta["rcpt_tos"]
                        .as_array()
                        .map(|tos| {
                            tos.iter()
                                .filter_map(|t| t.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    tls: meta["tls"].as_bool().unwrap_or(false),
                    user: meta["user"].as_str().map(str::to_owned),
                })
            })
            .collect()
    }
}
