//! The email receiver (`alerting.notify.receivers[]` with `type: email`): a plain-text message per notification,
//! sent through an SMTP smarthost with STARTTLS (or implicit TLS), authenticated when credentials are set. The
//! messages of one alert form a thread in mail clients: the first has the Message-ID `<alert-{id}@{domain}>`, and
//! every later one names it in `In-Reply-To` and `References`.

use std::path::PathBuf;
use std::time::Duration;

use gomon_runtime::config::{KeyError, Secret};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::breaker::BreakerConfig;
use super::group::{Batch, MAX_LISTED};
use super::outcome::SendOutcome;
use super::slack::{Event, event_actor, headline};
use crate::model::{Alert, truncate};

/// Most recipients of one email receiver.
pub const MAX_RECIPIENTS: usize = 50;

/// Longest subject, in characters.
pub const MAX_SUBJECT: usize = 200;

/// Longest text of one field (description, note, a label or annotation value) in a message.
const MAX_FIELD_TEXT: usize = 4000;

/// How the connection to the smarthost is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTls {
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587, 25).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all: only for a relay on the same host or network; refused with credentials.
    None,
}

/// An email receiver's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server, `host:port`.
    pub smarthost: String,
    /// The sender, `GoMon <gomon@example.com>` or `gomon@example.com`.
    pub from: String,
    /// The recipients, 1 to [`MAX_RECIPIENTS`].
    pub to: Vec<String>,
    /// How the connection is secured.
    pub tls: EmailTls,
    /// A CA (PEM) to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// SMTP AUTH user name (with `password` or `password_file`).
    pub username: Option<String>,
    /// SMTP AUTH password.
    pub password: Option<Secret>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// The name announced in `EHLO`; unset: this host's name.
    pub hello: Option<String>,
    /// Longest time sending one message may take, connecting included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Base URL under which people reach this GoMon, for the link to the alert. Unset: no link.
    pub external_url: Option<String>,
    /// When to stop sending while the server is failing.
    pub circuit_breaker: BreakerConfig,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smarthost: String::new(),
            from: String::new(),
            to: Vec::new(),
            tls: EmailTls::Starttls,
            ca_file: None,
            username: None,
            password: None,
            password_file: None,
            hello: None,
            timeout: Duration::from_secs(10),
            external_url: None,
            circuit_breaker: BreakerConfig::default(),
        }
    }
}

impl EmailConfig {
    /// Checks what types cannot: `smarthost` as `host:port`, parseable addresses, 1 to [`MAX_RECIPIENTS`]
    /// recipients, a readable CA, credentials complete and never over a connection without TLS, a timeout of at
    /// least 1 ms. The error names the key within this receiver and never the password.
    pub fn check(&self) -> Result<(), KeyError> {
        self.server()?;
        self.sender()?;
        self.recipients()?;
        self.root_certificate()?;
        let credentials = self.credentials()?;
        if credentials.is_some() && self.tls == EmailTls::None {
            return Err(KeyError::new(
                "tls",
                "none would send the password in clear: use starttls or tls with credentials",
            ));
        }
        if let Some(hello) = &self.hello
            && (hello.is_empty()
                || !hello
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')))
        {
            return Err(KeyError::new(
                "hello",
                format!("{hello:?} is not a host name"),
            ));
        }
        super::check_common(
            self.timeout,
            self.external_url.as_deref(),
            &self.circuit_breaker,
        )
    }

    /// `smarthost` as host and port.
    fn server(&self) -> Result<(String, u16), KeyError> {
        let invalid = || {
            KeyError::new(
                "smarthost",
                format!("{:?} is not host:port", self.smarthost),
            )
        };
        let (host, port) = self.smarthost.rsplit_once(':').ok_or_else(invalid)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| invalid())?;
        if host.is_empty() || port == 0 || host.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        Ok((host.to_owned(), port))
    }

    fn sender(&self) -> Result<Mailbox, KeyError> {
        self.from
            .parse()
            .map_err(|error| KeyError::new("from", format!("{:?}: {error}", self.from)))
    }

    fn recipients(&self) -> Result<Vec<Mailbox>, KeyError> {
        if self.to.is_empty() || self.to.len() > MAX_RECIPIENTS {
            return Err(KeyError::new(
                "to",
                format!("1 to {MAX_RECIPIENTS} recipients, not {}", self.to.len()),
            ));
        }
        self.to
            .iter()
            .enumerate()
            .map(|(index, to)| {
                to.parse().map_err(|error| {
                    KeyError::new(format!("to[{index}]"), format!("{to:?}: {error}"))
                })
            })
            .collect()
    }

    fn root_certificate(&self) -> Result<Option<Certificate>, KeyError> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|error| {
            KeyError::new(
                "ca_file",
                format!("cannot read {}: {error}", path.display()),
            )
        })?;
        Certificate::from_pem(&pem).map(Some).map_err(|error| {
            KeyError::new(
                "ca_file",
                format!("{} is not a PEM certificate: {error}", path.display()),
            )
        })
    }

    /// The user name and password (read from its file), when set.
    fn credentials(&self) -> Result<Option<(String, String)>, KeyError> {
        let password = gomon_runtime::config::secret(
            "password",
            self.password.as_ref().map(Secret::expose),
            self.password_file.as_deref(),
        )?;
        match (&self.username, password) {
            (None, None) => Ok(None),
            (Some(user), Some(password)) => Ok(Some((user.clone(), password))),
            (Some(_), None) => Err(KeyError::new(
                "password",
                "username is set: set password or password_file too",
            )),
            (None, Some(_)) => Err(KeyError::new(
                "username",
                "a password is set without a username",
            )),
        }
    }
}

/// The subject and plain-text body of `event` on `alert`.
pub fn render(
    alert: &Alert,
    event: Event,
    actor: Option<&str>,
    note: Option<&str>,
    external_url: &str,
) -> (String, String) {
    let actor = event_actor(alert, event, actor);
    let what = headline(alert, event, actor);
    let title: String = alert
        .title
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let subject = truncate(
        &format!("[{}] {what}: {title}", alert.severity.as_str()),
        MAX_SUBJECT,
    );
    let mut body = format!("{subject}\n\n");
    let mut line = |name: &str, value: &str| {
        body.push_str(&format!("{name}: {}\n", truncate(value, MAX_FIELD_TEXT)));
    };
    line("Severity", alert.severity.as_str());
    line("Status", alert.status.as_str());
    if let Some(namespace) = &alert.namespace {
        line("Namespace", namespace);
    }
    line("Source", &alert.source);
    line(
        "Started",
        &alert
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    if let Some(actor) = actor {
        line("By", actor);
    }
    if let Some(owner) = &alert.assigned_to {
        line("Assigned to", owner);
    }
    if let Some(note) = note.filter(|note| !note.trim().is_empty()) {
        line("Note", note);
    }
    if let Some(description) = &alert.description {
        line("Description", description);
    }
    for (heading, map) in [
        ("Labels", &alert.labels),
        ("Annotations", &alert.annotations),
    ] {
        if map.is_empty() {
            continue;
        }
        body.push_str(&format!("\n{heading}:\n"));
        for (name, value) in map {
            body.push_str(&format!("  {name} = {}\n", truncate(value, MAX_FIELD_TEXT)));
        }
    }
    body.push('\n');
    if !external_url.is_empty() {
        body.push_str(&format!(
            "Alert: {}/api/v1/alerts/{}\n",
            external_url.trim_end_matches('/'),
            alert.id
        ));
    }
    body.push_str(&format!("Alert id: {}\n", alert.id));
    (subject, body)
}

/// The subject and plain-text body of a group's notifications (`batch`): its title, and a line per alert for the
/// first [`MAX_LISTED`], with the count of the others.
pub fn render_group(batch: &Batch, external_url: &str) -> (String, String) {
    let plain = |text: &str| -> String {
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let subject = truncate(&plain(&batch.title()), MAX_SUBJECT);
    let mut body = format!("{subject}\n\n");
    let base = external_url.trim_end_matches('/');
    for item in batch.items.iter().take(MAX_LISTED) {
        let alert = &item.alert;
        body.push_str(&format!(
            "- [{}] {}: {}\n",
            alert.severity.as_str(),
            item.headline(),
            truncate(&plain(&alert.title), MAX_FIELD_TEXT)
        ));
        if base.is_empty() {
            body.push_str(&format!("  Alert id: {}\n", alert.id));
        } else {
            body.push_str(&format!("  {base}/api/v1/alerts/{}\n", alert.id));
        }
    }
    if let Some(more) = batch.more(MAX_LISTED) {
        body.push_str(&format!("{more}\n"));
    }
    (subject, body)
}

/// Sends notifications by email through one smarthost.
pub struct EmailClient {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    timeout: Duration,
    external_url: String,
    /// The domain of Message-IDs: the sender's.
    domain: String,
    /// What must never appear in a reason: the password.
    secrets: Vec<String>,
}

impl std::fmt::Debug for EmailClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EmailClient")
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl EmailClient {
    /// The client `config` describes, its files (password, CA) read; the error names the key within the receiver.
    pub fn new(config: &EmailConfig) -> Result<EmailClient, KeyError> {
        config.check()?;
        let (host, port) = config.server()?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .timeout(Some(config.timeout));
        if config.tls != EmailTls::None {
            let mut parameters = TlsParameters::builder(host);
            if let Some(certificate) = config.root_certificate()? {
                parameters = parameters.add_root_certificate(certificate);
            }
            let parameters = parameters
                .build_rustls()
                .map_err(|error| KeyError::new("ca_file", format!("cannot set up TLS: {error}")))?;
            builder = builder.tls(match config.tls {
                EmailTls::Tls => Tls::Wrapper(parameters),
                _ => Tls::Required(parameters),
            });
        } else {
            builder = builder.tls(Tls::None);
        }
        let mut secrets = Vec::new();
        if let Some((user, password)) = config.credentials()? {
            secrets.push(password.clone());
            builder = builder.credentials(Credentials::new(user, password));
        }
        if let Some(hello) = &config.hello {
            builder = builder.hello_name(ClientId::Domain(hello.clone()));
        }
        let from = config.sender()?;
        let domain = from.email.domain().to_owned();
        Ok(EmailClient {
            transport: builder.build(),
            from,
            to: config.recipients()?,
            timeout: config.timeout,
            external_url: config.external_url.clone().unwrap_or_default(),
            domain,
            secrets,
        })
    }

    /// Sends `event` on `alert` (notification `notification`) and says what came of it: accepted; a 4xx reply,
    /// a timeout or a connection or TLS error transient; a 5xx reply (a recipient refused, authentication
    /// failed) permanent. No reason holds the password.
    pub async fn send(
        &self,
        notification: i64,
        alert: &Alert,
        event: Event,
        actor: Option<&str>,
        note: Option<&str>,
    ) -> SendOutcome {
        let (subject, body) = render(alert, event, actor, note, &self.external_url);
        let thread = format!("<alert-{}@{}>", alert.id, self.domain);
        match event {
            Event::Created => self.post(subject, body, thread, None).await,
            _ => {
                let id = format!("<alert-{}.{notification}@{}>", alert.id, self.domain);
                self.post(subject, body, id, Some(thread)).await
            }
        }
    }

    /// Sends the notifications of a group (`batch`) as one message, as [`send`](Self::send) does one.
    pub async fn send_group(&self, batch: &Batch) -> SendOutcome {
        let (subject, body) = render_group(batch, &self.external_url);
        let first = batch
            .items
            .iter()
            .map(|item| item.id)
            .min()
            .unwrap_or_default();
        let id = format!("<group-{first}@{}>", self.domain);
        self.post(subject, body, id, None).await
    }

    /// Sends one message, with Message-ID `id`, in reply to `thread` when given.
    async fn post(
        &self,
        subject: String,
        body: String,
        id: String,
        thread: Option<String>,
    ) -> SendOutcome {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(id))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        if let Some(thread) = thread {
            message = message.in_reply_to(thread.clone()).references(thread);
        }
        let message = match message.body(body) {
            Ok(message) => message,
            Err(error) => {
                return SendOutcome::Permanent {
                    reason: format!("cannot build the message: {error}"),
                };
            }
        };
        let outcome = match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Err(_) => SendOutcome::Transient {
                reason: format!("no answer within {:?}", self.timeout),
                retry_after: None,
            },
            Ok(Ok(_)) => SendOutcome::Accepted {
                ts: None,
                channel: None,
            },
            Ok(Err(error)) if error.is_permanent() => SendOutcome::Permanent {
                reason: format!("SMTP: {error}"),
            },
            Ok(Err(error)) => SendOutcome::Transient {
                reason: format!("SMTP: {error}"),
                retry_after: None,
            },
        };
        super::outcome::redact(outcome, &self.secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NewAlert, Severity};

    fn valid() -> EmailConfig {
        EmailConfig {
            smarthost: "smtp.example.com:587".into(),
            from: "GoMon <gomon@example.com>".into(),
            to: vec!["oncall@example.com".into()],
            ..EmailConfig::default()
        }
    }

    #[test]
    fn check_names_the_key_and_never_the_password() {
        assert!(valid().check().is_ok());
        let key_of = |config: EmailConfig| config.check().expect_err("invalid").key;
        assert_eq!(
            key_of(EmailConfig {
                smarthost: "smtp.example.com".into(),
                ..valid()
            }),
            "smarthost"
        );
        assert_eq!(
            key_of(EmailConfig {
                smarthost: "smtp.example.com:0".into(),
                ..valid()
            }),
            "smarthost"
        );
        assert_eq!(
            key_of(EmailConfig {
                from: "not an address".into(),
                ..valid()
            }),
            "from"
        );
        assert_eq!(
            key_of(EmailConfig {
                to: Vec::new(),
                ..valid()
            }),
            "to"
        );
        assert_eq!(
            key_of(EmailConfig {
                to: vec!["a@example.com".into(), "b@".into()],
                ..valid()
            }),
            "to[1]"
        );
        assert_eq!(
            key_of(EmailConfig {
                ca_file: Some("/nonexistent/ca.pem".into()),
                ..valid()
            }),
            "ca_file"
        );
        assert_eq!(
            key_of(EmailConfig {
                username: Some("u".into()),
                ..valid()
            }),
            "password"
        );
        assert_eq!(
            key_of(EmailConfig {
                hello: Some("a b".into()),
                ..valid()
            }),
            "hello"
        );
        let clear = EmailConfig {
            tls: EmailTls::None,
            username: Some("u".into()),
            password: Some("hunter2".into()),
            ..valid()
        };
        let error = clear.check().expect_err("password in clear");
        assert_eq!(error.key, "tls");
        assert!(!error.to_string().contains("hunter2"));
        assert!(!format!("{clear:?}").contains("hunter2"));
        let config: EmailConfig = yaml_serde::from_str(
            "smarthost: 'mail:465'\nfrom: a@example.com\nto: [b@example.com]\ntls: tls\n",
        )
        .expect("parse");
        assert_eq!(config.tls, EmailTls::Tls);
        assert!(yaml_serde::from_str::<EmailConfig>("tls: ssl\n").is_err());
    }

    #[test]
    fn a_title_cannot_inject_headers() {
        let alert = NewAlert {
            source: "api".into(),
            severity: Severity::P1,
            title: "Disk full\r\nBcc: attacker@example.com".into(),
            ..NewAlert::default()
        }
        .into_alert(crate::model::now());
        let (subject, body) = render(
            &alert,
            Event::Created,
            None,
            None,
            "https://gomon.example.com",
        );
        assert_eq!(subject, "[P1] FIRING: Disk full  Bcc: attacker@example.com");
        assert!(body.contains(&format!(
            "Alert: https://gomon.example.com/api/v1/alerts/{}",
            alert.id
        )));
    }

    #[test]
    fn a_group_is_one_message_listing_its_alerts() {
        let batch = crate::notify::group::sample_batch(25, 0, "Disk\r\nBcc: evil@example.com");
        let (subject, body) = render_group(&batch, "https://gomon.example.com/");
        assert_eq!(subject, "[FIRING:25] namespace=\"payments\"");
        assert_eq!(body.matches("\n- [P").count(), 20, "{body}");
        assert!(!body.contains("\nBcc:"), "{body}");
        assert!(
            body.contains("https://gomon.example.com/api/v1/alerts/"),
            "{body}"
        );
        assert!(
            body.contains("\u{2026}and 5 more (5 firing, 0 resolved)"),
            "{body}"
        );
    }
}
