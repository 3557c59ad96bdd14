//! Connection settings shared by every Kafka client of GoMon (the agent's producer, the aggregator's consumer and
//! dead-letter producer): brokers, TLS and SASL, and the librdkafka settings they mean.

use std::fmt;
use std::path::PathBuf;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

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
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// User name.
    pub username: String,
    /// Password; or `password_file`.
    pub password: Option<String>,
    /// File holding the password (a mounted Kubernetes Secret).
    pub password_file: Option<PathBuf>,
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .finish()
    }
}

/// A Kafka setting that cannot be used; `key` is relative to the client's section (`sasl.password_file`).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SecurityError {
    /// The key at fault, relative to the section holding `tls` and `sasl`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

/// Compression codecs librdkafka knows.
pub const COMPRESSIONS: &[&str] = &["none", "gzip", "snappy", "lz4", "zstd"];
const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

impl SaslConfig {
    fn password(&self) -> Result<String, SecurityError> {
        crate::config::secret(
            "sasl.password",
            self.password.as_deref(),
            self.password_file.as_deref(),
        )
        .map_err(|error| SecurityError {
            key: error.key,
            message: error.message,
        })?
        .ok_or_else(|| SecurityError {
            key: "sasl.password".to_owned(),
            message: "set password or password_file".to_owned(),
        })
    }
}

/// Sets `bootstrap.servers`, `security.protocol` and the TLS and SASL settings on `config`.
///
/// The protocol follows from what is set: `PLAINTEXT`, `SSL` (tls), `SASL_PLAINTEXT` (sasl) or `SASL_SSL` (both).
/// Also the check of these values at start-up: a bad mechanism or an unreadable password file is an error.
pub fn connection(
    config: &mut ClientConfig,
    brokers: &str,
    tls: Option<&TlsConfig>,
    sasl: Option<&SaslConfig>,
) -> Result<(), SecurityError> {
    if brokers.trim().is_empty() {
        return Err(SecurityError {
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
        if !MECHANISMS.contains(&sasl.mechanism.as_str()) {
            return Err(SecurityError {
                key: "sasl.mechanism".to_owned(),
                message: format!(
                    "{:?} is not one of {}",
                    sasl.mechanism,
                    MECHANISMS.join(", ")
                ),
            });
        }
        config
            .set("sasl.mechanism", &sasl.mechanism)
            .set("sasl.username", &sasl.username)
            .set("sasl.password", sasl.password()?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl(password: Option<&str>, password_file: Option<PathBuf>) -> SaslConfig {
        SaslConfig {
            mechanism: "SCRAM-SHA-512".to_owned(),
            username: "gomon".to_owned(),
            password: password.map(str::to_owned),
            password_file,
        }
    }

    #[test]
    fn protocol_follows_from_tls_and_sasl() {
        let tls = TlsConfig {
            ca_file: Some("/etc/kafka/ca.pem".into()),
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
        assert_eq!(config.get("ssl.ca.location"), Some("/etc/kafka/ca.pem"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.password"), Some("secret"));
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
        let mut bad = sasl(Some("a"), None);
        bad.mechanism = "GSSAPI".to_owned();
        let error = connection(&mut ClientConfig::new(), "k:9092", None, Some(&bad))
            .expect_err("mechanism");
        assert_eq!(error.key, "sasl.mechanism");
        let error =
            connection(&mut ClientConfig::new(), " ", None, None).expect_err("empty brokers");
        assert_eq!(error.key, "brokers");
        let _ = std::fs::remove_dir_all(dir);
    }
}
