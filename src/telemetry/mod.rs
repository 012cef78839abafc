//! Logs, traces and metrics. Bound SQL values, HTTP bodies and headers are personal data or
//! credentials here, so the libraries that could print them are capped whatever RUST_LOG asks for,
//! and span fields are chosen by hand (`skip_all`), never whole arguments.

pub(crate) mod log_limit;
pub(crate) mod metrics;
pub(crate) mod tracing_context;

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, fmt, fmt::writer::BoxMakeWriter, prelude::*};

/// Appended after RUST_LOG: later directives for the same target win.
const CAPS: &[&str] = &[
    "sqlx=warn",
    "sea_orm=info",
    "h2=info",
    "hyper=info",
    "hyper_util=info",
    "reqwest=info",
    "tower=info",
    "tonic=info",
    "opentelemetry=warn",
    "opentelemetry_sdk=warn",
    "opentelemetry_otlp=warn",
];

/// Flushes buffered spans when dropped at the end of `main`.
pub struct TelemetryGuard(Option<SdkTracerProvider>);

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("certification-service: flushing traces failed: {error}");
        }
    }
}

/// Where log lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTo {
    /// The service's own output: its container's log.
    Stdout,
    /// For a command whose stdout is its answer (`audit export`'s JSON lines, say).
    Stderr,
}

impl LogTo {
    fn writer(self) -> BoxMakeWriter {
        match self {
            Self::Stdout => BoxMakeWriter::new(std::io::stdout),
            Self::Stderr => BoxMakeWriter::new(std::io::stderr),
        }
    }

    fn is_terminal(self) -> bool {
        match self {
            Self::Stdout => std::io::stdout().is_terminal(),
            Self::Stderr => std::io::stderr().is_terminal(),
        }
    }
}

/// Installs the global subscriber, writing `to`: human-readable lines, or JSON with
/// `LOG_FORMAT=json`; and, when OTEL_EXPORTER_OTLP_ENDPOINT (or its _TRACES_ variant) is set,
/// spans exported over OTLP/gRPC. Must run inside the tokio runtime (the exporter's channel
/// lives there).
pub fn init(to: LogTo) -> TelemetryGuard {
    let requested = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let directives = std::iter::once(requested.as_str())
        .chain(CAPS.iter().copied())
        .collect::<Vec<_>>()
        .join(",");
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = otlp_tracer_provider();
    let traces = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("certification-service")));
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter).with(traces);
    let installed = if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(to.writer()),
            )
            .try_init()
    } else {
        // Colour codes only for a person at a terminal: piped logs are read by programs.
        let ansi = to.is_terminal();
        registry
            .with(fmt::layer().with_ansi(ansi).with_writer(to.writer()))
            .try_init()
    };
    // A second init (tests) keeps the first subscriber.
    drop(installed);
    TelemetryGuard(provider)
}

fn otlp_tracer_provider() -> Option<SdkTracerProvider> {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()));
    if !configured {
        return None;
    }
    // The standard OTEL_* variables (endpoint, headers, timeout, batch settings) are read by
    // the SDK itself.
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_tonic().build() {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("certification-service: OTLP exporter not started: {error}");
            return None;
        }
    };
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("certification-service");
    }
    Some(
        SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_batch_exporter(exporter)
            .build(),
    )
}
