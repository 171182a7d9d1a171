//! The HTTP client: enqueue, inspect and steer jobs.

use std::time::Duration;

use errands_core::cron::{CronEntry, CronSpec};
use errands_core::{EnqueueRequest, Job as JobInfo, JobId, JobState};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::Error;
use crate::events;
use crate::job::{Job, JobHandle};
use crate::options::EnqueueOptions;

/// Where the server is when `ERRANDS_URL` is unset.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7733";

/// The outcome of enqueueing one job, untyped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The job's id.
    pub id: JobId,
    /// Its state.
    pub state: JobState,
    /// False when a unique key matched an existing job.
    pub created: bool,
}

/// A connection to an errands server. Cheap to clone; clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the server at `url` (e.g. `http://127.0.0.1:7733`).
    pub fn new(url: impl Into<String>, token: Option<String>) -> Result<Self, Error> {
        let base = url.into().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Rejected {
                code: "invalid_url".into(),
                field: Some("url".into()),
                message: format!("{base:?} is not an http(s) URL"),
            });
        }
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| Error::Connection(e.to_string()))?;
        Ok(Self { http, base, token })
    }

    /// A client configured by `ERRANDS_URL` (default `http://127.0.0.1:7733`) and
    /// `ERRANDS_TOKEN`.
    pub fn from_env() -> Result<Self, Error> {
        let url = std::env::var("ERRANDS_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let token = std::env::var("ERRANDS_TOKEN")
            .ok()
            .filter(|t| !t.is_empty());
        Self::new(url, token)
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The WebSocket URL of `path` on this server.
    pub(crate) fn ws_url(&self, path: &str) -> String {
        format!("{}{}", self.base.replacen("http", "ws", 1), path)
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Enqueues a typed job with its kind's default options.
    pub async fn enqueue<J: Job>(&self, job: &J) -> Result<JobHandle<J>, Error> {
        self.enqueue_with(job, EnqueueOptions::new()).await
    }

    /// Enqueues a typed job; `options` override the kind's defaults.
    pub async fn enqueue_with<J: Job>(
        &self,
        job: &J,
        options: EnqueueOptions,
    ) -> Result<JobHandle<J>, Error> {
        let request = options
            .over(J::options())
            .request(J::KIND, serde_json::to_value(job)?);
        let enqueued = self.enqueue_request(request).await?;
        Ok(JobHandle::new(enqueued.id, enqueued.created))
    }

    /// Enqueues an untyped job by kind name, for producers that do not share the job types.
    pub async fn enqueue_raw(
        &self,
        kind: &str,
        args: Value,
        options: EnqueueOptions,
    ) -> Result<Enqueued, Error> {
        self.enqueue_request(options.request(kind, args)).await
    }

    /// Enqueues a fully built request.
    pub async fn enqueue_request(&self, request: EnqueueRequest) -> Result<Enqueued, Error> {
        self.call(self.request(Method::POST, "/v1/jobs").json(&request))
            .await
    }

    /// Enqueues many jobs in one transaction: all are stored, or none.
    pub async fn enqueue_batch(
        &self,
        requests: Vec<EnqueueRequest>,
    ) -> Result<Vec<Enqueued>, Error> {
        #[derive(Deserialize)]
        struct Batch {
            jobs: Vec<Enqueued>,
        }
        let batch: Batch = self
            .call(
                self.request(Method::POST, "/v1/jobs/batch")
                    .json(&json!({"jobs": requests})),
            )
            .await?;
        Ok(batch.jobs)
    }

    /// Everything the server knows about a job.
    pub async fn get(&self, id: JobId) -> Result<JobInfo, Error> {
        self.call(self.request(Method::GET, &format!("/v1/jobs/{id}")))
            .await
    }

    /// Cancels a job; a running job's worker is told to abort it.
    pub async fn cancel(&self, id: JobId) -> Result<JobInfo, Error> {
        self.call(self.request(Method::POST, &format!("/v1/jobs/{id}/cancel")))
            .await
    }

    /// Puts a dead, cancelled or completed job back in its queue.
    pub async fn retry(&self, id: JobId) -> Result<JobInfo, Error> {
        self.call(self.request(Method::POST, &format!("/v1/jobs/{id}/retry")))
            .await
    }

    /// Deletes a job that is not running.
    pub async fn delete(&self, id: JobId) -> Result<(), Error> {
        self.call::<Value>(self.request(Method::DELETE, &format!("/v1/jobs/{id}")))
            .await
            .map(drop)
    }

    /// Creates or replaces the cron schedule `name`. Re-declaring a schedule with the same
    /// timing keeps its next fire time, and leaving `spec.paused` unset keeps its paused state,
    /// so workers can declare their schedules every time they start.
    pub async fn put_cron(&self, name: &str, spec: &CronSpec) -> Result<CronEntry, Error> {
        self.call(self.request(Method::PUT, &cron_path(name, "")).json(spec))
            .await
    }

    /// One cron schedule with its next fire times.
    pub async fn get_cron(&self, name: &str) -> Result<CronEntry, Error> {
        self.call(self.request(Method::GET, &cron_path(name, "")))
            .await
    }

    /// Every cron schedule with its next fire times, by name: the server lists them a page
    /// at a time, and this follows the pages to the last.
    pub async fn list_cron(&self) -> Result<Vec<CronEntry>, Error> {
        #[derive(Deserialize)]
        struct Page {
            schedules: Vec<CronEntry>,
            #[serde(default)]
            next_cursor: Option<String>,
        }
        let mut schedules = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut request = self.request(Method::GET, "/v1/cron");
            if let Some(after) = &after {
                request = request.query(&[("after", after)]);
            }
            let page: Page = self.call(request).await?;
            schedules.extend(page.schedules);
            match page.next_cursor {
                // A cursor that does not move would loop forever: stop instead.
                Some(next) if after.as_ref() != Some(&next) => after = Some(next),
                _ => return Ok(schedules),
            }
        }
    }

    /// Deletes a cron schedule; jobs it already enqueued stay.
    pub async fn delete_cron(&self, name: &str) -> Result<(), Error> {
        self.call::<Value>(self.request(Method::DELETE, &cron_path(name, "")))
            .await
            .map(drop)
    }

    /// Pauses (`true`) or resumes (`false`) a cron schedule. A resumed schedule next fires at
    /// its first fire time after now.
    pub async fn set_cron_paused(&self, name: &str, paused: bool) -> Result<CronEntry, Error> {
        let action = if paused { "/pause" } else { "/resume" };
        self.call(self.request(Method::POST, &cron_path(name, action)))
            .await
    }

    /// Enqueues a cron schedule's job now, whatever its timing.
    pub async fn trigger_cron(&self, name: &str) -> Result<Enqueued, Error> {
        self.call(self.request(Method::POST, &cron_path(name, "/trigger")))
            .await
    }

    /// Waits until the job finishes (completed, dead or cancelled) and returns it.
    ///
    /// Subscribes to the server's events for this job, then reads the job once (it may have
    /// finished already) and sleeps until an event says it finished. If the event stream is
    /// unavailable it falls back to re-reading the job with a growing delay.
    pub async fn wait(&self, id: JobId, timeout: Duration) -> Result<JobInfo, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let waited = tokio::time::timeout_at(deadline, async {
            match events::JobEvents::subscribe(self, id).await {
                Ok(mut events) => {
                    let job = self.get(id).await?;
                    if job.state.is_finished() {
                        return Ok(job);
                    }
                    if events.finished().await.is_ok() {
                        return self.get(id).await;
                    }
                    self.poll_until_finished(id).await
                }
                Err(_) => self.poll_until_finished(id).await,
            }
        })
        .await;
        waited.map_err(|_| Error::Timeout)?
    }

    /// Re-reads the job with a delay growing from 5 ms to 250 ms until it finishes.
    async fn poll_until_finished(&self, id: JobId) -> Result<JobInfo, Error> {
        let mut pause = Duration::from_millis(5);
        loop {
            let job = self.get(id).await?;
            if job.state.is_finished() {
                return Ok(job);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// Waits for a typed job's output. A dead job is [`Error::JobFailed`], a cancelled one
    /// [`Error::JobCancelled`].
    pub async fn result<J: Job>(
        &self,
        handle: &JobHandle<J>,
        timeout: Duration,
    ) -> Result<J::Output, Error> {
        let job = self.wait(handle.id, timeout).await?;
        match job.state {
            JobState::Completed => Ok(serde_json::from_value(job.result.unwrap_or(Value::Null))?),
            JobState::Cancelled => Err(Error::JobCancelled(Box::new(job))),
            _ => Err(Error::JobFailed(Box::new(job))),
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn call<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, Error> {
        let response = request
            .send()
            .await
            .map_err(|e| Error::Connection(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Error::Connection(e.to_string()))?;
        if status.is_success() {
            let body = if bytes.is_empty() {
                &b"null"[..]
            } else {
                &bytes[..]
            };
            return Ok(serde_json::from_slice(body)?);
        }
        Err(error_from(status, &bytes))
    }
}

/// The path of cron schedule `name` plus `suffix`, the name percent-encoded.
fn cron_path(name: &str, suffix: &str) -> String {
    let mut path = String::from("/v1/cron/");
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    path.push_str(suffix);
    path
}

/// Turns an error response into the matching [`Error`].
fn error_from(status: StatusCode, body: &[u8]) -> Error {
    let detail: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let detail = &detail["error"];
    let message = detail["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    match status {
        StatusCode::UNAUTHORIZED => Error::Unauthorized,
        StatusCode::NOT_FOUND => Error::NotFound { message },
        StatusCode::CONFLICT => Error::Conflict { message },
        s if s.is_client_error() => Error::Rejected {
            code: detail["code"].as_str().unwrap_or("rejected").to_owned(),
            field: detail["field"].as_str().map(str::to_owned),
            message,
        },
        s => Error::Server {
            status: s.as_u16(),
            message,
        },
    }
}
