//! W3C trace context across our edges: taken from incoming gRPC metadata (`traceparent`,
//! `tracestate`) and sent on to PortOne as HTTP headers.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Makes `span` a child of the caller's trace, when the caller sent one, and records the trace
/// id on it so log lines of the call carry it.
pub(crate) fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    let _ = span.set_parent(parent);
    let trace_id = {
        use opentelemetry::trace::TraceContextExt;
        span.context().span().span_context().trace_id()
    };
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// The trace id of the current span, when it is part of a trace (a caller's, or ours under
/// OpenTelemetry): for the access record.
pub(crate) fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let trace_id = tracing::Span::current()
        .context()
        .span()
        .span_context()
        .trace_id();
    (trace_id != opentelemetry::trace::TraceId::INVALID).then(|| trace_id.to_string())
}

/// `traceparent` (and `tracestate`) of the current span, for an outgoing HTTP request.
pub(crate) fn outgoing_headers() -> HashMap<String, String> {
    struct Headers(HashMap<String, String>);
    impl Injector for Headers {
        fn set(&mut self, key: &str, value: String) {
            self.0.insert(key.to_owned(), value);
        }
    }
    let context = tracing::Span::current().context();
    let mut headers = Headers(HashMap::new());
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut headers);
    });
    headers.0
}
