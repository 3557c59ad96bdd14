//! Connection settings shared by every Kafka client of GoMon (the agent's producer, the aggregator's consumer and
//! dead-letter producer): brokers, TLS and SASL, and the librdkafka settings they mean.

use std::path::PathBuf;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::{Deserialize, Serialize};

use crate::config::{KeyError, Secret};

/// TLS files (PEM).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate that signed the brokers' certificates.
    pub ca_file: Option<PathBuf>,
    /// Client certificate, for brokers that require one.
    pub cert_file: Option<PathBuf>,
    /// Key of the client certificate.
    pub key_file: Option<PathBuf>,
}

/// SASL credentials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: SaslMechanism,
    /// User name.
    pub username: String,
    /// Password; or `password_file`.
    pub password: Option<Secret>,
    /// File holding the password (a mounted Kubernetes Secret).
    pub password_file: Option<PathBuf>,
}

/// A SASL mechanism librdkafka speaks without Kerberos or OAuth set-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// User name and password in clear (over TLS only, in practice).
    #[serde(rename = "PLAIN")]
    Plain,
    /// SCRAM with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// Its name, as librdkafka's `sasl.mechanism` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A compression codec librdkafka knows, for the messages a producer sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4: cheap on CPU, the default.
    #[default]
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// Its name, as librdkafka's `compression.type` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl TlsConfig {
    /// Each file that is set can be read, and a certificate comes with its key: librdkafka would only say so at the
    /// first connection.
    fn check(&self) -> Result<(), KeyError> {
        for (key, path) in [
            ("tls.ca_file", &self.ca_file),
            ("tls.cert_file", &self.cert_file),
            ("tls.key_file", &self.key_file),
        ] {
            if let Some(path) = path
                && let Err(error) = std::fs::read(path)
            {
                return Err(KeyError {
                    key: key.to_owned(),
                    message: format!("cannot read {}: {error}", path.display()),
                });
            }
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err(KeyError {
                key: "tls.key_file".to_owned(),
                message: "must be set with tls.cert_file".to_owned(),
            }),
            (None, Some(_)) => Err(KeyError {
                key: "tls.cert_file".to_owned(),
                message: "must be set with tls.key_file".to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

impl SaslConfig {
    fn password(&self) -> Result<String, KeyError> {
        crate::config::secret(
            "sasl.password",
            self.password.as_ref().map(Secret::expose),
            self.password_file.as_deref(),
        )?
        .ok_or_else(|| KeyError::new("sasl.password", "set password or password_file"))
    }
}

/// Sets `bootstrap.servers`, `security.protocol` and the TLS and SASL settings on `config`.
///
/// The protocol follows from what is set: `PLAINTEXT`, `SSL` (tls), `SASL_PLAINTEXT` (sasl) or `SASL_SSL` (both).
/// Also the check of these values at start-up: an unreadable TLS or password file, or a client
/// certificate without its key is an error.
pub fn connection(
    config: &mut ClientConfig,
    brokers: &str,
    tls: Option<&TlsConfig>,
    sasl: Option<&SaslConfig>,
) -> Result<(), KeyError> {
    if brokers.trim().is_empty() {
        return Err(KeyError {
            key: "brokers".to_owned(),
            message: "must not be empty".to_owned(),
        });
    }
    config.set("bootstrap.servers", brokers);
    let protocol = match (tls, sasl) {
        (None, None) => "PLAINTEXT",
        (Some(_), None) => "SSL",
        (None, Some(_)) => "SASL_PLAINTEXT",
        (Some(_), Some(_)) => "SASL_SSL",
    };
    config.set("security.protocol", protocol);
    if let Some(tls) = tls {
        tls.check()?;
        for (key, path) in [
            ("ssl.ca.location", &tls.ca_file),
            ("ssl.certificate.location", &tls.cert_file),
            ("ssl.key.location", &tls.key_file),
        ] {
            if let Some(path) = path {
                config.set(key, path.display().to_string());
            }
        }
    }
    if let Some(sasl) = sasl {
        config
            .set("sasl.mechanism", sasl.mechanism.as_str())
            .set("sasl.username", &sasl.username)
            .set("sasl.password", sasl.password()?);
    }
    Ok(())
}

/// What to check for an error librdkafka reports (its code and reason), in the keys of `section` (`agent.kafka`);
/// `None` when the error does not point at GoMon's settings.
pub fn hint(section: &str, code: Option<RDKafkaErrorCode>, reason: &str) -> Option<String> {
    // A refused client certificate arrives as a transport failure with the TLS alert in the reason.
    let tls = code == Some(RDKafkaErrorCode::SSL)
        || reason.contains("SSL handshake failed")
        || reason.contains("SSL routines");
    match code {
        _ if tls => Some(format!(
            "TLS to the brokers failed: check that {section}.tls.ca_file holds the CA that signed the brokers' \
             certificates and that they name the address in {section}.brokers; brokers that require client \
             certificates need {section}.tls.cert_file and key_file, signed by a CA they trust"
        )),
        Some(RDKafkaErrorCode::Authentication) => Some(format!(
            "the brokers refused the credentials: check {section}.sasl (mechanism, username, password)"
        )),
        _ => None,
    }
}

/// Logs an error a Kafka client of `section` (`agent.kafka`) reports (librdkafka's error callback) at ERROR, with
/// the broker and reason librdkafka gives and, for TLS and SASL failures, the settings to check.
pub fn log_client_error(section: &str, error: &KafkaError, reason: &str) {
    match hint(section, error.rdkafka_error_code(), reason) {
        Some(hint) => tracing::error!(%error, reason, hint, "cannot connect to Kafka: {reason}"),
        None => tracing::error!(%error, reason, "Kafka client error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sasl(password: Option<&str>, password_file: Option<PathBuf>) -> SaslConfig {
        SaslConfig {
            mechanism: SaslMechanism::ScramSha512,
            username: "gomon".to_owned(),
            password: password.map(Secret::from),
            password_file,
        }
    }

    /// A directory of its own for a test's files.
    fn test_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gomon-kafka-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn protocol_follows_from_tls_and_sasl() {
        let dir = test_dir("protocol");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").expect("write");
        let tls = TlsConfig {
            ca_file: Some(ca.clone()),
            cert_file: None,
            key_file: None,
        };
        let sasl = sasl(Some("secret"), None);
        for (tls, sasl, protocol) in [
            (None, None, "PLAINTEXT"),
            (Some(&tls), None, "SSL"),
            (None, Some(&sasl), "SASL_PLAINTEXT"),
            (Some(&tls), Some(&sasl), "SASL_SSL"),
        ] {
            let mut config = ClientConfig::new();
            connection(&mut config, "k:9092", tls, sasl).expect("valid");
            assert_eq!(config.get("security.protocol"), Some(protocol));
            assert_eq!(config.get("bootstrap.servers"), Some("k:9092"));
        }
        let mut config = ClientConfig::new();
        connection(&mut config, "k:9092", Some(&tls), Some(&sasl)).expect("valid");
        assert_eq!(
            config.get("ssl.ca.location"),
            Some(ca.display().to_string().as_str())
        );
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.password"), Some("secret"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn hints_name_the_settings_to_check() {
        let ssl = hint(
            "agent.kafka",
            Some(RDKafkaErrorCode::SSL),
            "ssl://k:9093/bootstrap: SSL handshake failed: certificate verify failed",
        )
        .expect("TLS hint");
        assert!(ssl.contains("agent.kafka.tls.ca_file"), "{ssl}");
        let alert = hint(
            "aggregator.kafka",
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            "ssl://k:9093/bootstrap: Receive failed: SSL routines::tlsv13 alert certificate required",
        )
        .expect("TLS hint");
        assert!(alert.contains("aggregator.kafka.tls.cert_file"), "{alert}");
        let sasl =
            hint("agent.kafka", Some(RDKafkaErrorCode::Authentication), "").expect("SASL hint");
        assert!(sasl.contains("agent.kafka.sasl"), "{sasl}");
        let down = hint(
            "agent.kafka",
            Some(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert_eq!(down, None);
    }

    #[test]
    fn tls_files_are_read_at_start_up_and_errors_name_the_key() {
        let dir = test_dir("tls");
        let pem = dir.join("file.pem");
        std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\n").expect("write");
        let tls = |ca: &Path, cert: Option<&Path>, key: Option<&Path>| TlsConfig {
            ca_file: Some(ca.to_owned()),
            cert_file: cert.map(Path::to_owned),
            key_file: key.map(Path::to_owned),
        };
        let mut config = ClientConfig::new();
        connection(
            &mut config,
            "k:9092",
            Some(&tls(&pem, Some(&pem), Some(&pem))),
            None,
        )
        .expect("valid");
        assert_eq!(config.get("security.protocol"), Some("SSL"));
        assert!(config.get("ssl.certificate.location").is_some());
        assert!(config.get("ssl.key.location").is_some());

        let missing = dir.join("missing.pem");
        for (settings, key) in [
            (tls(&missing, None, None), "tls.ca_file"),
            (tls(&dir, None, None), "tls.ca_file"),
            (tls(&pem, Some(&missing), Some(&pem)), "tls.cert_file"),
            (tls(&pem, Some(&pem), Some(&missing)), "tls.key_file"),
            (tls(&pem, Some(&pem), None), "tls.key_file"),
            (tls(&pem, None, Some(&pem)), "tls.cert_file"),
        ] {
            let error = connection(&mut ClientConfig::new(), "k:9092", Some(&settings), None)
                .expect_err("refused");
            assert_eq!(error.key, key, "{settings:?}: {error}");
        }
        let error = connection(
            &mut ClientConfig::new(),
            "k:9092",
            Some(&tls(&missing, None, None)),
            None,
        )
        .expect_err("missing");
        assert!(
            error.message.contains(&missing.display().to_string()),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn password_comes_from_a_file_and_errors_name_the_key() {
        let dir = std::env::temp_dir().join(format!("gomon-kafka-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("password");
        std::fs::write(&file, "from-file\n").expect("write");
        let mut config = ClientConfig::new();
        connection(&mut config, "k:9092", None, Some(&sasl(None, Some(file)))).expect("valid");
        assert_eq!(config.get("sasl.password"), Some("from-file"));

        let missing = sasl(None, Some(dir.join("missing")));
        let error = connection(&mut ClientConfig::new(), "k:9092", None, Some(&missing))
            .expect_err("unreadable");
        assert_eq!(error.key, "sasl.password_file");
        let both = sasl(Some("a"), Some(dir.join("password")));
        let error = connection(&mut ClientConfig::new(), "k:9092", None, Some(&both))
            .expect_err("ambiguous");
        assert_eq!(error.key, "sasl.password");
        let unknown = serde_json::from_str::<SaslMechanism>("\"GSSAPI\"").expect_err("mechanism");
        assert!(unknown.to_string().contains("SCRAM-SHA-512"), "{unknown}");
        let error =
            connection(&mut ClientConfig::new(), " ", None, None).expect_err("empty brokers");
        assert_eq!(error.key, "brokers");
        let _ = std::fs::remove_dir_all(dir);
    }
}
