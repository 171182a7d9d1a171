//! The web dashboard: plain HTML, CSS and JavaScript modules embedded in the binary.
//!
//! The assets are a shell with no data in it, so `/` and `/assets/*` are public; everything
//! the dashboard shows comes from the `/v1` routes, which need the token when one is set (the
//! page asks for it when an API call answers `401`). Assets are sent with `Cache-Control:
//! no-cache` and an `ETag`: the browser revalidates each load (a cheap `304`), so a new binary
//! never leaves a stale script behind.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("../assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("overview.js", JS),
    asset!("jobs.js", JS),
    asset!("job.js", JS),
    asset!("cron.js", JS),
];

/// The page's Content-Security-Policy: only its own scripts, styles and connections (the
/// WebSocket included), and no framing, so its buttons cannot be clickjacked.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `GET /`: the dashboard's page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers).unwrap_or_else(IntoResponse::into_response)
}

/// `GET /assets/{file}`: a script, the stylesheet or the icon.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    // index.html is the page at `/`, not an asset.
    if file == "index.html" {
        return ApiError::not_found("no such asset").into_response();
    }
    serve(&file, &headers).unwrap_or_else(IntoResponse::into_response)
}

fn serve(name: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let (index, asset) = ASSETS
        .iter()
        .enumerate()
        .find(|(_, asset)| asset.name == name)
        .ok_or_else(|| ApiError::not_found("no such asset"))?;
    let etag = &etags()[index];
    let mut common = vec![
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (ETAG, etag.clone()),
        (
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if asset.name == "index.html" {
        common.push((
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(CSP),
        ));
        common.push((
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        ));
    }
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(CONTENT_TYPE, HeaderValue::from_static(asset.content_type))],
            asset.body,
        )
            .into_response()
    };
    response.headers_mut().extend(common);
    Ok(response)
}

/// A strong ETag per asset, from a hash of its bytes (computed once).
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let mut hasher = DefaultHasher::new();
                asset.body.hash(&mut hasher);
                let tag = format!("\"{}-{:016x}\"", env!("CARGO_PKG_VERSION"), hasher.finish());
                HeaderValue::from_str(&tag).expect("an ETag is ASCII")
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_embedded() {
        let page = ASSETS[0].body;
        for asset in ASSETS {
            if asset.name.ends_with(".js") && asset.name != "app.js" {
                continue; // imported by app.js, not named by the page
            }
            if asset.name != "index.html" {
                assert!(
                    page.contains(&format!("/assets/{}", asset.name)),
                    "{}",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn every_import_is_embedded() {
        for asset in ASSETS.iter().filter(|asset| asset.name.ends_with(".js")) {
            // `import … from './x.js'`, however many lines the import takes.
            for rest in asset.body.split("from './").skip(1) {
                let file = rest.split('\'').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|other| other.name == file),
                    "{} imports {file:?}, which is not embedded",
                    asset.name
                );
            }
        }
    }
}
