//! Typed jobs.

use std::marker::PhantomData;

use errands_core::JobId;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::options::EnqueueOptions;

/// A kind of job: its arguments are the implementing type, serialised as JSON.
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// The task name workers dispatch on.
    const KIND: &'static str;
    /// What the job returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Options every job of this kind gets unless the caller overrides them.
    fn options() -> EnqueueOptions {
        EnqueueOptions::default()
    }
}

/// A job that was enqueued, remembering its type so its result comes back typed.
#[derive(Debug)]
pub struct JobHandle<J> {
    /// The job's id.
    pub id: JobId,
    /// False when a unique key matched an existing job.
    pub created: bool,
    kind: PhantomData<fn() -> J>,
}

impl<J> JobHandle<J> {
    pub(crate) fn new(id: JobId, created: bool) -> Self {
        Self {
            id,
            created,
            kind: PhantomData,
        }
    }
}

impl<J> Clone for JobHandle<J> {
    fn clone(&self) -> Self {
        Self::new(self.id, self.created)
    }
}
