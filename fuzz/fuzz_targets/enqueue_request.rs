//! Enqueue validation on arbitrary request bodies: decoding and validating must never panic,
//! and a request that passes must yield a job inside every documented bound (see the limits
//! in `errands_core::enqueue` and docs/architecture.md). The bounds are checked here again,
//! independently of the validator's own code.
#![no_main]

use chrono::{DateTime, Utc};
use errands_core::backoff::MAX_SECONDS;
use errands_core::enqueue::{
    MAX_HEADERS, MAX_HEADER_NAME_LEN, MAX_HEADER_VALUE_LEN, MAX_NAME_LEN, MAX_TAGS, MAX_TAG_LEN,
    MAX_UNIQUE_KEY_LEN,
};
use errands_core::{EnqueueRequest, JobState, Limits, NewJob};
use libfuzzer_sys::fuzz_target;

/// A small args limit as well as the default one, so fuzzing reaches the size check.
const SMALL_ARGS_LIMIT: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<EnqueueRequest>(data) else {
        return;
    };
    let now = fixed_now();
    for limits in [
        Limits::default(),
        Limits {
            max_args_bytes: SMALL_ARGS_LIMIT,
        },
    ] {
        if let Ok(job) = request.clone().validate(&limits, now) {
            assert_within_bounds(&request, &job, &limits, now);
        }
    }
});

fn fixed_now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("2026-01-01 is a valid time")
}

fn assert_within_bounds(
    request: &EnqueueRequest,
    job: &NewJob,
    limits: &Limits,
    now: DateTime<Utc>,
) {
    assert_name(&job.queue);
    assert_name(&job.kind);
    assert_eq!(job.kind, request.kind);
    assert_args(request, job, limits);
    assert_times(job, now);
    assert!(job.max_attempts >= 1);
    assert!(job.backoff.validate().is_ok(), "{:?}", job.backoff);
    assert_tags(&job.tags);
    if let Some(key) = &job.unique_key {
        assert!(!key.is_empty() && key.chars().count() <= MAX_UNIQUE_KEY_LEN);
    }
    assert_headers(job);
}

fn assert_name(name: &str) {
    assert!(name.chars().count() <= MAX_NAME_LEN, "{name:?} too long");
    assert!(
        !name.chars().any(char::is_control),
        "{name:?} has a control char"
    );
    assert!(
        name.chars()
            .any(|c| !c.is_whitespace() && !is_zero_width(c)),
        "{name:?} shows nothing"
    );
}

/// A few characters that render as nothing; the validator knows the full list.
fn is_zero_width(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}' | '\u{2060}' | '\u{feff}' | '\u{ad}'
    )
}

fn assert_args(request: &EnqueueRequest, job: &NewJob, limits: &Limits) {
    assert!(
        job.args.len() <= limits.max_args_bytes,
        "{} bytes",
        job.args.len()
    );
    let stored: serde_json::Value = serde_json::from_str(&job.args).expect("stored args are JSON");
    assert_eq!(stored, request.args);
}

fn assert_times(job: &NewJob, now: DateTime<Utc>) {
    assert_eq!(job.created_at, now);
    assert!(job.run_at >= now, "run_at {} before now", job.run_at);
    let expected = if job.run_at > now {
        JobState::Scheduled
    } else {
        JobState::Queued
    };
    assert_eq!(job.state, expected);
    if let Some(timeout) = job.timeout {
        assert!(timeout > 0.0 && timeout <= MAX_SECONDS, "timeout {timeout}");
    }
    if let Some(unique_for) = job.unique_for {
        assert!(
            (0.0..=MAX_SECONDS).contains(&unique_for),
            "unique_for {unique_for}"
        );
    }
    assert!(
        (0.0..=MAX_SECONDS).contains(&job.retention),
        "retention {}",
        job.retention
    );
}

fn assert_tags(tags: &[String]) {
    assert!(tags.len() <= MAX_TAGS, "{} tags", tags.len());
    for tag in tags {
        assert!(
            tag.chars().count() <= MAX_TAG_LEN,
            "tag of {} chars",
            tag.chars().count()
        );
    }
}

fn assert_headers(job: &NewJob) {
    assert!(
        job.headers.len() <= MAX_HEADERS,
        "{} headers",
        job.headers.len()
    );
    for (name, value) in &job.headers {
        assert!(
            (1..=MAX_HEADER_NAME_LEN).contains(&name.len()),
            "header name {name:?}"
        );
        assert!(name.chars().all(is_token_char), "header name {name:?}");
        assert!(value.chars().count() <= MAX_HEADER_VALUE_LEN);
        assert!(
            !value.chars().any(char::is_control),
            "header value {value:?}"
        );
    }
}

/// RFC 9110 token characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}
