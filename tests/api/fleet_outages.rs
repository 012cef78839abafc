//! The shared token when something in the fleet fails: Redis killed mid-burst, never answering,
//! or down from the start, and a replica killed while it holds the token lock.

use std::time::{Duration, Instant};

use certification_service::{
    app::SERVICE_NAME,
    grpc::proto::certification_service_client::CertificationServiceClient,
    sandbox::{Endpoint, Fault, identities::ADULT},
};
use redis::AsyncCommands;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::{
    fleet::{assert_all_ok, start_service_process, token_key},
    helpers::{App, verify_request},
    processes::RedisServer,
};

#[tokio::test]
async fn redis_killed_mid_burst_costs_no_call_and_is_used_again_once_back() {
    let mut redis = RedisServer::start();
    let fleet = App::new().redis(&redis.url()).fleet(3).await;
    fleet.sandbox.set_latency(Duration::from_millis(150));

    let burst = fleet.verify_burst(150, ADULT);
    let kill = async {
        // The lock holder is inside getToken, the others are waiting on Redis.
        tokio::time::sleep(Duration::from_millis(50)).await;
        redis.kill();
    };
    let (results, ()) = tokio::join!(burst, kill);
    assert_all_ok(&results);
    let stats = fleet.sandbox.stats();
    // Without Redis each replica falls back on its own single flight: at most one each.
    assert!(stats.get_token_calls <= 3, "{stats:?}");
    assert!(
        fleet
            .replicas
            .iter()
            .any(|replica| replica.token_cache_degraded())
    );
    for replica in &fleet.replicas {
        assert_eq!(
            replica.health_of(SERVICE_NAME).await.unwrap(),
            ServingStatus::Serving
        );
    }

    redis.restart();
    let key = token_key(&fleet.replicas[0].settings.portone_v1.as_ref().unwrap().imp_key);
    let mut connection = redis.connection().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert_all_ok(&fleet.verify_burst(3, ADULT).await);
        let stored: Option<String> = connection.get(&key).await.unwrap();
        if stored.is_some()
            && fleet
                .replicas
                .iter()
                .all(|replica| !replica.token_cache_degraded())
        {
            break;
        }
        assert!(Instant::now() < deadline, "the token never came back to Redis");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(fleet.sandbox.stats().tokens_issued, 1);
}

#[tokio::test]
async fn a_replica_killed_holding_the_lock_delays_the_others_only_until_it_expires() {
    let redis = RedisServer::start();
    let fleet = App::new().redis(&redis.url()).fleet(1).await;
    let survivor = &fleet.replicas[0];
    let portone = &survivor.settings.portone_v1.as_ref().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut doomed = start_service_process(&fleet, &redis.url(), &data, &[("TOKEN_LOCK_TTL", "2s")]);
    doomed.wait_serving().await;

    // The doomed replica takes the lock, and its getToken never comes back.
    fleet
        .sandbox
        .inject(Endpoint::GetToken, Fault::Delay { millis: 60_000 }, 1);
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", doomed.address))
        .unwrap()
        .connect_lazy();
    let stuck = tokio::spawn(async move {
        let mut client = CertificationServiceClient::new(channel);
        let _ = client.verify(verify_request(ADULT)).await;
    });
    let lock_key = format!("{}:lock", token_key(&portone.imp_key));
    let mut connection = redis.connection().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !connection.exists::<_, bool>(&lock_key).await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "the doomed replica never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.kill();
    stuck.abort();
    let lock_left_ms: i64 = connection.pttl(&lock_key).await.unwrap();
    assert!(lock_left_ms > 0, "the lock has an expiry");

    let started = Instant::now();
    survivor.verify(ADULT).await.unwrap();
    // It honoured the dead replica's lock (no second getToken while it stood), then went on.
    assert!(
        started.elapsed() + Duration::from_millis(100) >= Duration::from_millis(lock_left_ms.unsigned_abs()),
        "the survivor did not wait for the lock: {:?} < {lock_left_ms} ms",
        started.elapsed()
    );
    assert_eq!(fleet.sandbox.stats().get_token_calls, 2);
}

#[tokio::test]
async fn a_redis_that_never_answers_costs_bounded_time_and_health_stays_serving() {
    // Accepts connections and never answers: the worst kind of slow.
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", blackhole.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = blackhole.accept().await {
            sockets.push(socket);
        }
    });
    let fleet = App::new().redis(&url).fleet(2).await;
    assert_all_ok(&fleet.verify_burst(20, ADULT).await);
    let stats = fleet.sandbox.stats();
    assert!(stats.get_token_calls <= 2, "{stats:?}");
    for replica in &fleet.replicas {
        assert!(replica.token_cache_degraded());
        assert_eq!(
            replica.health_of(SERVICE_NAME).await.unwrap(),
            ServingStatus::Serving
        );
    }
    held.abort();
}

#[tokio::test]
async fn a_redis_that_is_down_from_the_start_is_no_obstacle() {
    let url = format!("redis://127.0.0.1:{}", crate::processes::free_port());
    let fleet = App::new().redis(&url).fleet(1).await;
    assert_all_ok(&fleet.verify_burst(10, ADULT).await);
    assert_eq!(fleet.sandbox.stats().get_token_calls, 1);
    assert!(fleet.replicas[0].token_cache_degraded());
}

/// A lock key no holder of ours could have left (no expiry, or more time left than
/// TOKEN_LOCK_TTL) stopped every V1 look-up fleet-wide until the deadline, silently. It is broken,
/// with a warning that names neither the lock's value nor any secret, and look-ups go on.
#[tokio::test]
async fn a_stale_token_lock_in_redis_is_broken_with_a_warning_and_lookups_go_on() {
    let redis = RedisServer::start();
    let fleet = App::new().redis(&redis.url()).fleet(1).await;
    let replica = &fleet.replicas[0];
    let portone = replica.settings.portone_v1.as_ref().unwrap();
    let token = token_key(&portone.imp_key);
    let lock_key = format!("{token}:lock");
    let mut connection = redis.connection().await;

    // Without expiry, seen by a separate process whose log we read.
    let () = connection.set(&lock_key, "left-over-holder").await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let service = start_service_process(&fleet, &redis.url(), &data, &[]);
    service.wait_serving().await;
    let mut request = tonic::Request::new(verify_request(ADULT));
    request.set_timeout(Duration::from_secs(5));
    service.client().verify(request).await.unwrap();
    let logs = service.wait_for_log("broke a stale portone token lock").await;
    assert!(logs.contains("broke a stale portone token lock"), "{logs}");
    assert!(logs.contains("lock_left_ms=-1"), "{logs}");
    assert!(!logs.contains("left-over-holder"), "{logs}");
    assert!(!logs.contains(portone.imp_secret.expose()), "{logs}");
    assert_eq!(fleet.sandbox.stats().get_token_calls, 1);
    let left: Option<String> = connection.get(&lock_key).await.unwrap();
    assert_eq!(left, None, "the breaker released the lock it took");

    // An hour left: longer than any holder sets. A cold replica must not wait it out.
    let () = connection
        .set_ex(&lock_key, "left-over-holder", 3600)
        .await
        .unwrap();
    let () = connection.del(&token).await.unwrap();
    let cold = App::replica_of(replica).spawn().await;
    let started = Instant::now();
    cold.verify(ADULT).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?} on a stale lock",
        started.elapsed()
    );
    assert_eq!(fleet.sandbox.stats().get_token_calls, 2);
}

/// A lock another replica holds (within TOKEN_LOCK_TTL) is honoured; a call whose deadline
/// passes waiting on it is answered DEADLINE_EXCEEDED naming Redis, not PortOne, which was never
/// asked.
#[tokio::test]
async fn a_deadline_spent_waiting_on_the_token_lock_names_redis_not_portone() {
    let redis = RedisServer::start();
    let fleet = App::new().redis(&redis.url()).fleet(1).await;
    let replica = &fleet.replicas[0];
    let portone = replica.settings.portone_v1.as_ref().unwrap();
    let lock_key = format!("{}:lock", token_key(&portone.imp_key));
    // The database side warmed first (the access-record writer's connection, which a Verify's
    // check before PortOne waits on): the 500 ms below are spent on the lock, not on connecting.
    replica.unlink("acct-warm-up").await;
    let mut connection = redis.connection().await;
    let () = connection
        .pset_ex(&lock_key, "another-replica", 2_500)
        .await
        .unwrap();

    let mut request = tonic::Request::new(verify_request(ADULT));
    request.set_timeout(Duration::from_millis(500));
    let answer = replica.client.clone().verify(request).await;
    let status = crate::helpers::assert_status(answer, tonic::Code::DeadlineExceeded, "DEADLINE_EXCEEDED");
    assert!(status.message().contains("Redis"), "{status:?}");
    assert!(
        !status.message().contains("identity provider answered"),
        "{status:?}"
    );
    assert_eq!(fleet.sandbox.stats().get_token_calls, 0);
}
