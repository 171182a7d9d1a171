//! Request extractors whose failures are JSON errors naming the field, not plain text.

use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use errands_core::JobId;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// How large a route's request body may be and how long the client has to send it. Routes
/// carry theirs as a request extension; one without gets the default.
#[derive(Clone, Copy, Debug)]
pub struct BodyRules {
    /// Largest body, in bytes.
    pub max_bytes: usize,
    /// Longest time to receive the whole body.
    pub timeout: Duration,
}

impl Default for BodyRules {
    fn default() -> Self {
        Self {
            max_bytes: 2 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A JSON body parsed strictly; errors name the JSON path of the bad field.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = BodyError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request).await?;
        Ok(parse_json(&bytes).map(JsonBody)?)
    }
}

/// The whole body, read under the route's [`BodyRules`]: a body over the size limit is
/// `413 too_large` as soon as its `Content-Length` or its bytes say so, without being read
/// further, and one that takes too long to arrive is `408 timeout`.
async fn read_body(request: Request) -> Result<Bytes, BodyError> {
    let rules = request
        .extensions()
        .get::<BodyRules>()
        .copied()
        .unwrap_or_default();
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > rules.max_bytes as u64) {
        return Err(BodyError::TooLarge(rules.max_bytes));
    }
    let limited = Limited::new(request.into_body(), rules.max_bytes);
    match tokio::time::timeout(rules.timeout, limited.collect()).await {
        Err(_) => Err(BodyError::Timeout(rules.timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge(rules.max_bytes))
        }
        Ok(Err(error)) => Err(BodyError::Unreadable(error.to_string())),
    }
}

/// Why a body could not be read.
pub enum BodyError {
    /// Over this many bytes.
    TooLarge(usize),
    /// Not all there within this long.
    Timeout(Duration),
    /// The connection failed while it was read.
    Unreadable(String),
    /// It was read and is not what the route takes.
    Invalid(ApiError),
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        let (error, close) = match self {
            BodyError::TooLarge(limit) => (
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("request body is over the size limit of {limit} bytes"),
                ),
                true,
            ),
            BodyError::Timeout(timeout) => (
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    format!(
                        "the request body did not arrive within {} s",
                        timeout.as_secs_f64()
                    ),
                ),
                true,
            ),
            BodyError::Unreadable(message) => (
                ApiError::invalid_json(format!("could not read the request body: {message}")),
                true,
            ),
            BodyError::Invalid(error) => (error, false),
        };
        let mut response = error.into_response();
        // The rest of an unread body is still on its way: the connection cannot carry
        // another request, so say it closes.
        if close {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<ApiError> for BodyError {
    fn from(error: ApiError) -> Self {
        BodyError::Invalid(error)
    }
}

/// Parses JSON, naming the path of the first bad field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Tracking the path copies every key and wraps every value, which was a large part of
    // parsing a batch. Only a body that fails needs the path, so that one is parsed again,
    // tracked: the same parser fails the same way, now knowing where.
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    match T::deserialize(&mut *deserializer) {
        Ok(value) => deserializer.end().map(|()| value).map_err(trailing),
        Err(_) => parse_json_tracked(bytes),
    }
}

/// Bytes after the JSON value: a client that sent two values, or garbage, meant something
/// other than the first value alone.
fn trailing(error: serde_json::Error) -> ApiError {
    ApiError::invalid_json(format!(
        "the request body has more after its JSON value ({error})"
    ))
}

/// [`parse_json`], tracking the path to name the bad field.
fn parse_json_tracked<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *deserializer).map_err(|error| {
        let field = known_path(error.path());
        ApiError::invalid_json(error.inner().to_string()).with_field(field)
    })?;
    deserializer.end().map_err(trailing)?;
    Ok(value)
}

/// The path as `jobs[3].kind`, cut where it stops being known: serde_path_to_error writes an
/// unknown segment as `?` (a syntax error where a key was expected), which names no field.
fn known_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut field = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => field.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(key);
            }
            Segment::Unknown => break,
        }
    }
    field
}

/// An optional JSON body: empty, or `null` (what the document's nullable body allows),
/// means the default.
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = BodyError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        let parsed: Option<T> = parse_json(&bytes)?;
        Ok(OptionalJsonBody(parsed.unwrap_or_default()))
    }
}

/// Query parameters; errors are JSON.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(QueryParams)
            .map_err(|error| {
                let field = error.path().to_string();
                let message = error.inner().to_string();
                // An unknown or repeated parameter is named in the message, not the path.
                let field = if field == "." {
                    named_field(&message)
                } else {
                    Some(field)
                };
                let error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message);
                match field {
                    Some(field) => error.with_field(field),
                    None => error,
                }
            })
    }
}

/// The name in serde's "unknown field `x`" or "duplicate field `x`" message.
fn named_field(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("duplicate field `"))?;
    rest.split('`').next().map(str::to_owned)
}

/// A job id from the path; a malformed id is as unknown as a missing one.
pub struct JobPath(pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::not_found(rejection.body_text()))?;
        raw.parse()
            .map(JobPath)
            .map_err(|_| ApiError::not_found(format!("job {raw} not found")))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch {
        #[allow(dead_code)]
        jobs: Vec<Job>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Job {
        #[allow(dead_code)]
        kind: String,
    }

    /// The untracked first try changes nothing a client sees: a bad body gets the error the
    /// tracked parse gives (trailing bytes included), and a good one parses as before.
    #[test]
    fn errors_are_those_of_the_tracked_parse() {
        let bodies: [&[u8]; 5] = [
            br#"{"jobs":[{"kind":"a"},{"kind":5}]}"#,
            br#"{"jobs":[{"kind":"a","qeue":"x"}]}"#,
            br#"{"jobs":[{"kind":"a"}"#,
            b"",
            br#"{"jobs":[]} trailing"#,
        ];
        for body in bodies {
            let fast = parse_json::<Batch>(body).map_err(|e| format!("{e:?}"));
            let tracked = parse_json_tracked::<Batch>(body).map_err(|e| format!("{e:?}"));
            assert_eq!(fast.map(|b| b.jobs.len()), tracked.map(|b| b.jobs.len()));
        }
        let error = parse_json::<Batch>(bodies[0]).unwrap_err();
        assert!(format!("{error:?}").contains("jobs[1].kind"), "{error:?}");
    }

    #[test]
    fn bytes_after_the_value_are_refused() {
        for body in [
            &br#"{"jobs":[]} trailing"#[..],
            br#"{"jobs":[]}{"jobs":[]}"#,
        ] {
            let error = parse_json::<Batch>(body).unwrap_err();
            assert!(
                format!("{error:?}").contains("after its JSON value"),
                "{error:?}"
            );
        }
        assert!(parse_json::<Batch>(b" {\"jobs\":[]}\n ").is_ok());
    }
}
