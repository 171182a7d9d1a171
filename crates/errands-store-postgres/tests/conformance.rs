//! The store conformance suite on PostgreSQL: every case on a database of its own.

use async_trait::async_trait;
use errands_store::conformance::Harness;
use errands_store_postgres::testing::TestDatabase;
use errands_store_postgres::{PostgresOptions, PostgresStore};

struct PostgresHarness {
    first: PostgresStore,
    // Dropped after the store, so the database goes last.
    database: TestDatabase,
}

async fn open(database: &TestDatabase) -> PostgresStore {
    PostgresStore::connect(&database.url(), PostgresOptions::default())
        .await
        .expect("connect")
}

#[async_trait]
impl Harness for PostgresHarness {
    type Store = PostgresStore;

    async fn fresh() -> Self {
        let database = TestDatabase::create().await;
        let first = open(&database).await;
        Self { first, database }
    }

    fn store(&self) -> &PostgresStore {
        &self.first
    }

    async fn another(&self) -> PostgresStore {
        open(&self.database).await
    }
}

errands_store::conformance_suite!(PostgresHarness);
