//! Per-enqueue options.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use errands_core::{Backoff, EnqueueRequest};

/// How to enqueue a job. Unset options take the job type's defaults, then the server's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnqueueOptions {
    queue: Option<String>,
    priority: Option<i32>,
    delay: Option<Duration>,
    run_at: Option<DateTime<Utc>>,
    max_attempts: Option<u32>,
    backoff: Option<Backoff>,
    timeout: Option<Duration>,
    unique_key: Option<String>,
    unique_for: Option<Duration>,
    retention: Option<Duration>,
    tags: Vec<String>,
    headers: BTreeMap<String, String>,
}

impl EnqueueOptions {
    /// No options set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The queue to wait in.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Higher runs first.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Not before this long from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Not before this time.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Attempts before the job is dead.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Delay policy between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// How long one attempt may run.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Deduplicate on this key while a job with it is unfinished.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Also deduplicate against finished jobs created less than this long ago.
    pub fn unique_for(mut self, window: Duration) -> Self {
        self.unique_for = Some(window);
        self
    }

    /// How long the job is kept once completed or cancelled.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Adds a label.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Adds a header: metadata delivered to the worker with the job
    /// ([`JobContext::headers`](crate::JobContext::headers)). The current span's W3C trace
    /// context is added as `traceparent` unless one is set here.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// These options on top of `base`: anything set here wins.
    pub fn over(self, base: EnqueueOptions) -> Self {
        Self {
            queue: self.queue.or(base.queue),
            priority: self.priority.or(base.priority),
            delay: self.delay.or(base.delay),
            run_at: self.run_at.or(base.run_at),
            max_attempts: self.max_attempts.or(base.max_attempts),
            backoff: self.backoff.or(base.backoff),
            timeout: self.timeout.or(base.timeout),
            unique_key: self.unique_key.or(base.unique_key),
            unique_for: self.unique_for.or(base.unique_for),
            retention: self.retention.or(base.retention),
            tags: if self.tags.is_empty() {
                base.tags
            } else {
                self.tags
            },
            headers: {
                let mut headers = base.headers;
                headers.extend(self.headers);
                headers
            },
        }
    }

    /// The request for a job of `kind` with `args`, carrying the current span's trace context.
    pub fn request(self, kind: impl Into<String>, args: serde_json::Value) -> EnqueueRequest {
        let mut headers = self.headers;
        crate::trace::inject_current(&mut headers);
        EnqueueRequest {
            kind: kind.into(),
            queue: self.queue,
            args,
            priority: self.priority,
            delay: self.delay.map(|d| d.as_secs_f64()),
            run_at: self.run_at,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            timeout: self.timeout.map(|d| d.as_secs_f64()),
            unique_key: self.unique_key,
            unique_for: self.unique_for.map(|d| d.as_secs_f64()),
            retention: self.retention.map(|d| d.as_secs_f64()),
            tags: self.tags,
            headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_options_win_over_defaults() {
        let defaults = EnqueueOptions::new().queue("emails").priority(1);
        let request = EnqueueOptions::new()
            .priority(9)
            .delay(Duration::from_millis(1500))
            .over(defaults)
            .request("send", serde_json::json!({"to": "a"}));
        assert_eq!(request.queue.as_deref(), Some("emails"));
        assert_eq!(request.priority, Some(9));
        assert_eq!(request.delay, Some(1.5));
    }

    #[test]
    fn headers_merge_and_a_given_traceparent_is_kept() {
        let defaults = EnqueueOptions::new()
            .header("tenant", "1")
            .header("team", "a");
        let request = EnqueueOptions::new()
            .header("tenant", "2")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .over(defaults)
            .request("send", serde_json::Value::Null);
        assert_eq!(request.headers["tenant"], "2");
        assert_eq!(request.headers["team"], "a");
        assert_eq!(
            request.headers["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
    }
}
