//! Settings of an outgoing HTTP client shared by every component that posts to a receiver (remote write, the
//! alerting webhook): basic or bearer authentication and TLS (a CA to trust, a client certificate), with their
//! files read and checked once, at start-up. Errors name the key; secrets never appear in them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{KeyError, Secret};

/// HTTP basic authentication.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password; or `password_file`.
    pub password: Option<Secret>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
}

/// TLS to an HTTP receiver (PEM files).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpTlsConfig {
    /// CA certificate to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate, for receivers that require one (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// Key of the client certificate.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    pub insecure_skip_verify: bool,
}

/// Credentials sent with every request.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// HTTP basic authentication: user name and password.
    Basic(String, Option<Secret>),
    /// A bearer token.
    Bearer(Secret),
}

impl Credentials {
    /// The credentials of `basic` or of the bearer token (`bearer`, or the file `bearer_file`); `None` when neither
    /// is set. Both set, a file that cannot be read or an empty secret is an error naming `{section}.<key>` (or
    /// `<key>` when `section` is empty).
    pub fn read(
        section: &str,
        basic: Option<&BasicAuth>,
        bearer: Option<&Secret>,
        bearer_file: Option<&Path>,
    ) -> Result<Option<Credentials>, KeyError> {
        let key = |name: &str| {
            if section.is_empty() {
                name.to_owned()
            } else {
                format!("{section}.{name}")
            }
        };
        if let Some(basic) = basic {
            if bearer.is_some() || bearer_file.is_some() {
                return Err(KeyError::new(
                    key("basic_auth"),
                    "set either basic_auth or a bearer token, not both",
                ));
            }
            let password = crate::config::secret(
                &key("basic_auth.password"),
                basic.password.as_ref().map(Secret::expose),
                basic.password_file.as_deref(),
            )?;
            return Ok(Some(Credentials::Basic(
                basic.username.clone(),
                password.map(Secret::new),
            )));
        }
        Ok(crate::config::secret(
            &key("bearer_token"),
            bearer.map(Secret::expose),
            bearer_file,
        )?
        .map(|token| Credentials::Bearer(Secret::new(token))))
    }

    /// `request` carrying these credentials.
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Credentials::Basic(user, password) => {
                request.basic_auth(user, password.as_ref().map(Secret::expose))
            }
            Credentials::Bearer(token) => request.bearer_auth(token.expose()),
        }
    }

    /// The secret parts, to remove from anything a receiver answers before it is logged or stored.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            Credentials::Basic(_, password) => password.iter().map(Secret::expose).collect(),
            Credentials::Bearer(token) => vec![token.expose()],
        }
    }
}

/// The TLS settings with their files read and parsed, ready for a client builder.
#[derive(Debug, Default)]
pub struct TlsMaterial {
    /// The CA to trust besides the system's.
    pub ca: Option<reqwest::Certificate>,
    /// The client certificate and key.
    pub identity: Option<reqwest::Identity>,
    /// Accept any server certificate.
    pub insecure_skip_verify: bool,
}

impl HttpTlsConfig {
    /// Reads and parses the files; errors name `{section}.<key>` (`aggregator.remote_write.tls.ca_file`).
    pub fn read(&self, section: &str) -> Result<TlsMaterial, KeyError> {
        let key = |name: &str| format!("{section}.{name}");
        let read = |name: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|error| {
                KeyError::new(
                    key(name),
                    format!("cannot read {}: {error}", path.display()),
                )
            })
        };
        let mut material = TlsMaterial {
            insecure_skip_verify: self.insecure_skip_verify,
            ..TlsMaterial::default()
        };
        if let Some(path) = &self.ca_file {
            let certificate = reqwest::Certificate::from_pem(&read("ca_file", path)?)
                .map_err(|error| KeyError::new(key("ca_file"), error.to_string()))?;
            material.ca = Some(certificate);
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(private)) => {
                let mut pem = read("cert_file", cert)?;
                pem.extend(read("key_file", private)?);
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|error| KeyError::new(key("cert_file"), error.to_string()))?;
                material.identity = Some(identity);
            }
            (None, None) => {}
            _ => {
                return Err(KeyError::new(
                    key("cert_file"),
                    "cert_file and key_file go together",
                ));
            }
        }
        Ok(material)
    }
}

impl TlsMaterial {
    /// `builder` trusting the CA, presenting the client certificate, and verifying the server's certificate unless
    /// `insecure_skip_verify`.
    pub fn apply(self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        builder = builder.danger_accept_invalid_certs(self.insecure_skip_verify);
        if let Some(ca) = self.ca {
            builder = builder.add_root_certificate(ca);
        }
        if let Some(identity) = self.identity {
            builder = builder.identity(identity);
        }
        builder
    }
}

/// Whether `text` is an `http` or `https` URL with a host.
pub fn is_http_url(text: &str) -> bool {
    reqwest::Url::parse(text)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_one_kind_and_name_their_key() {
        let basic = BasicAuth {
            username: "u".into(),
            password: Some(Secret::new("hunter2")),
            password_file: None,
        };
        let error =
            Credentials::read("s", Some(&basic), Some(&Secret::new("t")), None).expect_err("both");
        assert_eq!(error.key, "s.basic_auth");
        assert!(matches!(
            Credentials::read("s", Some(&basic), None, None),
            Ok(Some(Credentials::Basic(..)))
        ));
        let error = Credentials::read("s", None, None, Some(Path::new("/nonexistent/token")))
            .expect_err("missing file");
        assert_eq!(error.key, "s.bearer_token_file");
        assert!(
            Credentials::read("s", None, None, None)
                .expect("none")
                .is_none()
        );
        let error = HttpTlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..HttpTlsConfig::default()
        }
        .read("s.tls")
        .expect_err("missing CA");
        assert_eq!(error.key, "s.tls.ca_file");
        assert!(is_http_url("https://example.com/x"));
        assert!(!is_http_url("file:///etc/passwd"));
        assert!(!is_http_url("example.com"));
    }
}
