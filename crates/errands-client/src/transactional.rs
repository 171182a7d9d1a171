//! Enqueue inside the application's own PostgreSQL transaction, with the `errands.enqueue`
//! SQL function of a server running on that database: the job exists if and only if the
//! transaction commits, and a commit wakes the server's workers at once.
//!
//! ```no_run
//! # use errands_client::{EnqueueOptions, Job};
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Welcome { user: i64 }
//! # impl Job for Welcome { const KIND: &'static str = "welcome"; type Output = (); }
//! # async fn demo(db: &mut tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
//! let tx = db.transaction().await?;
//! tx.execute("INSERT INTO users (id) VALUES (42)", &[]).await?;
//! errands_client::transactional::enqueue_in(&tx, &Welcome { user: 42 }, EnqueueOptions::new()).await?;
//! tx.commit().await?;
//! # Ok(()) }
//! ```

use errands_core::{EnqueueRequest, JobId, JobState};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;
use tokio_postgres::GenericClient;

use crate::client::Enqueued;
use crate::error::Error;
use crate::job::{Job, JobHandle};
use crate::options::EnqueueOptions;

/// Enqueues a typed job on `conn` (a client or a transaction); `options` override the kind's
/// defaults, as with [`Client::enqueue_with`](crate::Client::enqueue_with).
pub async fn enqueue_in<J: Job>(
    conn: &impl GenericClient,
    job: &J,
    options: EnqueueOptions,
) -> Result<JobHandle<J>, Error> {
    let request = options
        .over(J::options())
        .request(J::KIND, serde_json::to_value(job)?);
    let enqueued = enqueue_request_in(conn, &request).await?;
    Ok(JobHandle::new(enqueued.id, enqueued.created))
}

/// Enqueues `request` on `conn`. A field the server would refuse is refused the same way:
/// [`Error::Rejected`] naming the field.
pub async fn enqueue_request_in(
    conn: &impl GenericClient,
    request: &EnqueueRequest,
) -> Result<Enqueued, Error> {
    let row = conn
        .query_one(
            "SELECT id, state, created FROM errands.enqueue($1::jsonb)",
            &[&Json(request)],
        )
        .await
        .map_err(database_error)?;
    let state: String = row.get(1);
    Ok(Enqueued {
        id: JobId(row.get::<_, uuid::Uuid>(0)),
        state: state.parse::<JobState>().map_err(|e| Error::Database {
            message: e.to_string(),
        })?,
        created: row.get(2),
    })
}

/// The function reports a bad field as SQLSTATE 22023 with the field in the error's column.
fn database_error(error: tokio_postgres::Error) -> Error {
    match error.as_db_error() {
        Some(db) if *db.code() == SqlState::INVALID_PARAMETER_VALUE => Error::Rejected {
            code: "invalid_field".into(),
            field: db.column().map(str::to_owned),
            message: db.message().to_owned(),
        },
        Some(db) => Error::Database {
            message: format!("{}: {}", db.code().code(), db.message()),
        },
        None => Error::Database {
            message: error.to_string(),
        },
    }
}
