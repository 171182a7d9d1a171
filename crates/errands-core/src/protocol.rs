//! Messages on the worker socket (`/v1/worker`). A text frame holds one message or an array
//! of them; see docs/protocol.md.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::JobId;
use crate::job::Progress;

/// A message from a worker to the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkerMessage {
    /// First message: what the worker serves.
    Hello(Hello),
    /// Progress of a running job.
    Progress {
        /// The job.
        id: JobId,
        /// What it reports.
        #[serde(flatten)]
        progress: Progress,
    },
    /// A job finished successfully.
    Complete {
        /// The job.
        id: JobId,
        /// What it returned.
        #[serde(default)]
        result: Option<Value>,
    },
    /// An attempt failed.
    Fail {
        /// The job.
        id: JobId,
        /// Why.
        error: FailError,
        /// `false` sends the job to `dead` at once.
        #[serde(default = "yes")]
        retry: bool,
        /// Seconds to wait before the retry, instead of the backoff.
        #[serde(default)]
        retry_after: Option<f64>,
    },
    /// The worker stopped a job unfinished because it is shutting down (its grace period ran
    /// out): the job goes back to its queue without using an attempt, up to a cap (see
    /// [`decide_interruption`](crate::lifecycle::decide_interruption)).
    Interrupted {
        /// The job.
        id: JobId,
    },
    /// The worker's new total capacity.
    Capacity {
        /// Jobs at once; 0 stops new deliveries.
        capacity: u32,
    },
}

fn yes() -> bool {
    true
}

/// The `hello` message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Queues in strict priority order.
    pub queues: Vec<String>,
    /// Queue weights, to pick queues at random by weight instead of strictly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<BTreeMap<String, u32>>,
    /// Jobs at once.
    pub capacity: u32,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Host the worker runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The worker's process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// SDK name, e.g. `errands-python`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
    /// SDK version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The error part of a `fail` message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailError {
    /// Error class.
    #[serde(rename = "type")]
    pub kind: String,
    /// Message.
    pub message: String,
    /// Stack trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
}

/// A message from the server to a worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Reply to `hello`.
    Welcome {
        /// The id the server knows this connection by.
        worker_id: String,
    },
    /// A job to run.
    Job(JobDelivery),
    /// Abort a running job.
    Cancel {
        /// The job.
        id: JobId,
        /// `cancelled` or `timeout`.
        reason: CancelReason,
    },
    /// Something the worker sent was refused.
    Error {
        /// What was wrong.
        message: String,
        /// The job it concerns, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<JobId>,
    },
}

/// Why the server asks a worker to abort a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CancelReason {
    /// Someone cancelled the job.
    Cancelled,
    /// The attempt ran past its timeout.
    Timeout,
}

/// The `job` message: one leased job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobDelivery {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its task name.
    pub kind: String,
    /// Its arguments.
    pub args: Value,
    /// This attempt's number (1 for the first run).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Seconds this attempt may run.
    pub timeout: Option<f64>,
    /// When this attempt times out.
    pub deadline: Option<DateTime<Utc>>,
    /// Metadata given at enqueue, such as W3C trace context.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// Parses a text frame: one message, or an array of messages.
pub fn parse_worker_frame(text: &str) -> Result<Vec<WorkerMessage>, serde_json::Error> {
    if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
    } else {
        serde_json::from_str(text).map(|message| vec![message])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_batched_frames() {
        let id = JobId::new();
        let one = format!(r#"{{"type":"complete","id":"{id}","result":{{"ok":true}}}}"#);
        assert_eq!(
            parse_worker_frame(&one).unwrap(),
            [WorkerMessage::Complete {
                id,
                result: Some(serde_json::json!({"ok": true}))
            }]
        );
        let many = format!(
            r#"[{{"type":"progress","id":"{id}","percent":30,"message":"x"}},{{"type":"capacity","capacity":0}}]"#
        );
        let parsed = parse_worker_frame(&many).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1], WorkerMessage::Capacity { capacity: 0 });
    }

    #[test]
    fn fail_defaults_to_retrying() {
        let id = JobId::new();
        let text = format!(r#"{{"type":"fail","id":"{id}","error":{{"type":"E","message":"m"}}}}"#);
        match parse_worker_frame(&text).unwrap().remove(0) {
            WorkerMessage::Fail {
                retry, retry_after, ..
            } => {
                assert!(retry);
                assert_eq!(retry_after, None);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn interrupted_names_its_job() {
        let id = JobId::new();
        let text = format!(r#"{{"type":"interrupted","id":"{id}"}}"#);
        assert_eq!(
            parse_worker_frame(&text).unwrap(),
            [WorkerMessage::Interrupted { id }]
        );
        assert!(parse_worker_frame(r#"{"type":"interrupted"}"#).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_worker_frame("not json").is_err());
        assert!(parse_worker_frame(r#"{"type":"explode"}"#).is_err());
        assert!(parse_worker_frame(r#"{"type":"hello","queues":["a"]}"#).is_err());
    }
}
