//! Turning driver errors into store errors: what passes (a serialization failure, a
//! deadlock, a connection lost in a failover or restart) is transient and retried.

use errands_store::StoreError;
use tokio_postgres::error::SqlState;

/// SQLSTATE classes and codes after which the same operation may succeed.
fn is_transient(state: &SqlState) -> bool {
    let code = state.code();
    *state == SqlState::T_R_SERIALIZATION_FAILURE
        || *state == SqlState::T_R_DEADLOCK_DETECTED
        || *state == SqlState::ADMIN_SHUTDOWN
        || *state == SqlState::CRASH_SHUTDOWN
        || *state == SqlState::CANNOT_CONNECT_NOW
        // Class 08: connection exceptions.
        || code.starts_with("08")
}

/// A driver error as a store error.
pub(crate) fn from_pg(error: tokio_postgres::Error) -> StoreError {
    let transient = match error.code() {
        Some(state) => is_transient(state),
        // No SQLSTATE: the connection itself failed or closed.
        None => {
            error.is_closed()
                || std::error::Error::source(&error)
                    .is_some_and(|source| source.is::<std::io::Error>())
        }
    };
    let message = describe(&error);
    if transient {
        StoreError::Transient(message)
    } else {
        StoreError::Backend(message)
    }
}

/// The error's database message when it has one (the driver's own text is only "db error").
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

/// The pool could not hand out a connection.
pub(crate) fn from_pool(error: deadpool_postgres::PoolError) -> StoreError {
    match error {
        deadpool_postgres::PoolError::Backend(error) => from_pg(error),
        deadpool_postgres::PoolError::Closed => StoreError::Closed,
        other => StoreError::Transient(format!("no database connection: {other}")),
    }
}

/// True if `error` is a unique violation of the constraint `constraint`.
pub(crate) fn violates(error: &tokio_postgres::Error, constraint: &str) -> bool {
    error.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some(constraint)
    })
}

/// Stored data the store cannot read.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("stored data is invalid: {what}"))
}
