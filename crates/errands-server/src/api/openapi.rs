//! The OpenAPI document served at `/openapi.json`: generated from the handlers and types,
//! then given what every route shares (the token, the request guards, the body limits), so
//! each handler documents only its own answers. `scripts/api-contract.sh` validates it and
//! runs schemathesis against a server with it.

use axum::Json;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{cron, events, health, jobs, queues, workers};

/// The OpenAPI document, generated from the handlers and types.
#[derive(OpenApi)]
#[openapi(
    info(title = "errands", description = "Background-job server: HTTP API. The worker socket is described in docs/protocol.md."),
    paths(
        jobs::enqueue, jobs::enqueue_batch, jobs::get, jobs::list, jobs::cancel, jobs::retry,
        jobs::delete, queues::list, queues::pause, queues::resume, events::events, workers::list,
        health::healthz, health::readyz, health::metrics,
        cron::list, cron::get, cron::put, cron::delete, cron::pause, cron::resume, cron::trigger
    ),
    // Every route needs the token when the server has one; /healthz opts out.
    security(("bearer" = [])),
    modifiers(&BearerAuth, &SharedResponses)
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Answers any route behind the token and the request guards may give (`api::auth`,
/// `api::guard`, the store), whatever its handler does.
const GUARDED: &[(&str, &str)] = &[
    ("401", "no token, or not the server's (when it has one)"),
    (
        "403",
        "a page of another origin, or a Host this server does not answer to",
    ),
    ("431", "too many request headers, or too many bytes of them"),
    (
        "503",
        "the store is unavailable for now (a restarting database, a full disk)",
    ),
];

/// Answers any route that reads a request body may give (`api::extract`, `api::guard`).
const WITH_BODY: &[(&str, &str)] = &[
    (
        "400",
        "the body is not JSON, or not what the route takes; the error names the field",
    ),
    ("408", "the body did not arrive within the body timeout"),
    ("413", "the body is over the size limit"),
    (
        "415",
        "the body is not labelled Content-Type: application/json",
    ),
];

struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                add_shared_responses(operation);
            }
        }
    }
}

/// Adds [`GUARDED`] to an operation behind the token (one that does not opt out with an
/// empty `security`), and [`WITH_BODY`] to one that takes a body. An answer the handler
/// documents itself keeps its own description.
fn add_shared_responses(operation: &mut Operation) {
    let guarded = operation.security.is_none();
    let with_body = operation.request_body.is_some();
    let shared = GUARDED
        .iter()
        .filter(|_| guarded)
        .chain(WITH_BODY.iter().filter(|_| with_body));
    for (status, description) in shared {
        operation
            .responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| RefOr::T(error_response(description)));
    }
}

/// A response whose body is the API's error shape, `{"error": {...}}`.
fn error_response(description: &str) -> Response {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .build()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::Value;

    use super::*;

    /// Every operation of the document as JSON, with its path and method.
    fn operations() -> Vec<(String, String, Value)> {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut operations = Vec::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                operations.push((path.clone(), method.clone(), operation.clone()));
            }
        }
        operations
    }

    fn parameters<'a>(operation: &'a Value, place: &str) -> HashSet<&'a str> {
        operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|parameter| parameter["in"] == place)
            .map(|parameter| parameter["name"].as_str().unwrap())
            .collect()
    }

    /// What openapi-spec-validator refused before: query parameters declared `in: path`,
    /// and operation ids used twice. scripts/api-contract.sh runs the validator itself.
    #[test]
    fn path_parameters_are_the_path_s_and_operation_ids_are_unique() {
        let mut ids = HashSet::new();
        for (path, method, operation) in operations() {
            let id = operation["operationId"].as_str().unwrap().to_owned();
            assert!(
                ids.insert(id.clone()),
                "{method} {path}: operationId {id} is repeated"
            );
            let in_path: HashSet<&str> = path
                .split('/')
                .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(parameters(&operation, "path"), in_path, "{method} {path}");
        }
    }

    #[test]
    fn the_job_list_and_the_event_stream_take_query_parameters() {
        let operations = operations();
        let find = |id: &str| {
            let (_, _, operation) = operations
                .iter()
                .find(|(_, _, operation)| operation["operationId"] == id)
                .unwrap();
            parameters(operation, "query")
        };
        let list: HashSet<&str> = ["queue", "state", "kind", "tag", "limit", "cursor"].into();
        assert_eq!(find("list_jobs"), list);
        assert_eq!(find("stream_events"), ["ids", "queue", "kind"].into());
    }

    #[test]
    fn routes_behind_the_token_document_its_refusal_and_healthz_needs_none() {
        for (path, method, operation) in operations() {
            let responses = operation["responses"].as_object().unwrap();
            if path == "/healthz" {
                assert_eq!(operation["security"], serde_json::json!([{}]));
                assert!(!responses.contains_key("401"));
                continue;
            }
            assert!(operation.get("security").is_none(), "{method} {path}");
            for status in ["401", "403", "503"] {
                let body = &responses[status]["content"]["application/json"]["schema"];
                assert_eq!(
                    body["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path}"
                );
            }
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path}: no {status}"
                    );
                }
            }
        }
    }

    /// The bounds the document gives an enqueue are the ones `EnqueueRequest::validate`
    /// checks (the schema attributes repeat them as literals).
    #[test]
    fn enqueue_bounds_are_the_validator_s() {
        use errands_core::backoff::MAX_SECONDS;
        use errands_core::enqueue::{MAX_NAME_LEN, MAX_UNIQUE_KEY_LEN};
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let fields = &document["components"]["schemas"]["EnqueueRequest"]["properties"];
        for name in ["kind", "queue"] {
            assert_eq!(fields[name]["minLength"], 1, "{name}");
            assert_eq!(fields[name]["maxLength"], MAX_NAME_LEN, "{name}");
        }
        assert_eq!(fields["unique_key"]["maxLength"], MAX_UNIQUE_KEY_LEN);
        for name in ["delay", "timeout", "unique_for", "retention"] {
            assert_eq!(
                fields[name]["maximum"].as_f64(),
                Some(MAX_SECONDS),
                "{name}"
            );
        }
        assert_eq!(fields["max_attempts"]["minimum"], 1);
        assert_eq!(fields["timeout"]["exclusiveMinimum"], 0.0);
    }
}
