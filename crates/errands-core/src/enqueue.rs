//! What a client sends to enqueue a job, and the checks that turn it into a job to store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::backoff::{seconds_to_duration, Backoff, MAX_SECONDS};
use crate::id::JobId;
use crate::state::JobState;

/// Attempts a job gets when the request does not say.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Seconds a finished job is kept when the request does not say (one day).
pub const DEFAULT_RETENTION: f64 = 86_400.0;
/// Longest queue or kind name.
pub const MAX_NAME_LEN: usize = 200;

/// A request to enqueue one job. Only `kind` is required.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// Task name.
    pub kind: String,
    /// Queue name (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Arguments, any JSON.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[schema(value_type = Object)]
    pub args: Value,
    /// Higher runs first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Seconds to wait before the job is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<f64>,
    /// When the job is due (instead of `delay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// Attempts before the job is dead (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Delay policy between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Seconds one attempt may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// Deduplication key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// Seconds after creation during which the key also matches finished jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_for: Option<f64>,
    /// Seconds a completed or cancelled job is kept (default one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<f64>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// Server-side limits on what a request may carry.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest serialised `args`, in bytes.
    pub max_args_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_args_bytes: 1 << 20,
        }
    }
}

/// A request that failed validation: which field, and why.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The offending field, e.g. `kind` or `jobs[3].delay`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ValidationError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error, with its field inside a list element (`jobs[3].kind`).
    pub fn within(self, list: &str, index: usize) -> Self {
        Self {
            field: format!("{list}[{index}].{}", self.field),
            message: self.message,
        }
    }
}

/// A validated job, ready to be stored.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    /// Id assigned at validation.
    pub id: JobId,
    /// Queue name.
    pub queue: String,
    /// Task name.
    pub kind: String,
    /// Arguments, already serialised.
    pub args: String,
    /// Scheduled or queued, depending on `run_at`.
    pub state: JobState,
    /// Higher runs first.
    pub priority: i32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Retry policy.
    pub backoff: Backoff,
    /// Seconds per attempt.
    pub timeout: Option<f64>,
    /// Deduplication key.
    pub unique_key: Option<String>,
    /// Seconds the key also matches finished jobs.
    pub unique_for: Option<f64>,
    /// Seconds kept once finished.
    pub retention: f64,
    /// Labels.
    pub tags: Vec<String>,
    /// When enqueued.
    pub created_at: DateTime<Utc>,
    /// When due.
    pub run_at: DateTime<Utc>,
}

impl EnqueueRequest {
    /// A request for `kind` with every option at its default.
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            ..Self::default()
        }
    }

    /// Checks the request against `limits` and resolves defaults and times against `now`.
    pub fn validate(self, limits: &Limits, now: DateTime<Utc>) -> Result<NewJob, ValidationError> {
        let queue = self.queue.unwrap_or_else(|| "default".to_owned());
        check_name("queue", &queue)?;
        check_name("kind", &self.kind)?;
        let args = serde_json::to_string(&self.args)
            .map_err(|e| ValidationError::new("args", e.to_string()))?;
        if args.len() > limits.max_args_bytes {
            return Err(ValidationError::new(
                "args",
                format!(
                    "args are {} bytes, over the limit of {} bytes",
                    args.len(),
                    limits.max_args_bytes
                ),
            ));
        }
        let run_at = match (self.delay, self.run_at) {
            (Some(_), Some(_)) => {
                return Err(ValidationError::new(
                    "delay",
                    "give either delay or run_at, not both",
                ))
            }
            (Some(delay), None) => now + seconds_to_duration(non_negative("delay", delay)?),
            (None, Some(run_at)) => run_at.max(now),
            (None, None) => now,
        };
        let max_attempts = self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if max_attempts == 0 {
            return Err(ValidationError::new(
                "max_attempts",
                "max_attempts must be at least 1",
            ));
        }
        let backoff = self.backoff.unwrap_or_default();
        backoff
            .validate()
            .map_err(|message| ValidationError::new("backoff", message))?;
        let timeout = self.timeout.map(|t| positive("timeout", t)).transpose()?;
        let unique_for = self
            .unique_for
            .map(|t| non_negative("unique_for", t))
            .transpose()?;
        if let Some(key) = &self.unique_key {
            if key.is_empty() {
                return Err(ValidationError::new(
                    "unique_key",
                    "unique_key must not be empty",
                ));
            }
        }
        let retention = non_negative("retention", self.retention.unwrap_or(DEFAULT_RETENTION))?;
        Ok(NewJob {
            id: JobId::new(),
            queue,
            kind: self.kind,
            args,
            state: if run_at > now {
                JobState::Scheduled
            } else {
                JobState::Queued
            },
            priority: self.priority.unwrap_or(0),
            max_attempts,
            backoff,
            timeout,
            unique_key: self.unique_key,
            unique_for,
            retention,
            tags: self.tags,
            created_at: now,
            run_at,
        })
    }
}

fn check_name(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(ValidationError::new(
            field,
            format!("{field} is longer than {MAX_NAME_LEN} characters"),
        ));
    }
    Ok(())
}

fn non_negative(field: &str, seconds: f64) -> Result<f64, ValidationError> {
    if (0.0..=MAX_SECONDS).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(ValidationError::new(
            field,
            format!("{field} must be a non-negative number of seconds, at most 100 years"),
        ))
    }
}

fn positive(field: &str, seconds: f64) -> Result<f64, ValidationError> {
    if seconds > 0.0 && seconds <= MAX_SECONDS {
        Ok(seconds)
    } else {
        Err(ValidationError::new(
            field,
            format!("{field} must be a positive number of seconds, at most 100 years"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn now() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn validate(json: &str) -> Result<NewJob, ValidationError> {
        serde_json::from_str::<EnqueueRequest>(json)
            .unwrap()
            .validate(&Limits::default(), now())
    }

    #[test]
    fn defaults() {
        let job = validate(r#"{"kind":"send"}"#).unwrap();
        assert_eq!(job.queue, "default");
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(job.args, "null");
        assert_eq!(job.run_at, now());
    }

    #[test]
    fn delay_schedules_the_job() {
        let job = validate(r#"{"kind":"send","delay":1.5}"#).unwrap();
        assert_eq!(job.state, JobState::Scheduled);
        assert_eq!(job.run_at, now() + Duration::milliseconds(1500));
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (r#"{"kind":""}"#, "kind"),
            (r#"{"kind":"a","queue":" "}"#, "queue"),
            (r#"{"kind":"a","delay":-1}"#, "delay"),
            (r#"{"kind":"a","max_attempts":0}"#, "max_attempts"),
            (r#"{"kind":"a","timeout":0}"#, "timeout"),
            (r#"{"kind":"a","delay":1e13}"#, "delay"),
            (r#"{"kind":"a","retention":1e300}"#, "retention"),
            (r#"{"kind":"a","unique_for":1e300}"#, "unique_for"),
            (r#"{"kind":"a","unique_key":""}"#, "unique_key"),
            (
                r#"{"kind":"a","delay":1,"run_at":"2026-01-01T00:00:00Z"}"#,
                "delay",
            ),
            (
                r#"{"kind":"a","backoff":{"type":"fixed","delay":-2}}"#,
                "backoff",
            ),
        ];
        for (json, field) in cases {
            assert_eq!(validate(json).unwrap_err().field, field, "{json}");
        }
    }

    #[test]
    fn args_over_the_limit_are_refused() {
        let request = EnqueueRequest {
            args: Value::String("x".repeat(100)),
            ..EnqueueRequest::new("a")
        };
        let limits = Limits { max_args_bytes: 50 };
        assert_eq!(request.validate(&limits, now()).unwrap_err().field, "args");
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<EnqueueRequest>(r#"{"kind":"a","qeue":"x"}"#).is_err());
    }
}
