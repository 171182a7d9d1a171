//! `errands serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use errands_core::{Clock, Limits, OffsetClock, SystemClock};
use errands_server::{HttpLimits, ServerConfig};
use errands_store::sqlite::SqliteOptions;
use errands_store::{SqliteStore, Store, SyncMode};
use errands_store_postgres::{PostgresOptions, PostgresStore};
use tokio::net::TcpListener;

use crate::logging::{self, LogFormat};

mod otlp;
mod streams;

/// Where jobs are kept: a SQLite file, or a PostgreSQL database that several nodes share.
#[derive(Clone, Debug, PartialEq)]
pub enum Database {
    /// A SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl Database {
    /// `--db`: a PostgreSQL URL, or else a SQLite file path.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            Ok(Database::Postgres(value.to_owned()))
        } else if value.contains("://") {
            Err(format!(
                "unsupported database URL {value:?}: give a postgres:// URL or a SQLite file path"
            ))
        } else {
            Ok(Database::Sqlite(PathBuf::from(value)))
        }
    }

    /// How logs name it: the URL without its password.
    pub fn display(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(url) => redact_password(url),
        }
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// Options of `errands serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ERRANDS_LISTEN", default_value = "127.0.0.1:7733")]
    listen: SocketAddr,
    /// Where jobs are kept: a SQLite file, or postgres://user@host/dbname to share one
    /// PostgreSQL database between any number of server nodes.
    #[arg(long, env = "ERRANDS_DB", default_value = "errands.db", value_parser = Database::parse)]
    db: Database,
    /// On PostgreSQL: refuse to start (instead of migrating) if the schema is behind.
    #[arg(long)]
    no_migrate: bool,
    /// On PostgreSQL: how long after a node's last heartbeat other nodes release its jobs.
    #[arg(long, env = "ERRANDS_NODE_LEASE", default_value = "15s", value_parser = humantime::parse_duration)]
    node_lease: Duration,
    /// On PostgreSQL: most database connections this node opens.
    #[arg(long, default_value_t = 16)]
    db_connections: usize,
    /// Use a throwaway store, deleted on exit (for tests).
    #[arg(long, conflicts_with = "db")]
    memory: bool,
    /// full: an acknowledged write is fsynced before the reply; normal: it survives a crash of
    /// the server process but not a power cut.
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    sync: String,
    /// Bearer token required on every route but /healthz (an empty one is refused).
    #[arg(long, env = "ERRANDS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Largest serialised args of one job, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_args_bytes: usize,
    /// Largest request body, in bytes, on every route but POST /v1/jobs/batch.
    #[arg(long, env = "ERRANDS_MAX_BODY_BYTES", default_value_t = 2 << 20)]
    max_body_bytes: usize,
    /// Largest body of POST /v1/jobs/batch, in bytes.
    #[arg(long, env = "ERRANDS_MAX_BATCH_BODY_BYTES", default_value_t = 16 << 20)]
    max_batch_body_bytes: usize,
    /// Most bytes in one page of GET /v1/jobs, /v1/queues, /v1/cron or /v1/workers (a longer
    /// page ends early, with a cursor).
    #[arg(long, env = "ERRANDS_MAX_LIST_BYTES", default_value_t = 8 << 20)]
    max_list_bytes: usize,
    /// How many (queue, kind) pairs get job metric series of their own in /metrics; jobs of
    /// others are counted under queue="_other", kind="_other".
    #[arg(long, env = "ERRANDS_METRICS_MAX_SERIES", default_value_t = 1000)]
    metrics_max_series: usize,
    /// Most connections open at once, worker sockets included; more wait to be accepted.
    #[arg(long, env = "ERRANDS_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// How long a client has to send a request's headers, and how long an idle kept-alive
    /// connection stays open.
    #[arg(long, env = "ERRANDS_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// How long a client has to send a request's body.
    #[arg(long, env = "ERRANDS_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// How long a write to a client may make no progress before its connection is closed.
    #[arg(long, env = "ERRANDS_WRITE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    write_timeout: Duration,
    /// An origin (https://host[:port]) whose pages may call the API, besides the server's
    /// own; repeat for several (comma-separated in the variable).
    #[arg(long, env = "ERRANDS_ALLOW_ORIGIN", value_delimiter = ',')]
    allow_origin: Vec<String>,
    /// A host name (name or name:port) the server answers to on a loopback address, besides
    /// localhost and the loopback addresses; repeat for several.
    #[arg(long, env = "ERRANDS_ALLOW_HOST", value_delimiter = ',')]
    allow_host: Vec<String>,
    /// Log lines as human-readable text, or one JSON object per line (for log pipelines).
    #[arg(long, env = "ERRANDS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// How long dead jobs are kept, e.g. 30d.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    dead_retention: std::time::Duration,
    /// Export the server's spans (enqueue, dispatch, completion) over OTLP/HTTP to this
    /// collector, e.g. http://localhost:4318 (`/v1/traces` is added unless given).
    #[arg(long, env = "ERRANDS_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Worker sockets and event subscribers.
    #[command(flatten)]
    streams: streams::StreamArgs,
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = server_config(&args);
    // Before anything is opened: a setting that cannot work fails fast, saying which.
    config.check().map_err(anyhow::Error::msg)?;
    logging::init(args.log_format, Vec::new())?;
    warn_of_liveness(&config);
    let store_name = if args.memory {
        "memory".to_owned()
    } else {
        args.db.display()
    };
    let exporting = match &args.otlp_endpoint {
        Some(endpoint) => Some(otlp::install(endpoint).await?),
        None => None,
    };
    let (store, clock) = open_store(&args).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    // With port 0 the system picks one; say which, so scripts and tests can find it.
    let listen = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%listen, store = %store_name, "errands serving");
    errands_server::serve(listener, store, clock, config, shutdown_signal()).await?;
    if let Some(exporting) = exporting {
        exporting.shutdown().await;
    }
    tracing::info!("errands stopped");
    Ok(())
}

/// Warns when an idle worker, heard from only through its pongs, would be taken for lost
/// between two pings.
fn warn_of_liveness(config: &ServerConfig) {
    let (ping, silence) = (config.worker.ping_every, config.worker.silence_limit);
    if silence <= ping * 2 {
        tracing::warn!(
            ping_interval = ?ping,
            silence_timeout = ?silence,
            "--worker-silence-timeout is at most twice --worker-ping-interval: a worker that \
             misses one ping, or an idle one, may be taken for lost; keep it a few pings long"
        );
    }
}

/// The server's settings from the command line.
fn server_config(args: &ServeArgs) -> ServerConfig {
    // clap reads `ERRANDS_TOKEN=` (set, but empty) as no token at all; it is a token that
    // went missing, not a choice to serve without one, so it is kept for the check to refuse.
    let token = args.token.clone().or_else(|| {
        std::env::var_os("ERRANDS_TOKEN")
            .filter(|value| value.is_empty())
            .map(|_| String::new())
    });
    ServerConfig {
        token,
        limits: Limits {
            max_args_bytes: args.max_args_bytes,
        },
        max_body_bytes: args.max_body_bytes,
        max_batch_body_bytes: args.max_batch_body_bytes,
        max_list_bytes: args.max_list_bytes,
        node_lease: args.node_lease,
        http: HttpLimits {
            max_connections: args.max_connections,
            header_timeout: args.header_timeout,
            body_timeout: args.body_timeout,
            write_timeout: args.write_timeout,
        },
        allowed_origins: args.allow_origin.clone(),
        allowed_hosts: args.allow_host.clone(),
        worker: args.streams.worker(),
        events: args.streams.events(),
        traces: args.otlp_endpoint.is_some(),
        metrics_max_series: args.metrics_max_series,
    }
}

/// Opens the store `args` name, and the clock to read time from: the database's on
/// PostgreSQL, so every node agrees on leases and due times.
async fn open_store(args: &ServeArgs) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn Clock>)> {
    if args.memory {
        return Ok((Arc::new(SqliteStore::temporary()?), Arc::new(SystemClock)));
    }
    let dead_retention = args.dead_retention.as_secs_f64();
    match &args.db {
        Database::Sqlite(path) => {
            let options = SqliteOptions {
                sync: args.sync.parse::<SyncMode>().map_err(anyhow::Error::msg)?,
                dead_retention,
            };
            let store = SqliteStore::open(path, options)
                .with_context(|| format!("opening {}", path.display()))?;
            Ok((Arc::new(store), Arc::new(SystemClock)))
        }
        Database::Postgres(url) => {
            let options = PostgresOptions {
                dead_retention,
                max_connections: args.db_connections,
                migrate: !args.no_migrate,
            };
            let store = PostgresStore::connect(url, options)
                .await
                .with_context(|| format!("opening {}", args.db.display()))?;
            let clock = Arc::new(OffsetClock::new());
            calibrate(&store, &clock).await?;
            tokio::spawn(keep_calibrated(store.clone(), clock.clone()));
            Ok((Arc::new(store), clock))
        }
    }
}

/// How often a node re-reads the database clock.
const CALIBRATE_EVERY: Duration = Duration::from_secs(30);

async fn calibrate(store: &PostgresStore, clock: &OffsetClock) -> anyhow::Result<()> {
    let sent = chrono::Utc::now();
    let reference = store
        .current_time()
        .await
        .context("reading the database clock")?;
    clock.calibrate(sent, reference, chrono::Utc::now());
    Ok(())
}

async fn keep_calibrated(store: PostgresStore, clock: Arc<OffsetClock>) {
    loop {
        tokio::time::sleep(CALIBRATE_EVERY).await;
        if let Err(error) = calibrate(&store, &clock).await {
            tracing::warn!(%error, "could not read the database clock");
        }
    }
}

/// Options of `errands migrate`.
#[derive(Args)]
pub struct MigrateArgs {
    /// The database to migrate: postgres://user@host/dbname (a SQLite file is migrated too).
    #[arg(long, env = "ERRANDS_DB", value_parser = Database::parse)]
    db: Database,
}

/// Brings the database's schema up to this version of errands, then exits.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    match &args.db {
        Database::Postgres(url) => {
            let applied = PostgresStore::migrate(url)
                .await
                .with_context(|| format!("migrating {}", args.db.display()))?;
            if applied.is_empty() {
                println!(
                    "{}: schema is current (version {})",
                    args.db.display(),
                    errands_store_postgres::current_version()
                );
            } else {
                println!("{}: applied migrations {applied:?}", args.db.display());
            }
        }
        Database::Sqlite(path) => {
            SqliteStore::open(path, SqliteOptions::default())
                .with_context(|| format!("migrating {}", path.display()))?;
            println!("{}: schema is current", path.display());
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_postgres_and_paths_sqlite() {
        assert_eq!(
            Database::parse("postgres://u@h/d"),
            Ok(Database::Postgres("postgres://u@h/d".into()))
        );
        assert_eq!(
            Database::parse("./jobs.db"),
            Ok(Database::Sqlite("./jobs.db".into()))
        );
        assert!(Database::parse("mysql://h/d").is_err());
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        let db = Database::parse("postgres://app:s3cret@db:5432/jobs").unwrap();
        assert_eq!(db.display(), "postgres://app:***@db:5432/jobs");
    }
}
