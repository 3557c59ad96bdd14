//! The agent's error type.

use std::path::PathBuf;

use gomon_runtime::config::KeyError;

/// Why a collector could not be created or a host file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range or cannot be resolved; its key is the whole path, e.g.
    /// `agent.interval`.
    #[error(transparent)]
    Config(#[from] KeyError),
    /// A host file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file, under the configured root.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A host file was read but does not have the expected format.
    #[error("cannot parse {}: {message}", path.display())]
    Parse {
        /// The file, under the configured root.
        path: PathBuf,
        /// What did not parse.
        message: String,
    },
}

impl Error {
    /// A [`Error::Parse`] for `path`.
    pub(crate) fn parse(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Parse {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same error, for a second subsystem that depended on the same file.
    pub(crate) fn again(&self) -> Self {
        match self {
            Error::Config(error) => Error::Config(error.clone()),
            Error::Read { path, source } => Error::Read {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Parse { path, message } => Error::parse(path.clone(), message.clone()),
        }
    }
}
