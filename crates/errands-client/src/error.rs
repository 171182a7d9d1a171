//! SDK errors.

/// A job record, boxed to keep the error small.
pub type JobInfoBox = Box<errands_core::Job>;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such job (or route).
    #[error("not found: {message}")]
    NotFound {
        /// The server's message.
        message: String,
    },
    /// The server refused the input; nothing was stored.
    #[error("rejected{}: {message}", field.as_ref().map(|f| format!(" ({f})")).unwrap_or_default())]
    Rejected {
        /// The server's error code, e.g. `invalid_field`.
        code: String,
        /// The offending field, when named.
        field: Option<String>,
        /// The server's reason.
        message: String,
    },
    /// The job's state does not allow the operation (e.g. cancelling a completed job).
    #[error("conflict: {message}")]
    Conflict {
        /// The server's message.
        message: String,
    },
    /// The token is missing or wrong.
    #[error("unauthorized: the server needs a valid token (ERRANDS_TOKEN)")]
    Unauthorized,
    /// The server could not be reached or the connection broke.
    #[error("connection to the errands server failed: {0}")]
    Connection(String),
    /// The server failed.
    #[error("server error {status}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The application's database refused or failed a transactional enqueue.
    #[error("database: {message}")]
    Database {
        /// The database's message.
        message: String,
    },
    /// A value could not be (de)serialised.
    #[error("serialisation: {0}")]
    Serde(#[from] serde_json::Error),
    /// The job did not finish in time.
    #[error("timed out waiting for the job")]
    Timeout,
    /// The job ended dead: its attempts ran out or a handler refused to retry.
    #[error("job failed: {}", .0.errors.last().map(|e| format!("{}: {}", e.kind, e.message)).unwrap_or_default())]
    JobFailed(JobInfoBox),
    /// The job was cancelled.
    #[error("job was cancelled")]
    JobCancelled(JobInfoBox),
}
