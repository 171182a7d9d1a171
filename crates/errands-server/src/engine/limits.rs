//! Bounds on what one worker connection or one event subscriber may make the server hold, and
//! how long the server waits on either: a party that stops reading is cut off instead of
//! growing the server's memory or stalling the loop that watches it. docs/architecture.md
//! ("Limits and protections") lists them.

use std::time::Duration;

/// Timeouts and bounds of worker connections (`/v1/worker`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorkerLimits {
    /// How long a new connection may take to say hello.
    pub hello_timeout: Duration,
    /// How often the server pings each worker.
    pub ping_every: Duration,
    /// A worker that sent nothing (not even a pong) for this long is lost.
    pub silence_limit: Duration,
    /// A write to a worker's socket that makes no progress for this long cuts it off.
    pub write_timeout: Duration,
    /// Bytes of job frames waiting to be written to one worker before the server holds back
    /// further jobs (it sends them once the worker has read what waits).
    pub outbound_bytes: usize,
    /// Other messages (errors, cancels, pings) waiting to be written to one worker; one more
    /// cuts the worker off, as it is not reading.
    pub outbound_messages: usize,
    /// Most queues one `hello` may name.
    pub max_queues: usize,
    /// Largest serialised `data` of one progress report, in bytes.
    pub max_progress_data_bytes: usize,
    /// Longest a job claimed ahead for a fast worker waits for one of its slots before it
    /// goes back to its queue (it goes back sooner when another connection has room).
    pub hold_limit: Duration,
}

impl Default for WorkerLimits {
    fn default() -> Self {
        Self {
            hello_timeout: Duration::from_secs(10),
            // A stalled worker (stopped process, blocked event loop) loses its jobs to other
            // workers within 12 s; a live one answers each ping within milliseconds, so it
            // would have to miss two in a row (8 s late) to be thought gone.
            ping_every: Duration::from_secs(4),
            silence_limit: Duration::from_secs(12),
            write_timeout: Duration::from_secs(10),
            outbound_bytes: 8 << 20,
            outbound_messages: 1024,
            max_queues: 1000,
            max_progress_data_bytes: 64 << 10,
            hold_limit: Duration::from_millis(100),
        }
    }
}

/// Bounds of the live event feed (`/v1/events`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EventLimits {
    /// Bytes of events waiting for one subscriber before it is cut off.
    pub subscriber_bytes: usize,
    /// Events waiting for one subscriber before it is cut off.
    pub subscriber_events: usize,
    /// Bytes of events waiting for all subscribers together; past it, the subscriber furthest
    /// behind is cut off.
    pub total_bytes: usize,
    /// A write to a WebSocket subscriber that makes no progress for this long cuts it off.
    /// Longer than a worker's: what waits for a subscriber is bounded by the buffers anyway,
    /// and a subscriber that resumes reading then learns why it was cut off.
    pub write_timeout: Duration,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            subscriber_bytes: 8 << 20,
            subscriber_events: 16_384,
            total_bytes: 256 << 20,
            write_timeout: Duration::from_secs(30),
        }
    }
}
