//! Every error response gets the JSON error body. The handlers' errors have it already; what
//! axum answers by itself does not: `405` for a wrong method is empty, and its extractors'
//! rejections (a `/v1/worker` request that is not a WebSocket upgrade, a bad path) are plain
//! text. Clients then had two shapes of error to read.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Longest plain-text body carried over into the JSON message.
const MAX_MESSAGE_BYTES: usize = 4096;

/// Middleware: rewrites an error response without a JSON body into the JSON error shape,
/// keeping its status, its headers (`Allow`, ...) and its text as the message.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    if response.status().as_u16() < 400 || is_json(response.headers()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let text = read_text(body).await;
    let message = match (status, parts.headers.get(ALLOW)) {
        (StatusCode::METHOD_NOT_ALLOWED, Some(allow)) => format!(
            "{method} is not allowed on this route; it takes {}",
            allow.to_str().unwrap_or_default()
        ),
        _ => text.unwrap_or_else(|| reason(status)),
    };
    let mut rewritten = ApiError::new(status, code(status), message).into_response();
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            rewritten.headers_mut().append(name, value.clone());
        }
    }
    rewritten
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// The body as text, if it is short, UTF-8 and not blank.
async fn read_text(body: Body) -> Option<String> {
    let bytes = axum::body::to_bytes(body, MAX_MESSAGE_BYTES).await.ok()?;
    let text = String::from_utf8(bytes.to_vec()).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn reason(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("request refused")
        .to_lowercase()
}

/// The error code for a status, as the API's own errors use them.
fn code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UPGRADE_REQUIRED => "upgrade_required",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        status if status.is_client_error() => "bad_request",
        _ => "internal",
    }
}
