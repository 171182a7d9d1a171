//! Rust SDK for [errands](https://github.com/errands): enqueue typed jobs with [`Client`] and
//! process them with a [`Worker`].
//!
//! ```no_run
//! use errands_client::{Client, Job, JobContext, HandlerError, Worker};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Resize { path: String, width: u32 }
//!
//! impl Job for Resize {
//!     const KIND: &'static str = "images.resize";
//!     type Output = String;
//! }
//!
//! async fn resize(ctx: JobContext, job: Resize) -> Result<String, HandlerError> {
//!     ctx.progress(50.0, "resizing").await;
//!     Ok(format!("{}@{}", job.path, job.width))
//! }
//!
//! # async fn demo() -> Result<(), errands_client::Error> {
//! let client = Client::from_env()?;
//! let handle = client.enqueue(&Resize { path: "a.png".into(), width: 100 }).await?;
//! let worker = Worker::builder(client.clone()).capacity(10).handle(resize).build();
//! tokio::spawn(worker.run());
//! let output: String = client.result(&handle, std::time::Duration::from_secs(30)).await?;
//! # Ok(()) }
//! ```

mod client;
mod error;
mod events;
mod job;
mod options;
mod socket;
mod trace;
#[cfg(feature = "postgres")]
pub mod transactional;
pub mod worker;

pub use client::Client;
pub use errands_core::cron::{CatchUp, CronEntry, CronSpec};
pub use errands_core::{Backoff, EnqueueRequest, Job as JobInfo, JobId, JobState, Progress};
pub use error::Error;
pub use job::{Job, JobHandle};
pub use options::EnqueueOptions;
pub use worker::{HandlerError, JobContext, ShutdownHandle, Worker, WorkerBuilder};
