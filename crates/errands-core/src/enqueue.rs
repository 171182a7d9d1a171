//! What a client sends to enqueue a job, and the checks that turn it into a job to store.

use std::collections::BTreeMap;

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
/// Most tags on one job: every listing carries them, so they are bounded like the rest.
pub const MAX_TAGS: usize = 64;
/// Longest tag, in characters.
pub const MAX_TAG_LEN: usize = 200;
/// Longest unique key, in characters: it is indexed and compared on every keyed enqueue.
pub const MAX_UNIQUE_KEY_LEN: usize = 1024;
/// Most headers on one job: they travel with every delivery.
pub const MAX_HEADERS: usize = 32;
/// Longest header name, in characters.
pub const MAX_HEADER_NAME_LEN: usize = 128;
/// Longest header value, in characters (a W3C `tracestate` may hold up to 512).
pub const MAX_HEADER_VALUE_LEN: usize = 4096;

/// A request to enqueue one job. Only `kind` is required.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// Task name.
    #[schema(min_length = 1, max_length = 200)]
    pub kind: String,
    /// Queue name (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub queue: Option<String>,
    /// Arguments, any JSON.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub args: Value,
    /// Higher runs first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Seconds to wait before the job is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 3153600000.0)]
    pub delay: Option<f64>,
    /// When the job is due (instead of `delay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// Attempts before the job is dead (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_attempts: Option<u32>,
    /// Delay policy between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Seconds one attempt may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0.0, maximum = 3153600000.0)]
    pub timeout: Option<f64>,
    /// Deduplication key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 1024)]
    pub unique_key: Option<String>,
    /// Seconds after creation during which the key also matches finished jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 3153600000.0)]
    pub unique_for: Option<f64>,
    /// Seconds a completed or cancelled job is kept (default one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 3153600000.0)]
    pub retention: Option<f64>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Metadata delivered to the worker with the job, such as W3C trace context
    /// (`traceparent`, `tracestate`) or the application's own headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
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
    /// Metadata delivered with the job.
    pub headers: BTreeMap<String, String>,
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
            check_unique_key(key)?;
        }
        check_tags(&self.tags)?;
        check_headers(&self.headers)?;
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
            headers: self.headers,
            created_at: now,
            run_at,
        })
    }
}

/// Checks a queue or kind name: at most [`MAX_NAME_LEN`] characters, no control characters,
/// and at least one visible one. Names become metric labels and log fields, where a NUL or a
/// newline corrupts the output and a name of only zero-width characters cannot be told apart
/// from another.
pub fn check_name(field: &str, value: &str) -> Result<(), ValidationError> {
    if !value.chars().any(is_visible) {
        return Err(ValidationError::new(
            field,
            format!("{field} must not be empty or only invisible characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            format!("{field} must not contain control characters"),
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

/// Whether `c` shows as something: not whitespace, not a control character, and not one of
/// the characters Unicode says to render as nothing (zero-width spaces and joiners,
/// direction marks, variation selectors, the byte order mark, fillers).
pub fn is_visible(c: char) -> bool {
    !(c.is_whitespace() || c.is_control() || is_default_ignorable(c))
}

/// Unicode's `Default_Ignorable_Code_Point` characters.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

fn check_unique_key(key: &str) -> Result<(), ValidationError> {
    if key.is_empty() {
        return Err(ValidationError::new(
            "unique_key",
            "unique_key must not be empty",
        ));
    }
    if key.chars().count() > MAX_UNIQUE_KEY_LEN {
        return Err(ValidationError::new(
            "unique_key",
            format!("unique_key is longer than {MAX_UNIQUE_KEY_LEN} characters"),
        ));
    }
    Ok(())
}

fn check_tags(tags: &[String]) -> Result<(), ValidationError> {
    if tags.len() > MAX_TAGS {
        return Err(ValidationError::new(
            "tags",
            format!("at most {MAX_TAGS} tags per job"),
        ));
    }
    for (index, tag) in tags.iter().enumerate() {
        if tag.chars().count() > MAX_TAG_LEN {
            return Err(ValidationError::new(
                format!("tags[{index}]"),
                format!("a tag is at most {MAX_TAG_LEN} characters"),
            ));
        }
    }
    Ok(())
}

/// Header names are HTTP field names (RFC 9110 tokens), so they can be carried into HTTP,
/// AMQP or gRPC metadata unchanged; values are any text without control characters.
fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    if headers.len() > MAX_HEADERS {
        return Err(ValidationError::new(
            "headers",
            format!("at most {MAX_HEADERS} headers per job"),
        ));
    }
    for (name, value) in headers {
        let field = || format!("headers.{name}");
        if name.is_empty() || name.len() > MAX_HEADER_NAME_LEN || !name.chars().all(is_token_char) {
            return Err(ValidationError::new(
                "headers",
                format!(
                    "header names are 1 to {MAX_HEADER_NAME_LEN} letters, digits or !#$%&'*+-.^_`|~"
                ),
            ));
        }
        if value.chars().count() > MAX_HEADER_VALUE_LEN {
            return Err(ValidationError::new(
                field(),
                format!("a header value is at most {MAX_HEADER_VALUE_LEN} characters"),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(ValidationError::new(
                field(),
                "a header value must not contain control characters",
            ));
        }
    }
    Ok(())
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
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
            (r#"{"kind":"\u0000"}"#, "kind"),
            (r#"{"kind":"\u200b\u200d\ufeff"}"#, "kind"),
            (r#"{"kind":"a\u0000b"}"#, "kind"),
            (r#"{"kind":"a","queue":"\u0001\u007f"}"#, "queue"),
            (r#"{"kind":"a","queue":"line\nbreak"}"#, "queue"),
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
    fn tags_and_unique_keys_are_bounded() {
        let many = EnqueueRequest {
            tags: vec!["t".into(); MAX_TAGS + 1],
            ..EnqueueRequest::new("a")
        };
        let error = many.validate(&Limits::default(), now()).unwrap_err();
        assert_eq!(error.field, "tags");
        let long = EnqueueRequest {
            tags: vec!["ok".into(), "x".repeat(MAX_TAG_LEN + 1)],
            ..EnqueueRequest::new("a")
        };
        let error = long.validate(&Limits::default(), now()).unwrap_err();
        assert_eq!(error.field, "tags[1]");
        let key = EnqueueRequest {
            unique_key: Some("k".repeat(MAX_UNIQUE_KEY_LEN + 1)),
            ..EnqueueRequest::new("a")
        };
        let error = key.validate(&Limits::default(), now()).unwrap_err();
        assert_eq!(error.field, "unique_key");
        let at_limits = EnqueueRequest {
            tags: vec!["x".repeat(MAX_TAG_LEN); MAX_TAGS],
            unique_key: Some("k".repeat(MAX_UNIQUE_KEY_LEN)),
            ..EnqueueRequest::new("a")
        };
        assert!(at_limits.validate(&Limits::default(), now()).is_ok());
    }

    #[test]
    fn headers_are_kept_and_bounded() {
        let job =
            validate(r#"{"kind":"a","headers":{"traceparent":"00-ab-cd-01","x-tenant":"42"}}"#)
                .unwrap();
        assert_eq!(job.headers["traceparent"], "00-ab-cd-01");
        assert_eq!(job.headers["x-tenant"], "42");
        let cases = [
            (r#"{"kind":"a","headers":{"":"v"}}"#, "headers"),
            (r#"{"kind":"a","headers":{"bad name":"v"}}"#, "headers"),
            (r#"{"kind":"a","headers":{"x":"line\nbreak"}}"#, "headers.x"),
        ];
        for (json, field) in cases {
            assert_eq!(validate(json).unwrap_err().field, field, "{json}");
        }
        let long = EnqueueRequest {
            headers: [("x".to_owned(), "v".repeat(MAX_HEADER_VALUE_LEN + 1))].into(),
            ..EnqueueRequest::new("a")
        };
        let error = long.validate(&Limits::default(), now()).unwrap_err();
        assert_eq!(error.field, "headers.x");
        let many = EnqueueRequest {
            headers: (0..=MAX_HEADERS)
                .map(|i| (format!("h{i}"), String::new()))
                .collect(),
            ..EnqueueRequest::new("a")
        };
        let error = many.validate(&Limits::default(), now()).unwrap_err();
        assert_eq!(error.field, "headers");
    }

    #[test]
    fn names_with_something_visible_pass() {
        for name in ["a", "émail", "日本", "a b", "a\u{200b}b", "🙂"] {
            assert!(check_name("kind", name).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn numbers_in_args_are_kept_exactly() {
        // serde_json's default float parser can land one ulp off the nearest f64; the stored
        // args then differ from what the client sent (found by fuzz/enqueue_request).
        let sent = [
            "7.7777777e+91",
            "2.2250738585072011e-308",
            "0.30000000000000004",
        ];
        let job = validate(&format!(r#"{{"kind":"a","args":[{}]}}"#, sent.join(","))).unwrap();
        let stored: Vec<f64> = serde_json::from_str(&job.args).unwrap();
        let exact: Vec<f64> = sent.iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(stored, exact);
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<EnqueueRequest>(r#"{"kind":"a","qeue":"x"}"#).is_err());
    }
}
