//! Request extractors whose failures are JSON errors naming the field, not plain text.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use bytes::Bytes;
use errands_core::JobId;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body parsed strictly; errors name the JSON path of the bad field.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The whole body; one over the size limit is `413 too_large`.
async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "request body is over the size limit",
                )
            } else {
                ApiError::invalid_json(rejection.body_text())
            }
        })
}

/// Parses JSON, naming the path of the first bad field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Tracking the path copies every key and wraps every value, which was a large part of
    // parsing a batch. Only a body that fails needs the path, so that one is parsed again,
    // tracked: the same parser fails the same way, now knowing where.
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    T::deserialize(deserializer).or_else(|_| parse_json_tracked(bytes))
}

/// [`parse_json`], tracking the path to name the bad field.
fn parse_json_tracked<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let field = known_path(error.path());
        ApiError::invalid_json(error.inner().to_string()).with_field(field)
    })
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

/// An optional JSON body: empty means the default.
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        parse_json(&bytes).map(OptionalJsonBody)
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
                // An unknown parameter is named in the message, not the path.
                let field = if field == "." {
                    unknown_field(&message)
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

/// The name in serde's "unknown field `x`" message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
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
    /// tracked parse gives, and a good one parses as before (trailing bytes included).
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
}
