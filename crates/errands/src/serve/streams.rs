//! `errands serve` options for the long-lived sockets: worker connections and event
//! subscribers. docs/architecture.md ("Limits and protections") explains each bound.

use std::time::Duration;

use clap::Args;
use errands_server::{EventLimits, WorkerLimits};

/// Timeouts and bounds of worker sockets and event subscribers.
#[derive(Args, Clone, Debug)]
pub struct StreamArgs {
    /// How long a new worker connection may take to say hello.
    #[arg(long, env = "ERRANDS_WORKER_HELLO_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    worker_hello_timeout: Duration,
    /// How often the server pings each worker.
    #[arg(long, env = "ERRANDS_WORKER_PING_INTERVAL", default_value = "4s", value_parser = humantime::parse_duration)]
    worker_ping_interval: Duration,
    /// A worker that sends nothing, not even a pong, for this long is lost (a stopped process
    /// or a blocked event loop): its jobs are redelivered at once.
    #[arg(long, env = "ERRANDS_WORKER_SILENCE_TIMEOUT", default_value = "12s", value_parser = humantime::parse_duration)]
    worker_silence_timeout: Duration,
    /// A write to a worker that makes no progress for this long cuts it off; its jobs are
    /// then redelivered.
    #[arg(long, env = "ERRANDS_WORKER_WRITE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    worker_write_timeout: Duration,
    /// Longest a job claimed ahead for a fast worker waits for one of its slots before it
    /// goes back to its queue (0s: hold nothing ahead).
    #[arg(long, env = "ERRANDS_WORKER_HOLD_LIMIT", default_value = "100ms", value_parser = humantime::parse_duration)]
    worker_hold_limit: Duration,
    /// Bytes of job frames waiting for one worker before the server holds further jobs back.
    #[arg(long, env = "ERRANDS_WORKER_OUTBOUND_BYTES", default_value_t = WorkerLimits::default().outbound_bytes)]
    worker_outbound_bytes: usize,
    /// Messages other than jobs (errors, cancels, pings) waiting for one worker; one more cuts
    /// it off, as it is not reading.
    #[arg(long, env = "ERRANDS_WORKER_OUTBOUND_MESSAGES", default_value_t = WorkerLimits::default().outbound_messages)]
    worker_outbound_messages: usize,
    /// Most queues one worker's hello may name.
    #[arg(long, env = "ERRANDS_MAX_WORKER_QUEUES", default_value_t = WorkerLimits::default().max_queues)]
    max_worker_queues: usize,
    /// Largest serialised progress `data`, in bytes.
    #[arg(long, env = "ERRANDS_MAX_PROGRESS_DATA_BYTES", default_value_t = WorkerLimits::default().max_progress_data_bytes)]
    max_progress_data_bytes: usize,
    /// Bytes of events waiting for one /v1/events subscriber before it is cut off.
    #[arg(long, env = "ERRANDS_EVENT_BUFFER_BYTES", default_value_t = EventLimits::default().subscriber_bytes)]
    event_buffer_bytes: usize,
    /// Events waiting for one /v1/events subscriber before it is cut off.
    #[arg(long, env = "ERRANDS_EVENT_BUFFER_EVENTS", default_value_t = EventLimits::default().subscriber_events)]
    event_buffer_events: usize,
    /// Bytes of events waiting for all subscribers together; past it, the one furthest behind
    /// is cut off.
    #[arg(long, env = "ERRANDS_EVENT_BUFFER_TOTAL_BYTES", default_value_t = EventLimits::default().total_bytes)]
    event_buffer_total_bytes: usize,
    /// A write to an event WebSocket that makes no progress for this long closes it (what
    /// waits for it is bounded by the buffers above either way).
    #[arg(long, env = "ERRANDS_EVENT_WRITE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    event_write_timeout: Duration,
}

impl StreamArgs {
    /// The worker socket's settings.
    pub fn worker(&self) -> WorkerLimits {
        WorkerLimits {
            hello_timeout: self.worker_hello_timeout,
            ping_every: self.worker_ping_interval,
            silence_limit: self.worker_silence_timeout,
            write_timeout: self.worker_write_timeout,
            outbound_bytes: self.worker_outbound_bytes,
            outbound_messages: self.worker_outbound_messages,
            max_queues: self.max_worker_queues,
            max_progress_data_bytes: self.max_progress_data_bytes,
            hold_limit: self.worker_hold_limit,
        }
    }

    /// The event feed's settings.
    pub fn events(&self) -> EventLimits {
        EventLimits {
            subscriber_bytes: self.event_buffer_bytes,
            subscriber_events: self.event_buffer_events,
            total_bytes: self.event_buffer_total_bytes,
            write_timeout: self.event_write_timeout,
        }
    }
}
