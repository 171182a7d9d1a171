//! The server's logs: human text (the default), or one JSON object per line for log pipelines
//! (Loki, Grafana, anything that reads JSON lines). Both carry the same fields; job log lines
//! name theirs `job_id`, `queue`, `kind` and `attempt`.
//!
//! The subscriber is built from layers: the filter (`RUST_LOG`, `info` by default), the
//! formatter, and whatever else the caller adds (an exporter of spans, say).

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line, the event's fields at its top level.
    Json,
}

/// The subscriber the formatter and any extra layer sit on: the registry behind the filter.
pub type Filtered = Layered<EnvFilter, Registry>;

/// A layer of the server's subscriber, boxed so that layers of different types go in one list.
pub type BoxedLayer = Box<dyn Layer<Filtered> + Send + Sync>;

/// The formatting layer for `format`, writing to standard output.
pub fn format_layer(format: LogFormat) -> BoxedLayer {
    let layer = tracing_subscriber::fmt::layer();
    match format {
        // Colours only on a terminal: text sent to a file or a collector stays plain.
        LogFormat::Text => layer.with_ansi(std::io::stdout().is_terminal()).boxed(),
        LogFormat::Json => layer
            .json()
            // `{"message": ..., "job_id": ...}` rather than `{"fields": {...}}`: what log
            // pipelines index without a parsing stage.
            .flatten_event(true)
            // The span an event happened in (its fields say which job), not every ancestor.
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    }
}

/// Installs the process's subscriber: the `RUST_LOG` filter (else `info`), the formatter for
/// `format`, then `extra` layers.
pub fn init(format: LogFormat, extra: Vec<BoxedLayer>) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let mut layers = vec![format_layer(format)];
    layers.extend(extra);
    tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .try_init()
        .context("installing the log subscriber")
}
