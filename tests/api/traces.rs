//! OpenTelemetry: the binary exports over OTLP to a collector the test runs (a tonic server with
//! the collector's TraceService); the RPC span continues the caller's trace and has PortOne and
//! database children; no span carries personal data.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use certification_service::{
    grpc::proto::{VerifyRequest, certification_service_client::CertificationServiceClient},
    sandbox::identities::ADULT,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    trace::v1::Span,
};
use tokio_stream::wrappers::TcpListenerStream;

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| format!("{:?}", kv.value))
}

#[tokio::test]
async fn the_rpc_span_continues_the_callers_trace_with_portone_and_database_children() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let receiver = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    let setup = crate::fleet::process_beside_fleet(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("LOG_FORMAT", "json"),
    ])
    .await;
    let service = &setup.service;
    service.wait_serving().await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut request = tonic::Request::new(VerifyRequest {
        account_id: "acct-traced".into(),
        ..crate::helpers::verify_request(ADULT)
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().unwrap(),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", service.address))
        .unwrap()
        .connect_lazy();
    let identity = CertificationServiceClient::new(channel)
        .verify(request)
        .await
        .unwrap()
        .into_inner()
        .identity
        .unwrap();

    // Spans leave in batches: wait for the RPC span and its children.
    let deadline = Instant::now() + Duration::from_secs(20);
    let ours = loop {
        let spans: Vec<Span> = collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .filter(|span| hex::encode(&span.trace_id) == trace_id)
            .cloned()
            .collect();
        let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
        if names.contains(&"portone.certification")
            && names.contains(&"db.record_and_bind")
            && names.iter().any(|name| name.ends_with("/Verify"))
        {
            break spans;
        }
        assert!(Instant::now() < deadline, "spans never arrived: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let rpc = ours
        .iter()
        .find(|span| span.name == "certification.v1.CertificationService/Verify")
        .unwrap();
    assert_eq!(
        hex::encode(&rpc.parent_span_id),
        caller_span,
        "the caller's span is the parent"
    );
    assert_eq!(
        attribute(rpc, "method").as_deref().map(|v| v.contains("Verify")),
        Some(true)
    );
    assert!(attribute(rpc, "rpc.grpc.status_code").is_some_and(|code| code.contains('0')));
    // Every other span of the call descends from the RPC span.
    let by_id = |id: &[u8]| ours.iter().find(|span| span.span_id == id);
    for span in ours.iter().filter(|span| span.span_id != rpc.span_id) {
        let mut cursor = span;
        while cursor.parent_span_id != rpc.span_id {
            cursor = by_id(&cursor.parent_span_id)
                .unwrap_or_else(|| panic!("{} does not descend from the RPC span", span.name));
        }
    }
    let portone = ours
        .iter()
        .find(|span| span.name == "portone.certification")
        .unwrap();
    assert!(attribute(portone, "http.request.method").is_some());

    let everything = format!("{ours:?}");
    for personal in [identity.name, identity.ci, identity.di, identity.phone.unwrap()] {
        assert!(!everything.contains(&personal), "personal data in a span");
    }
    // JSON log lines of the call carry the trace id.
    let logs = service.wait_for_log(trace_id).await;
    assert!(logs.contains(trace_id), "{logs}");
    receiver.abort();
}
