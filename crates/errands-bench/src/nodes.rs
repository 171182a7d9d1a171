//! The servers of one scenario: one `errands serve` on a fresh SQLite file, or one or more
//! nodes sharing a fresh PostgreSQL database that the bench creates and drops.

use anyhow::{Context, Result};

use crate::backend::Backend;
use crate::pg::{Database, JobsTable};
use crate::server::{CommitStats, Server};
use crate::Ctx;

/// Running servers on one store.
pub struct Nodes {
    servers: Vec<Server>,
    database: Option<Database>,
}

impl Nodes {
    /// Starts `count` nodes on `backend` (SQLite: always one). On PostgreSQL the first node
    /// migrates the fresh database before the others start, so they never race to do it.
    pub async fn start(ctx: &Ctx, backend: Backend, count: usize) -> Result<Self> {
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(Database::create(&ctx.postgres).await?),
        };
        let url = database.as_ref().map(Database::url);
        let count = if database.is_some() { count.max(1) } else { 1 };
        let mut servers = Vec::with_capacity(count);
        for _ in 0..count {
            servers.push(Server::start_on(&ctx.bin, url.as_deref()).await?);
        }
        Ok(Self { servers, database })
    }

    /// The first node (the one that migrated).
    pub fn first(&self) -> &Server {
        &self.servers[0]
    }

    /// Every node, the first first.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// The PostgreSQL database, if the nodes are on one.
    pub fn database(&self) -> Option<&Database> {
        self.database.as_ref()
    }

    /// Every node's process id.
    pub fn pids(&self) -> Vec<u32> {
        self.servers.iter().map(Server::pid).collect()
    }

    /// The store-commit totals summed over the nodes; `None` if any node does not serve them.
    pub async fn commit_stats(&self) -> Option<CommitStats> {
        let mut total = CommitStats {
            count: 0.0,
            seconds: 0.0,
        };
        for server in &self.servers {
            let stats = server.commit_stats().await?;
            total.count += stats.count;
            total.seconds += stats.seconds;
        }
        Some(total)
    }

    /// Kills every node, then on PostgreSQL reads `errands.jobs`' statistics once the nodes'
    /// backends have gone (and flushed theirs), and drops the database.
    pub async fn stop(self) -> Result<Option<JobsTable>> {
        for server in self.servers {
            server.stop().await?;
        }
        let Some(database) = self.database else {
            return Ok(None);
        };
        database.wait_backends_gone().await?;
        let table = database
            .jobs_table()
            .await
            .context("reading errands.jobs' statistics")?;
        database.drop_now().await?;
        Ok(Some(table))
    }
}
