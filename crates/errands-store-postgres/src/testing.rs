//! Throwaway databases for tests: each test creates its own and drops it when done, so runs
//! never see each other's data.

use std::time::Duration;

use tokio_postgres::NoTls;

/// The server tests create databases on: `ERRANDS_TEST_POSTGRES`, or the local one.
pub fn server_url() -> String {
    std::env::var("ERRANDS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A database created for one test and dropped (with its connections) when this is dropped.
pub struct TestDatabase {
    name: String,
}

impl TestDatabase {
    /// Creates a new, empty database with a unique name.
    ///
    /// # Panics
    /// If the PostgreSQL server cannot be reached: a test that needs it fails, never skips.
    pub async fn create() -> Self {
        let name = format!("errands_test_{}", uuid::Uuid::now_v7().simple());
        let admin = admin().await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        Self { name }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("{}/{}", server_url(), self.name)
    }
}

async fn admin() -> tokio_postgres::Client {
    let url = format!("{}/postgres", server_url());
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url}: {e}"));
    tokio::spawn(connection);
    client
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Dropping may happen inside a runtime that is shutting down (or while a test
        // panics): do it on a thread of its own with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = admin().await;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let drop = client.batch_execute(&sql);
                tokio::time::timeout(Duration::from_secs(30), drop)
                    .await
                    .map_err(|_| std::io::Error::other("timed out"))?
                    .map_err(std::io::Error::other)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}
