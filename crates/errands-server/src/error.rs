//! Errors the engine reports to its callers.

use errands_core::ValidationError;
use errands_store::StoreError;

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request was invalid; nothing was stored.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(StoreError),
    /// The network failed (binding or serving).
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The server's settings cannot work; it did not start.
    #[error("configuration: {0}")]
    Config(String),
}
