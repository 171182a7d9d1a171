//! Lifecycle decisions: given a job as it is and what happened to it, what it becomes.
//!
//! Every function here is pure (no I/O, time and randomness passed in), so every backend
//! applies the same rules: a backend reads the job, asks one of these functions, and writes
//! the answer guarded by the state (and lease) it read, so a concurrent change on another node
//! makes the write miss instead of overwriting it.

mod cancel;
pub mod cron;
mod failure;
mod history;
mod interruption;
mod refusal;
mod release;
mod retry;
mod unique;

pub use cancel::{decide_cancel, Cancellation};
pub use failure::{after_failure, decide_failure, FailedAttempt, FailureCause, NextRun};
pub use history::{
    capped_history, truncate, truncate_error, ERROR_HISTORY_FIRST, ERROR_HISTORY_LATEST,
    MAX_ERROR_MESSAGE_BYTES, MAX_ERROR_TYPE_BYTES, MAX_TRACEBACK_BYTES,
};
pub use interruption::{decide_interruption, Interruption, MAX_FREE_INTERRUPTIONS};
pub use refusal::{decide_delete, Refused};
pub use release::ReleaseCause;
pub use retry::{decide_retry, RetryPlan};
pub use unique::{UniqueRule, HOLDING_STATES};
