//! The one error type of the alerting service; the API maps each kind to a status code.

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
    /// The service sheds this request: too many of its kind run at once (answered 429, to be retried shortly).
    #[error("{0}")]
    Busy(String),
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

/// Whether `error` means the database is away or cannot take the request now (unreachable, shutting down,
/// overloaded, timed out, read-only after a failover, a transaction to retry, a full or failing disk) rather than a
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
        E::Database(db) => match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            Some(postgres) => postgres_retryable(postgres.code()),
            None => sqlite_retryable(db.code().as_deref()),
        },
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs that mean "try again": 08 connection exceptions, 57 operator intervention (shutdown,
/// statement timeout), 53 insufficient resources, 25006 a read-only transaction (a replica, or a primary after a
/// failover), 40001 serialization failure and 40P01 deadlock.
fn postgres_retryable(code: &str) -> bool {
    ["08", "57", "53"]
        .iter()
        .any(|class| code.starts_with(class))
        || matches!(code, "25006" | "40001" | "40P01")
}

/// SQLite result codes that mean "try again" (the primary code is the low byte of the extended one): BUSY (5),
/// LOCKED (6), READONLY (8), IOERR (10), FULL (13), CANTOPEN (14).
fn sqlite_retryable(code: Option<&str>) -> bool {
    let extended: i64 = code.and_then(|code| code.parse().ok()).unwrap_or(0);
    matches!(extended & 0xff, 5 | 6 | 8 | 10 | 13 | 14)
}

/// Whether `error` is PostgreSQL refusing a value it was given (SQLSTATE class 22, data exception: a NUL byte, an
/// invalid encoding, a number out of range): the request's input, answered as invalid rather than as a fault.
fn is_bad_value(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|postgres| postgres.code().starts_with("22")))
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        if is_bad_value(&error) {
            let message = match &error {
                sqlx::Error::Database(db) => db.message().to_owned(),
                _ => error.to_string(),
            };
            tracing::warn!(%message, "the database refused a value of the request");
            return Error::invalid(
                "request",
                format!("the database refused a value: {message}"),
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes() {
        for code in ["08006", "57014", "53300", "25006", "40001", "40P01"] {
            assert!(postgres_retryable(code), "{code}");
        }
        for code in ["23505", "22021", "42P01"] {
            assert!(!postgres_retryable(code), "{code}");
        }
        // SQLITE_FULL, SQLITE_IOERR_WRITE (778), SQLITE_BUSY_SNAPSHOT (517), SQLITE_READONLY (8).
        for code in ["13", "778", "517", "8"] {
            assert!(sqlite_retryable(Some(code)), "{code}");
        }
        // SQLITE_CONSTRAINT_UNIQUE (2067), SQLITE_ERROR (1).
        for code in ["2067", "1"] {
            assert!(!sqlite_retryable(Some(code)), "{code}");
        }
        assert!(!sqlite_retryable(None));
    }
}
