//! The one error type of the alerting core; the API maps each kind to a status code.

/// What went wrong with an alerting operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No alert with that id.
    #[error("alert {0} not found")]
    NotFound(uuid::Uuid),
    /// The change is not allowed in the alert's current state.
    #[error("{0}")]
    Conflict(String),
    /// A field's value is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The offending field's name.
        field: String,
        /// Why it is invalid.
        message: String,
    },
    /// The database cannot be reached or did not answer in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a corrupt row.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::Invalid`] for `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &error {
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => {
                Error::Unavailable(error.to_string())
            }
            E::Database(db) => {
                let code = db.code().unwrap_or_default();
                // 08xxx connection exceptions, 57xxx operator intervention (shutdown, statement timeout),
                // 53xxx insufficient resources; SQLite 5/6 busy/locked.
                if code.starts_with("08")
                    || code.starts_with("57")
                    || code.starts_with("53")
                    || code == "5"
                    || code == "6"
                {
                    Error::Unavailable(db.message().to_owned())
                } else {
                    Error::Internal(error.to_string())
                }
            }
            _ => Error::Internal(error.to_string()),
        }
    }
}

/// Result of an alerting operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
