//! The optional bearer token, checked on every route but `/healthz` and the dashboard's assets.
//!
//! `GET /v1/events` also takes the token as a `?token=` query parameter: browsers cannot set an
//! `Authorization` header on a `WebSocket` (nor on an `EventSource`), so the dashboard's live
//! stream could not authenticate otherwise. Only that route takes it, because a token in a URL is
//! easier to leak (history, logs, `Referer`) than one in a header; it is removed from the query
//! before the handler runs, so it never reaches the event filters.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The token a request must present, if any.
#[derive(Clone)]
pub struct Token(pub Option<Arc<str>>);

/// Middleware: refuses requests without the right token.
pub async fn require_token(
    State(token): State<Token>,
    mut request: Request,
    next: Next,
) -> Response {
    // Taken out of the query even without a configured token, so a dashboard that still holds
    // an old token does not get `400 unknown field` from the event filters.
    let query_token = take_query_token(&mut request);
    let Some(expected) = token.0 else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or(query_token)
        .unwrap_or_default();
    // Constant time, so response timing does not leak how much of a guess was right.
    if presented.as_bytes().ct_eq(expected.as_bytes()).into() {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// On `GET /v1/events` only: removes `token=...` from the query and returns its decoded value.
fn take_query_token(request: &mut Request) -> Option<String> {
    if request.method() != Method::GET || request.uri().path() != "/v1/events" {
        return None;
    }
    let query = request.uri().query()?;
    let (tokens, rest): (Vec<&str>, Vec<&str>) = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .partition(|pair| pair.split('=').next() == Some("token"));
    let token = tokens.last().and_then(|pair| {
        let uri: Uri = format!("/?{pair}").parse().ok()?;
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri).ok()?;
        pairs.into_iter().next().map(|(_, value)| value)
    });
    if !tokens.is_empty() {
        let path = request.uri().path();
        let path_and_query = if rest.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", rest.join("&"))
        };
        let mut parts = request.uri().clone().into_parts();
        parts.path_and_query = path_and_query.parse().ok();
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    token
}
