//! Where errands keeps its jobs. [`Store`] is the contract every backend meets, each state
//! change one atomic step; [`SqliteStore`] is the embedded default. The [`conformance`] suite
//! is written once against the trait and run for every backend.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
mod node;
mod notice;
pub mod sqlite;
mod store;

pub use error::StoreError;
pub use node::{Heartbeat, MinuteCount, Reap, RecordedWorker, MAINTENANCE_ROLE};
pub use notice::Notice;
pub use sqlite::{SqliteStore, SyncMode};
pub use store::{
    apply_report, ClaimRequest, CompletedJob, Enqueued, FiredCron, JobFilter, JobPage, MovedJob,
    QueueCounts, QueueInfo, ReleasedJob, Report, Reported, Store, StoredCron,
};
