//! Refuses what a browser can be made to send on a visitor's behalf. Without a token (the
//! default on a loopback address) a page on any site could otherwise create jobs or pause
//! queues on the visitor's server: a form or a `no-cors` fetch needs no permission, and a
//! WebSocket has no same-origin rule at all. So, on every API route:
//!
//! - a request sent by a page of another origin (its `Sec-Fetch-Site` or `Origin` says so) is
//!   `403`, unless that origin is allowed by configuration;
//! - a request with a body must label it JSON (`415` otherwise), which no form can do;
//! - on a loopback address, the `Host` must name this machine (or be allowed by
//!   configuration), so a name an attacker rebinds to 127.0.0.1 gets nowhere;
//! - oversized request heads get a JSON `431` here, before hyper's bare one.
//!
//! Clients that are not browsers (curl, the SDKs) send neither `Origin` nor
//! `Sec-Fetch-Site`, and are only held to the content type and the `Host`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, TRANSFER_ENCODING};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Most header fields the API reads in one request.
pub const MAX_HEADERS: usize = 100;

/// Most bytes of header names and values in one request.
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// Which browsers' pages and which host names the API answers.
#[derive(Clone, Debug, Default)]
pub struct Origins {
    /// Origins besides the server's own whose pages may call the API, as
    /// `scheme://host[:port]`, lower case.
    allowed_origins: Vec<String>,
    /// `Host` values accepted on a loopback address besides this machine's names: `name`
    /// (any port) or `name:port`, lower case.
    allowed_hosts: Vec<String>,
    /// Listening on a loopback address: then the `Host` is checked.
    on_loopback: bool,
}

/// A configured origin or host name that cannot be one.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OriginError(String);

impl Origins {
    /// The rules for a server listening on `local`, with extra allowed origins and hosts.
    pub fn new(
        local: SocketAddr,
        allowed_origins: &[String],
        allowed_hosts: &[String],
    ) -> Result<Self, OriginError> {
        let allowed_origins = allowed_origins
            .iter()
            .map(|origin| normalise_origin(origin))
            .collect::<Result<_, _>>()?;
        let allowed_hosts = allowed_hosts
            .iter()
            .map(|host| normalise_host(host))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            allowed_origins,
            allowed_hosts,
            on_loopback: local.ip().is_loopback(),
        })
    }

    /// Why `headers` are refused, if they are.
    fn refusal(&self, method: &Method, headers: &HeaderMap) -> Option<ApiError> {
        oversized_head(headers)
            .or_else(|| self.wrong_host(headers))
            .or_else(|| self.cross_site(headers))
            .or_else(|| not_json(method, headers))
    }

    /// On a loopback address: a `Host` that does not name this machine.
    fn wrong_host(&self, headers: &HeaderMap) -> Option<ApiError> {
        if !self.on_loopback {
            return None;
        }
        // Browsers always send a Host; a request without one is not DNS rebinding. A rebound
        // name is the attacker's, so the name is what is checked; the port may differ (a
        // local proxy or relay in front), and another local origin is the Origin check's.
        let host = headers.get(HOST)?;
        let host = host.to_str().unwrap_or_default().to_ascii_lowercase();
        let (name, _port) = split_host(&host);
        let local_name = name == "localhost"
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let allowed = self
            .allowed_hosts
            .iter()
            .any(|allowed| *allowed == host || *allowed == name);
        if allowed || local_name {
            return None;
        }
        let message = format!(
            "this server listens on a loopback address and does not answer to Host {host:?}; \
             allow the name with --allow-host"
        );
        Some(forbidden("forbidden_host", message).with_field("host"))
    }

    /// A request a page of another origin sent.
    fn cross_site(&self, headers: &HeaderMap) -> Option<ApiError> {
        let origin = headers
            .get(ORIGIN)
            .map(|value| value.to_str().unwrap_or_default().to_ascii_lowercase());
        if let Some(origin) = &origin {
            if self.allowed_origins.contains(origin) {
                return None;
            }
        }
        // Browsers set Sec-Fetch-Site and pages cannot forge it: when present it decides.
        // `none` is the user's own navigation (the address bar, a bookmark).
        let site = headers.get("sec-fetch-site").map(|value| value.as_bytes());
        let same_origin = match site {
            Some(b"same-origin" | b"none") => true,
            Some(_) => false,
            None => origin.as_deref().is_none_or(|origin| {
                headers
                    .get(HOST)
                    .and_then(|host| host.to_str().ok())
                    .is_some_and(|host| same_authority(origin, host))
            }),
        };
        if same_origin {
            return None;
        }
        let from = origin.unwrap_or_else(|| "another site".to_owned());
        let message = format!(
            "requests from pages of {from} are refused; allow the origin with --allow-origin"
        );
        Some(forbidden("forbidden_origin", message).with_field("origin"))
    }
}

/// Middleware: refuses requests [`Origins`] does not accept.
pub async fn check(State(origins): State<Arc<Origins>>, request: Request, next: Next) -> Response {
    match origins.refusal(request.method(), request.headers()) {
        Some(error) => error.into_response(),
        None => next.run(request).await,
    }
}

fn forbidden(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, code, message)
}

/// More header fields or bytes than the API reads.
fn oversized_head(headers: &HeaderMap) -> Option<ApiError> {
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() <= MAX_HEADERS && bytes <= MAX_HEADER_BYTES {
        return None;
    }
    let message = format!(
        "request headers are over the limit of {MAX_HEADERS} fields and {MAX_HEADER_BYTES} bytes"
    );
    Some(ApiError::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
        message,
    ))
}

/// A request that carries a body (or says it does) not labelled JSON. Only methods that
/// take a body are held to it; a `POST` with no body and no label (cancel, pause) passes.
fn not_json(method: &Method, headers: &HeaderMap) -> Option<ApiError> {
    if !matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return None;
    }
    let has_body = headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    let content_type = headers.get(CONTENT_TYPE);
    let labelled_json = content_type.is_some_and(|value| is_json(value.as_bytes()));
    if labelled_json || (content_type.is_none() && !has_body) {
        return None;
    }
    Some(
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "request bodies must be JSON, sent with Content-Type: application/json",
        )
        .with_field("content-type"),
    )
}

/// `application/json` or `application/<something>+json`, with any parameters.
fn is_json(content_type: &[u8]) -> bool {
    let Ok(content_type) = std::str::from_utf8(content_type) else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// Whether `origin` (`scheme://host[:port]`) is the origin a page served with `host` has.
fn same_authority(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let host = host.to_ascii_lowercase();
    let (origin_name, origin_port) = split_host(authority);
    let (host_name, host_port) = split_host(&host);
    origin_name == host_name
        && origin_port.unwrap_or(default_port) == host_port.unwrap_or(default_port)
}

/// `name[:port]` split; an IPv6 literal keeps its brackets.
fn split_host(host: &str) -> (&str, Option<u16>) {
    let port_start = match host.rfind(']') {
        Some(bracket) => host[bracket..].find(':').map(|colon| bracket + colon),
        None => host.rfind(':'),
    };
    match port_start {
        Some(colon) => match host[colon + 1..].parse() {
            Ok(port) => (&host[..colon], Some(port)),
            Err(_) => (host, None),
        },
        None => (host, None),
    }
}

/// `https://Ops.Example.com/` as `https://ops.example.com`; refuses what is not an origin.
fn normalise_origin(origin: &str) -> Result<String, OriginError> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let valid = origin.split_once("://").is_some_and(|(scheme, authority)| {
        matches!(scheme, "http" | "https")
            && !authority.is_empty()
            && !authority.contains(['/', '?', '#', '@', ' '])
    });
    if valid {
        Ok(origin)
    } else {
        Err(OriginError(format!(
            "allowed origin {origin:?} is not scheme://host[:port] (http or https)"
        )))
    }
}

fn normalise_host(host: &str) -> Result<String, OriginError> {
    let host = host.trim().to_ascii_lowercase();
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        return Err(OriginError(format!(
            "allowed host {host:?} is not a host name, with or without :port"
        )));
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn origins(local: &str) -> Origins {
        Origins::new(
            local.parse().unwrap(),
            &["https://ops.example.com".into()],
            &["errands.internal".into()],
        )
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn refused(
        origins: &Origins,
        method: Method,
        pairs: &[(&'static str, &'static str)],
    ) -> Option<&'static str> {
        let error = origins.refusal(&method, &headers(pairs))?;
        Some(match error.status() {
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "media",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "head",
            _ => "other",
        })
    }

    #[test]
    fn loopback_hosts_must_name_this_machine() {
        let o = origins("127.0.0.1:7733");
        for host in [
            "127.0.0.1:7733",
            "localhost:7733",
            "LOCALHOST:7733",
            "[::1]:7733",
            "127.0.0.2:7733",
            "errands.internal",
            "errands.internal:99",
            "localhost:7734",
            "127.0.0.1",
        ] {
            assert_eq!(refused(&o, Method::GET, &[("host", host)]), None, "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:7733",
            "localhost.evil.example:7733",
        ] {
            assert_eq!(
                refused(&o, Method::GET, &[("host", host)]),
                Some("forbidden"),
                "{host}"
            );
        }
        // Not on loopback: any name reaches it.
        let public = origins("0.0.0.0:7733");
        assert_eq!(
            refused(&public, Method::GET, &[("host", "evil.example")]),
            None
        );
    }

    #[test]
    fn pages_of_other_origins_are_refused() {
        let o = origins("127.0.0.1:7733");
        let host = ("host", "127.0.0.1:7733");
        let same = [host, ("origin", "http://127.0.0.1:7733")];
        assert_eq!(refused(&o, Method::GET, &same), None);
        let fetch_same = [host, ("sec-fetch-site", "same-origin")];
        assert_eq!(refused(&o, Method::POST, &fetch_same), None);
        let typed = [host, ("sec-fetch-site", "none")];
        assert_eq!(refused(&o, Method::GET, &typed), None);
        let allowed = [
            host,
            ("origin", "https://ops.example.com"),
            ("sec-fetch-site", "cross-site"),
        ];
        assert_eq!(refused(&o, Method::POST, &allowed), None);
        let cases: [&[(&'static str, &'static str)]; 4] = [
            &[host, ("origin", "http://evil.example")],
            &[host, ("origin", "null")],
            &[host, ("sec-fetch-site", "cross-site")],
            // Another port of localhost is the same site, not the same origin.
            &[
                host,
                ("sec-fetch-site", "same-site"),
                ("origin", "http://127.0.0.1:3000"),
            ],
        ];
        for case in cases {
            assert_eq!(
                refused(&o, Method::POST, case),
                Some("forbidden"),
                "{case:?}"
            );
        }
    }

    #[test]
    fn bodies_must_be_labelled_json() {
        let o = origins("0.0.0.0:7733");
        let ok: [&[(&'static str, &'static str)]; 4] = [
            &[("content-type", "application/json")],
            &[("content-type", "Application/JSON; charset=utf-8")],
            &[
                ("content-type", "application/merge-patch+json"),
                ("content-length", "2"),
            ],
            &[("content-length", "0")],
        ];
        for case in ok {
            assert_eq!(refused(&o, Method::POST, case), None, "{case:?}");
        }
        let bad: [&[(&'static str, &'static str)]; 4] = [
            &[("content-type", "text/plain")],
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("content-length", "0"),
            ],
            &[("content-length", "12")],
            &[("transfer-encoding", "chunked")],
        ];
        for case in bad {
            assert_eq!(refused(&o, Method::POST, case), Some("media"), "{case:?}");
        }
        assert_eq!(
            refused(&o, Method::GET, &[("content-type", "text/plain")]),
            None
        );
    }

    #[test]
    fn configured_origins_must_be_origins() {
        let local = "127.0.0.1:1".parse().unwrap();
        for bad in ["ops.example.com", "ftp://x", "https://x/path", "https://"] {
            assert!(Origins::new(local, &[bad.into()], &[]).is_err(), "{bad}");
        }
        assert!(Origins::new(local, &[], &["".into()]).is_err());
    }

    #[test]
    fn hosts_split_with_ipv6_literals() {
        assert_eq!(split_host("[::1]:80"), ("[::1]", Some(80)));
        assert_eq!(split_host("[::1]"), ("[::1]", None));
        assert_eq!(split_host("a:1"), ("a", Some(1)));
        assert_eq!(split_host("a"), ("a", None));
    }
}
