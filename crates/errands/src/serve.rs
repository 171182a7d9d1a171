//! `errands serve`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use errands_core::{Limits, SystemClock};
use errands_server::ServerConfig;
use errands_store::sqlite::SqliteOptions;
use errands_store::{SqliteStore, Store, SyncMode};
use tokio::net::TcpListener;

/// Options of `errands serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ERRANDS_LISTEN", default_value = "127.0.0.1:7733")]
    listen: SocketAddr,
    /// SQLite database file.
    #[arg(long, env = "ERRANDS_DB", default_value = "errands.db")]
    db: PathBuf,
    /// Use a throwaway store, deleted on exit (for tests).
    #[arg(long, conflicts_with = "db")]
    memory: bool,
    /// full: an acknowledged write is fsynced before the reply; normal: it survives a crash of
    /// the server process but not a power cut.
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    sync: String,
    /// Bearer token required on every route but /healthz.
    #[arg(long, env = "ERRANDS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Largest serialised args of one job, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_args_bytes: usize,
    /// How long dead jobs are kept, e.g. 30d.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    dead_retention: std::time::Duration,
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        // Colours only on a terminal: logs sent to a file or a collector stay plain text.
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let store: Arc<dyn Store> = if args.memory {
        Arc::new(SqliteStore::temporary()?)
    } else {
        let options = SqliteOptions {
            sync: args.sync.parse::<SyncMode>().map_err(anyhow::Error::msg)?,
            dead_retention: args.dead_retention.as_secs_f64(),
        };
        Arc::new(
            SqliteStore::open(&args.db, options)
                .with_context(|| format!("opening {}", args.db.display()))?,
        )
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let store_name = if args.memory {
        "memory".to_owned()
    } else {
        args.db.display().to_string()
    };
    // With port 0 the system picks one; say which, so scripts and tests can find it.
    let listen = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%listen, store = %store_name, "errands serving");
    let config = ServerConfig {
        token: args.token,
        limits: Limits {
            max_args_bytes: args.max_args_bytes,
        },
        ..ServerConfig::default()
    };
    errands_server::serve(
        listener,
        store,
        Arc::new(SystemClock),
        config,
        shutdown_signal(),
    )
    .await?;
    tracing::info!("errands stopped");
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
