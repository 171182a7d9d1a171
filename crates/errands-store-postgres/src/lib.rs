//! The errands [`Store`] on PostgreSQL: any number of `errands serve` nodes on one database.
//!
//! Every object lives in the schema `errands`, created and upgraded by versioned migrations
//! ([`PostgresStore::migrate`]); the function `errands.enqueue(jsonb)` lets an application
//! enqueue inside its own transaction. Claims take rows with `FOR UPDATE SKIP LOCKED`, every
//! change is guarded by the state and lease it expects, and notices (ready queues, events,
//! aborts) travel between nodes with `LISTEN/NOTIFY`, sent inside the writing transaction.

mod cron;
mod enqueue;
mod error;
mod group;
mod interrupt;
mod jobs;
mod listen;
mod migrate;
mod nodes;
mod notify;
mod release;
mod reports;
mod rows;
mod store;
mod sweeps;
#[cfg(feature = "testing")]
pub mod testing;
mod throughput;
mod vacuum;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Client, Manager, ManagerConfig, Pool, RecyclingMethod};
use errands_store::{Notice, StoreError};
use tokio::sync::broadcast;
use tokio_postgres::NoTls;

pub use migrate::current_version;

/// Options for connecting a [`PostgresStore`].
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Seconds a dead job is kept before it is purged.
    pub dead_retention: f64,
    /// Most connections the store holds open (plus one for the listener).
    pub max_connections: usize,
    /// Apply missing migrations at connect; when false, a schema that is behind is an error.
    pub migrate: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            dead_retention: 30.0 * 86_400.0,
            max_connections: 16,
            migrate: true,
        }
    }
}

/// A [`Store`](errands_store::Store) in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Where enqueues, reports and claims wait for their group's transaction.
    group: group::GroupCommit,
    dead_retention: f64,
    notices: broadcast::Sender<Notice>,
    /// Tells the listener to follow other nodes' job events, or not.
    follow: tokio::sync::mpsc::UnboundedSender<listen::Follow>,
    listener: tokio::task::JoinHandle<()>,
    /// Counts this node's writes and vacuums the jobs table as they add up.
    vacuum: Arc<vacuum::Vacuum>,
    vacuum_task: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
        self.vacuum_task.abort();
    }
}

/// Attempts of an operation that keeps failing transiently before its error is returned.
const ATTEMPTS: u32 = 6;

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host/dbname`), migrating it first
    /// if `options.migrate` is set, and starts listening for notices.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let config = config(url)?;
        let pool = pool(config.clone(), options.max_connections)?;
        let mut client = get(&pool).await?;
        if options.migrate {
            migrate::migrate(&mut client).await?;
        } else {
            let pending = migrate::pending(&client).await?;
            if !pending.is_empty() {
                return Err(StoreError::Backend(format!(
                    "the errands schema is behind this server (migrations {pending:?} are not \
                     applied); run `errands migrate --db URL` or start without --no-migrate"
                )));
            }
        }
        drop(client);
        let (notices, _) = broadcast::channel(listen::BACKLOG);
        let (follow, commands) = tokio::sync::mpsc::unbounded_channel();
        let listener = tokio::spawn(listen::run(config, notices.clone(), commands));
        let (vacuum, vacuum_task) = vacuum::Vacuum::start(pool.clone());
        let group = group::GroupCommit::start(pool.clone(), options.dead_retention, vacuum.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                group,
                pool,
                dead_retention: options.dead_retention,
                notices,
                follow,
                listener,
                vacuum,
                vacuum_task,
            }),
        })
    }

    /// Applies every migration the database at `url` lacks, and returns their versions.
    pub async fn migrate(url: &str) -> Result<Vec<i64>, StoreError> {
        let pool = pool(config(url)?, 1)?;
        let mut client = get(&pool).await?;
        migrate::migrate(&mut client).await
    }

    /// How many times this store has vacuumed `errands.jobs` (see the `vacuum` module: it
    /// does so as its own writes leave dead rows behind, autovacuum or not).
    pub fn vacuums(&self) -> u64 {
        *self.inner.vacuum.runs().borrow()
    }

    /// [`PostgresStore::vacuums`], changing as vacuums run.
    pub fn vacuums_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.vacuum.runs()
    }

    /// A connection from the pool.
    async fn client(&self) -> Result<Client, StoreError> {
        get(&self.inner.pool).await
    }

    /// Runs `op` with [`retrying`].
    async fn retrying<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        retrying(op).await
    }
}

/// Runs `op` until it succeeds, fails for good, or has failed transiently [`ATTEMPTS`] times.
/// Every operation is one transaction that either commits or rolls back whole, so running it
/// again is safe.
async fn retrying<T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut wait = Duration::from_millis(5);
    for attempt in 1.. {
        match op().await {
            Err(error) if error.is_transient() && attempt < ATTEMPTS => {
                tracing::debug!(%error, attempt, "transient store error; retrying");
                tokio::time::sleep(wait).await;
                wait *= 4;
            }
            outcome => return outcome,
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// The connection settings of `url`, with the errands schema first on the search path.
fn config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|e| StoreError::Backend(format!("invalid database URL: {e}")))?;
    config.options("-c search_path=errands -c client_min_messages=warning");
    if config.get_application_name().is_none() {
        config.application_name("errands");
    }
    config.connect_timeout(Duration::from_secs(10));
    Ok(config)
}

fn pool(config: tokio_postgres::Config, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| StoreError::Backend(format!("cannot build the connection pool: {e}")))
}

async fn get(pool: &Pool) -> Result<Client, StoreError> {
    pool.get().await.map_err(error::from_pool)
}
