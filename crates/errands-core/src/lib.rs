//! The errands job model: what a job is, how it moves between states, how retries back off,
//! and the messages workers exchange with the server. This crate does no I/O, so the store,
//! the server and the SDKs all share one definition of the rules.

pub mod backoff;
pub mod clock;
pub mod cron;
pub mod enqueue;
pub mod event;
pub mod id;
pub mod job;
pub mod lifecycle;
pub mod protocol;
pub mod state;

pub use backoff::Backoff;
pub use clock::{Clock, ManualClock, OffsetClock, SystemClock};
pub use enqueue::{EnqueueRequest, Limits, NewJob, ValidationError};
pub use id::JobId;
pub use job::{AttemptError, Job, Progress};
pub use state::JobState;
