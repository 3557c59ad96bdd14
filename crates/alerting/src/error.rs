//! The one error type of the alerting core; the API maps each kind to a status code.

/// What went wrong with an alerting operation.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// No alert with that id.
    #[error("alert {0} not found")]
    NotFound(uuid::Uuid),
    /// Something other than an alert does not exist (a silence).
    #[error("{0}")]
    Missing(String),
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

/// Whether `error` means the database is away (unreachable, shutting down, overloaded, timed out) rather than a
/// bug: such errors are answered with 503 and retried, never reported as internal errors.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    use sqlx::Error as E;
    match error {
        // A connection refused, cut or closed mid-handshake (Protocol) is the database being away.
        E::PoolTimedOut
        | E::PoolClosed
        | E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::WorkerCrashed => true,
        // 08xxx connection exceptions, 57xxx operator intervention (shutdown, statement timeout),
        // 53xxx insufficient resources; SQLite 5/6 busy/locked.
        E::Database(db) => {
            let code = db.code().unwrap_or_default();
            ["08", "57", "53"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "5"
                || code == "6"
        }
        _ => false,
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            match &error {
                sqlx::Error::Database(db) => Error::Unavailable(db.message().to_owned()),
                _ => Error::Unavailable(error.to_string()),
            }
        } else {
            Error::Internal(error.to_string())
        }
    }
}

/// Result of an alerting operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
