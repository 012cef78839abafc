//! MAX_IN_FLIGHT: past it, calls are refused at once with RESOURCE_EXHAUSTED instead of queueing,
//! and the calls already admitted finish undisturbed.

use std::time::{Duration, Instant};

use certification_service::{app::SERVICE_NAME, sandbox::identities::ADULT};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

use crate::helpers::{App, assert_status};

#[tokio::test]
async fn calls_past_max_in_flight_are_refused_at_once_while_admitted_ones_finish() {
    let app = App::new()
        .adjust(|settings| settings.server.max_in_flight = 4)
        .spawn()
        .await;
    app.verify(ADULT).await.unwrap();
    let lookups_before = app.sandbox.stats().certification_lookups;
    app.sandbox.set_latency(Duration::from_millis(400));

    let calls = (0..20).map(|_| async {
        let answer = app.verify(ADULT).await;
        (answer, Instant::now())
    });
    let health = async {
        // Health is not a CertificationService call: it answers while the limit is reached.
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.health_of(SERVICE_NAME).await.unwrap()
    };
    let (answers, health) = tokio::join!(futures::future::join_all(calls), health);
    assert_eq!(health, ServingStatus::Serving);

    let admitted: Vec<Instant> = answers
        .iter()
        .filter_map(|(answer, at)| answer.is_ok().then_some(*at))
        .collect();
    let mut refused_at = Vec::new();
    for (answer, at) in answers {
        if let Err(status) = answer {
            let status = assert_status(Err::<(), _>(status), Code::ResourceExhausted, "OVERLOADED");
            let details = status.get_error_details();
            assert_eq!(details.error_info().unwrap().metadata["max_in_flight"], "4");
            refused_at.push(at);
        }
    }
    assert_eq!(admitted.len(), 4, "exactly MAX_IN_FLIGHT calls admitted");
    assert_eq!(refused_at.len(), 16);
    // Refused at once: every refusal was answered before any admitted call could finish.
    assert!(refused_at.iter().max().unwrap() < admitted.iter().min().unwrap());
    assert_eq!(
        app.sandbox.stats().certification_lookups,
        lookups_before + 4,
        "refused calls never reach PortOne"
    );

    // The places come back as the admitted calls finish.
    app.sandbox.set_latency(Duration::ZERO);
    for _ in 0..8 {
        app.verify(ADULT).await.unwrap();
    }
}

#[tokio::test]
async fn a_cancelled_call_gives_its_place_back() {
    let app = App::new()
        .adjust(|settings| settings.server.max_in_flight = 1)
        .spawn()
        .await;
    app.verify(ADULT).await.unwrap();
    app.sandbox.set_latency(Duration::from_millis(300));
    let mut request = tonic::Request::new(crate::helpers::verify_request(ADULT));
    request.set_timeout(Duration::from_millis(100));
    let status = app.client.clone().verify(request).await.unwrap_err();
    // The server answers DEADLINE_EXCEEDED just before the caller's deadline; on a loaded machine
    // the caller's own timer may fire first (CANCELLED). Either way the call ended early, and
    // what is tested is that its place came back.
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    app.sandbox.set_latency(Duration::ZERO);
    app.verify(ADULT).await.unwrap();
}

/// A refusal answered while the client still sends its request reads the request first: a
/// client that is still sending gets its refusal, never a reset stream (UNKNOWN or CANCELLED).
#[tokio::test]
async fn calls_refused_while_their_requests_arrive_get_the_refusal_not_a_reset() {
    let app = App::new()
        .adjust(|settings| settings.server.max_in_flight = 1)
        .spawn()
        .await;
    app.sandbox.set_latency(Duration::from_millis(1500));
    let holder = app.verify(ADULT);
    let refused = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Requests near the size limit take several frames to arrive.
        let calls = (0..200).map(|_| {
            let mut client = app.client.clone();
            let request = certification_service::grpc::proto::VerifyRequest {
                imp_uid: ADULT.to_owned(),
                account_id: "a".repeat(60_000),
                ..Default::default()
            };
            async move { client.verify(request).await.map(drop) }
        });
        futures::future::join_all(calls).await
    };
    let (_, refused) = tokio::join!(holder, refused);
    for answer in refused {
        assert_status(answer, Code::ResourceExhausted, "OVERLOADED");
    }
}
