//! Layered configuration: built-in defaults, then an optional YAML file, then `GOMON_...` environment variables.
//!
//! A nested key maps to an environment variable by upper-casing it and joining the levels with `__`:
//! `alerting.database.url` is `GOMON_ALERTING__DATABASE__URL`. `GOMON_LOG` (the log filter) and `GOMON_LOG_FORMAT`
//! are not keys.
//!
//! A list or map in a variable is written in figment's inline syntax (`[a,b]`, `{job=node,env=prod}`) or as a YAML
//! flow collection (`[a, b]`, `{job: node, env: prod}`), as in the configuration file.

use std::fmt;
use std::path::Path;

use figment::providers::{Env, Format, Serialized};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A credential of the configuration (password, token, URL holding a token): its `Debug` is `<redacted>`, so no
/// log line, error or panic message shows it. Read it with [`Secret::expose`] where it is sent.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, to send.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// The configuration file's format for figment: YAML, read by the maintained `yaml_serde`.
struct Yaml;

impl Format for Yaml {
    type Error = yaml_serde::Error;

    const NAME: &'static str = "YAML";

    fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Self::Error> {
        yaml_serde::from_str(text)
    }
}

/// Prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "GOMON_";

/// Environment variables with the prefix that are not configuration keys.
const NOT_KEYS: &[&str] = &["LOG", "LOG_FORMAT", "CONFIG"];

/// Why the configuration could not be loaded; the message names the offending key and where it came from.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

/// A configuration value that cannot be used: its key and why. A section's check names keys relative to the
/// section (`url`), and its caller adds the section once with [`KeyError::within`] (`aggregator.remote_write.url`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct KeyError {
    /// The key at fault.
    pub key: String,
    /// What is wrong with it; never a secret.
    pub message: String,
}

impl KeyError {
    /// `key` is wrong: `message`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same error with its key inside `section` (`agent.kafka` + `tls.ca_file`).
    pub fn within(mut self, section: &str) -> Self {
        self.key = format!("{section}.{}", self.key);
        self
    }
}

/// The secret of `key`: `inline`, or the text of `file`, trimmed; `None` when neither is set. Both set, a file
/// that cannot be read, or a secret empty after trimming, is an error naming `{key}` or `{key}_file`.
pub fn secret(
    key: &str,
    inline: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<String>, KeyError> {
    let name = key.rsplit('.').next().unwrap_or(key);
    let (at, value) = match (inline, file) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(KeyError::new(
                key.to_owned(),
                format!("set either {name} or {name}_file, not both"),
            ));
        }
        (Some(value), None) => (key.to_owned(), value.trim().to_owned()),
        (None, Some(path)) => {
            let at = format!("{key}_file");
            match std::fs::read_to_string(path) {
                Ok(text) => (at, text.trim().to_owned()),
                Err(error) => {
                    return Err(KeyError::new(
                        at,
                        format!("cannot read {}: {error}", path.display()),
                    ));
                }
            }
        }
    };
    if value.is_empty() {
        return Err(KeyError::new(at, "is empty".to_owned()));
    }
    Ok(Some(value))
}

/// Loads `T` from its defaults, the YAML file at `path` (when given) and the `GOMON_` environment.
///
/// A file that is named but missing is an error; an unknown key, a value of the wrong type or an
/// out-of-range value is an error naming the key.
pub fn load<T>(path: Option<&Path>) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = path {
        if !path.is_file() {
            return Err(ConfigError(format!(
                "configuration file {} does not exist",
                path.display()
            )));
        }
        figment = figment.merge(Yaml::file_exact(path));
    }
    figment = figment.merge(Environment(
        Env::prefixed(ENV_PREFIX).ignore(NOT_KEYS).split("__"),
    ));
    figment.extract().map_err(|errors| {
        let messages: Vec<String> = errors.into_iter().map(describe).collect();
        ConfigError(messages.join("; "))
    })
}

/// The `GOMON_` variables: figment's environment provider, whose values are read in figment's inline syntax, and
/// then the values it left as strings that are YAML flow maps or lists (`{job: node}`, `[a, b]`) read as YAML.
struct Environment(Env);

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = self.0.data()?;
        for dict in data.values_mut() {
            dict.values_mut().for_each(yaml_flow);
        }
        Ok(data)
    }
}

/// Replaces, within `value`, every string that is a YAML flow map or list by what it holds. A string that YAML reads
/// otherwise, or as a collection with an empty entry (`{abc}` is the map `abc: null`), is left as it is, so a plain
/// value that happens to start with a brace stays a string.
fn yaml_flow(value: &mut Value) {
    match value {
        Value::Dict(_, dict) => dict.values_mut().for_each(yaml_flow),
        Value::Array(_, items) => items.iter_mut().for_each(yaml_flow),
        Value::String(_, text) => {
            let text = text.trim();
            let collection = (text.starts_with('{') && text.ends_with('}'))
                || (text.starts_with('[') && text.ends_with(']'));
            if !collection {
                return;
            }
            if let Ok(parsed) = yaml_serde::from_str::<Value>(text)
                && matches!(parsed, Value::Dict(..) | Value::Array(..))
                && !has_empty(&parsed)
            {
                *value = parsed;
            }
        }
        _ => {}
    }
}

/// Whether `value` holds a null anywhere.
fn has_empty(value: &Value) -> bool {
    match value {
        Value::Empty(..) => true,
        Value::Dict(_, dict) => dict.values().any(has_empty),
        Value::Array(_, items) => items.iter().any(has_empty),
        _ => false,
    }
}

/// One figment error as "key `a.b` (from SOURCE): what is wrong".
fn describe(error: figment::Error) -> String {
    let key = error.path.join(".");
    let source = error
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(source) => format!("{} {source}", m.name),
            None => m.name.to_string(),
        })
        .unwrap_or_else(|| "defaults".to_string());
    let mut kind = error.kind.to_string();
    // A string where a collection belongs: in a variable, one that neither syntax reads.
    if let figment::error::Kind::InvalidType(figment::error::Actual::Str(_), expected) = &error.kind
    {
        if expected.contains("map") {
            kind.push_str(
                "; a map in an environment variable is written {key=value,other=value} or \
                 {key: value, other: value}",
            );
        } else if expected.contains("sequence") {
            kind.push_str("; a list in an environment variable is written [a,b] or [a, b]");
        }
    }
    if key.is_empty() {
        format!("{kind} (from {source})")
    } else {
        format!(
            "key `{key}` (environment variable {}{}, from {source}): {kind}",
            ENV_PREFIX,
            key.to_uppercase().replace('.', "__")
        )
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure type
mod tests {
    use super::*;

    #[test]
    fn a_secret_reads_as_its_text_and_debugs_as_redacted() {
        #[derive(Debug, Deserialize)]
        struct Holder {
            token: Secret,
        }
        let holder: Holder = serde_json::from_str(r#"{"token":"s3cret"}"#).expect("parse");
        assert_eq!(holder.token.expose(), "s3cret");
        let shown = format!("{holder:?} {:?}", Some(Secret::from("s3cret")));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        port: u16,
        name: String,
        labels: std::collections::BTreeMap<String, String>,
        list: Vec<String>,
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Root {
        inner: Inner,
    }

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.yaml", "inner:\n  port: 80\n  name: file\n")?;
            jail.set_env("GOMON_INNER__NAME", "env");
            let root: Root = load(Some(Path::new("c.yaml"))).map_err(|e| e.to_string())?;
            assert_eq!(root.inner.port, 80);
            assert_eq!(root.inner.name, "env");
            Ok(())
        });
    }

    #[test]
    fn invalid_value_names_key_and_variable() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GOMON_INNER__PORT", "not-a-port");
            let error = load::<Root>(None).expect_err("must fail").to_string();
            assert!(error.contains("`inner.port`"), "{error}");
            assert!(error.contains("GOMON_INNER__PORT"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn maps_and_lists_in_variables_take_figment_s_syntax_or_yaml_s() {
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        for (variable, want) in [
            ("{job=node}", labels(&[("job", "node")])),
            ("{job: node}", labels(&[("job", "node")])),
            (
                " {job: node, env: \"prod eu\"} ",
                labels(&[("env", "prod eu"), ("job", "node")]),
            ),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env("GOMON_INNER__LABELS", variable);
                jail.set_env("GOMON_INNER__LIST", "[a, b]");
                let root: Root = load(None).map_err(|e| e.to_string())?;
                assert_eq!(root.inner.labels, want, "{variable}");
                assert_eq!(root.inner.list, ["a", "b"]);
                Ok(())
            });
        }
        // A plain value starting with a brace stays a string.
        figment::Jail::expect_with(|jail| {
            jail.set_env("GOMON_INNER__NAME", "{abc}");
            let root: Root = load(None).map_err(|e| e.to_string())?;
            assert_eq!(root.inner.name, "{abc}");
            Ok(())
        });
        // Neither syntax: the key, the variable and both accepted forms.
        figment::Jail::expect_with(|jail| {
            jail.set_env("GOMON_INNER__LABELS", "{job: }");
            let error = load::<Root>(None).expect_err("must fail").to_string();
            assert!(error.contains("`inner.labels`"), "{error}");
            assert!(error.contains("GOMON_INNER__LABELS"), "{error}");
            assert!(error.contains("{key=value,other=value}"), "{error}");
            assert!(error.contains("{key: value, other: value}"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_in_file_is_an_error() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.yaml", "inner:\n  prot: 80\n")?;
            let error = load::<Root>(Some(Path::new("c.yaml")))
                .expect_err("must fail")
                .to_string();
            assert!(error.contains("prot"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn a_secret_comes_inline_or_from_a_file_trimmed_never_both() {
        let dir = tempfile_dir();
        let file = dir.join("token");
        std::fs::write(&file, "  s3cret\n").expect("write");
        let key = "aggregator.remote_write.bearer_token";
        assert_eq!(secret(key, None, None).expect("none"), None);
        assert_eq!(
            secret(key, Some(" t "), None).expect("inline").as_deref(),
            Some("t")
        );
        assert_eq!(
            secret(key, None, Some(&file)).expect("file").as_deref(),
            Some("s3cret")
        );
        let both = secret(key, Some("t"), Some(&file)).expect_err("both");
        assert_eq!(
            both.to_string(),
            "aggregator.remote_write.bearer_token: set either bearer_token or bearer_token_file, not both"
        );
        let missing = secret(key, None, Some(&dir.join("absent"))).expect_err("missing");
        assert!(missing.key.ends_with("bearer_token_file"), "{missing}");
        std::fs::write(&file, "\n").expect("write");
        let empty = secret(key, None, Some(&file)).expect_err("empty");
        assert_eq!(
            empty.to_string(),
            "aggregator.remote_write.bearer_token_file: is empty"
        );
        std::fs::remove_dir_all(dir).expect("clean up");
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gomon-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn missing_file_is_an_error() {
        let error = load::<Root>(Some(Path::new("/nonexistent/gomon.yaml")))
            .expect_err("must fail")
            .to_string();
        assert!(error.contains("does not exist"), "{error}");
    }
}
