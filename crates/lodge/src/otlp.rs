//! `[otlp] endpoint`: Lodge's `session` and `request` spans (with their session, server,
//! method and principal) exported to an OpenTelemetry collector over OTLP/HTTP.
//!
//! The batch processor runs on its own thread and drops spans when its queue is full
//! (2048), so a slow or absent collector costs memory only up to that bound and never
//! blocks a request.

use lodge::config::OtlpConfig;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use std::time::Duration;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// How long one export may take before it is given up (the batch is then dropped).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Exports spans until [`Exporter::shutdown`].
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Builds the exporter and the tracing layer that feeds it. Call before the async
    /// runtime starts: the blocking HTTP client brings a runtime of its own.
    pub fn start<S>(config: &OtlpConfig) -> anyhow::Result<(Exporter, impl Layer<S>)>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(config.traces_url.as_str())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| anyhow::anyhow!("[otlp] endpoint {}: {e}", config.traces_url))?;
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(config.service_name.clone())
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("lodge");
        lodge_runtime::trace::export_with(Box::new(TraceContext));
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
        Ok((Exporter { provider }, layer))
    }

    /// Sends the spans still queued, then stops the exporter's thread.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("lodge: OTLP export did not finish: {e}");
        }
    }
}

/// Joins Lodge's spans to its clients' traces (W3C Trace Context).
struct TraceContext;

impl lodge_runtime::trace::SpanExport for TraceContext {
    fn adopt(&self, span: &tracing::Span, traceparent: &str) {
        let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        if let Err(e) = span.set_parent(parent) {
            tracing::debug!(error = %e, "the request's span keeps its own trace");
        }
    }

    fn traceparent(&self, span: &tracing::Span) -> Option<String> {
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
        carrier.remove("traceparent")
    }
}
