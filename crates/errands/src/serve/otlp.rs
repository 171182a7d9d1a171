//! Exporting the server's spans over OTLP (HTTP, protobuf) when `--otlp-endpoint` is set.

use anyhow::Context;
use opentelemetry::global;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// The service name spans are reported under unless `OTEL_SERVICE_NAME` says otherwise.
const SERVICE_NAME: &str = "errands";

/// The tracer provider spans are exported through; shut it down to send what is buffered.
pub struct Exporting(SdkTracerProvider);

/// The OTLP traces URL for `endpoint`: a collector's base URL (`http://collector:4318`, as in
/// `OTEL_EXPORTER_OTLP_ENDPOINT`) gets `/v1/traces`; a URL that names that path is kept.
pub fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

/// Installs a global tracer provider that batches spans to `endpoint`. The exporter's
/// blocking HTTP client is built off the async runtime, which it must not run inside.
pub async fn install(endpoint: &str) -> anyhow::Result<Exporting> {
    let url = traces_url(endpoint);
    let provider = tokio::task::spawn_blocking(move || -> anyhow::Result<SdkTracerProvider> {
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(url.clone())
            .build()
            .with_context(|| format!("setting up the OTLP exporter for {url}"))?;
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(SERVICE_NAME);
        }
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build())
    })
    .await
    .context("setting up the OTLP exporter")??;
    global::set_tracer_provider(provider.clone());
    Ok(Exporting(provider))
}

impl Exporting {
    /// Sends the spans still buffered and stops the exporter.
    pub async fn shutdown(self) {
        let provider = self.0;
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = done {
            tracing::warn!(%error, "OTLP exporter did not shut down cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_get_the_traces_path() {
        assert_eq!(
            traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example/v1/traces"),
            "https://otel.example/v1/traces"
        );
    }
}
