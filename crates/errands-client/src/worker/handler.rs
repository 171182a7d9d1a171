//! Job handlers and the errors they return.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::context::JobContext;
use crate::job::Job;

/// What a handler returns, type-erased.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, HandlerError>> + Send>>;

/// A registered handler, type-erased over the job's argument and output types.
pub(crate) type Handler = Arc<dyn Fn(JobContext, Value) -> HandlerFuture + Send + Sync>;

/// What the server should do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Retry {
    /// Retry per the job's backoff policy (while attempts remain).
    Policy,
    /// Retry after this delay instead of the backoff.
    After(Duration),
    /// Do not retry: the job goes to `dead` now.
    Never,
}

/// A failed attempt: an error type, a message, and what to do next.
///
/// Any `std::error::Error` converts into one with `?`, keeping the error's type name.
#[derive(Clone, Debug, PartialEq)]
pub struct HandlerError {
    /// Error class shown in the job's history.
    pub kind: String,
    /// Human-readable message.
    pub message: String,
    /// Retry decision.
    pub retry: Retry,
}

impl HandlerError {
    /// A retryable failure.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            retry: Retry::Policy,
        }
    }

    /// A failure not worth retrying: the job goes to `dead` at once.
    pub fn permanent(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(kind, message).with_retry(Retry::Never)
    }

    /// A failure to retry after `delay` (say, a rate limit's Retry-After).
    pub fn retry_after(
        delay: Duration,
        kind: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(kind, message).with_retry(Retry::After(delay))
    }

    /// The same error with another retry decision.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(error: E) -> Self {
        let full = std::any::type_name::<E>();
        let short = full.split('<').next().unwrap_or(full);
        let kind = short.rsplit("::").next().unwrap_or(short);
        HandlerError::new(kind, error.to_string())
    }
}

/// Wraps a typed handler: decodes the arguments, encodes the output.
pub(crate) fn typed<J, F, Fut>(handler: F) -> Handler
where
    J: Job,
    F: Fn(JobContext, J) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<J::Output, HandlerError>> + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |ctx, args| {
        let handler = handler.clone();
        Box::pin(async move {
            let job: J = serde_json::from_value(args).map_err(|e| {
                HandlerError::permanent("InvalidArgs", format!("cannot decode {}: {e}", J::KIND))
            })?;
            let output = handler(ctx, job).await?;
            serde_json::to_value(output)
                .map_err(|e| HandlerError::permanent("InvalidOutput", e.to_string()))
        })
    })
}

/// Wraps an untyped handler.
pub(crate) fn raw<F, Fut>(handler: F) -> Handler
where
    F: Fn(JobContext, Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, HandlerError>> + Send + 'static,
{
    Arc::new(move |ctx, args| Box::pin(handler(ctx, args)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_errors_keep_their_type_name() {
        let parse = "x".parse::<u32>().unwrap_err();
        let error = HandlerError::from(parse);
        assert_eq!(error.kind, "ParseIntError");
        assert_eq!(error.retry, Retry::Policy);
    }

    #[test]
    fn permanent_errors_refuse_retry() {
        assert_eq!(HandlerError::permanent("Bad", "input").retry, Retry::Never);
    }
}
