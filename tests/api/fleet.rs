//! One PortOne token for the whole fleet: several replicas sharing one Redis (a private
//! `redis-server` per test, so a test may kill it) and one PortOne sandbox.

use std::time::{Duration, Instant};

use base64::{Engine, engine::general_purpose::STANDARD};
use certification_service::{
    grpc::proto::certification_service_client::CertificationServiceClient,
    sandbox::{Endpoint, Fault, identities::ADULT},
};
use redis::AsyncCommands;

use crate::{
    helpers::{App, Fleet, TEST_AUDIT_KEY, TEST_INDEX_KEY, test_encryption_keys, verify_request},
    processes::{RedisServer, ServiceProcess},
};

pub fn token_key(imp_key: &str) -> String {
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(imp_key.as_bytes()));
    format!("certification-service:portone-v1:token:{}", &hash[..32])
}

pub fn assert_all_ok(results: &[Result<(), tonic::Status>]) {
    let failures: Vec<_> = results
        .iter()
        .filter_map(|result| result.as_ref().err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} calls failed: {:?}",
        failures.len(),
        failures.first()
    );
}

/// Ten calls over the fleet: one getToken, the token in Redis, no replica degraded.
async fn assert_token_shared_through(redis: &RedisServer, fleet: &Fleet) {
    assert_all_ok(&fleet.verify_burst(10, ADULT).await);
    let key = token_key(&fleet.replicas[0].settings.portone_v1.as_ref().unwrap().imp_key);
    let stored: Option<String> = redis.connection().await.get(&key).await.unwrap();
    assert!(stored.is_some(), "the token is in Redis");
    assert_eq!(fleet.sandbox.stats().get_token_calls, 1);
    assert!(
        fleet
            .replicas
            .iter()
            .all(|replica| !replica.token_cache_degraded())
    );
}

/// `serve` as a separate process on the fleet's PortOne and `redis_url`, its own SQLite file.
pub fn start_service_process(
    fleet: &Fleet,
    redis_url: &str,
    data: &tempfile::TempDir,
    extra: &[(&str, &str)],
) -> ServiceProcess {
    let portone = &fleet.replicas[0].settings.portone_v1.as_ref().unwrap();
    let database_url = format!("sqlite://{}/service.db?mode=rwc", data.path().display());
    let index_key = STANDARD.encode(TEST_INDEX_KEY);
    let encryption_keys = test_encryption_keys();
    let audit_key = STANDARD.encode(TEST_AUDIT_KEY);
    let mut env = vec![
        ("PORTONE_BASE_URL", portone.base_url.as_str()),
        ("PORTONE_IMP_KEY", portone.imp_key.as_str()),
        ("PORTONE_IMP_SECRET", portone.imp_secret.expose()),
        ("CI_INDEX_KEY", index_key.as_str()),
        ("CI_ENCRYPTION_KEYS", encryption_keys.as_str()),
        ("AUDIT_KEY", audit_key.as_str()),
        ("DATABASE_URL", database_url.as_str()),
        ("REDIS_URL", redis_url),
    ];
    env.extend_from_slice(extra);
    ServiceProcess::start(&env)
}

/// The binary as a process beside a one-replica fleet: its own Redis, sandbox and SQLite file.
/// Keep the whole tuple alive for the test's length.
pub struct ProcessBesideFleet {
    pub service: ServiceProcess,
    _fleet: Fleet,
    _redis: RedisServer,
    _data: tempfile::TempDir,
}

pub async fn process_beside_fleet(extra: &[(&str, &str)]) -> ProcessBesideFleet {
    let redis = RedisServer::start();
    let fleet = App::new().redis(&redis.url()).fleet(1).await;
    let data = tempfile::tempdir().unwrap();
    let service = start_service_process(&fleet, &redis.url(), &data, extra);
    ProcessBesideFleet {
        service,
        _fleet: fleet,
        _redis: redis,
        _data: data,
    }
}

#[tokio::test]
async fn a_cold_burst_over_three_replicas_makes_one_get_token_call() {
    let redis = RedisServer::start();
    let fleet = App::new().redis(&redis.url()).fleet(3).await;
    // getToken takes a while, as over the internet: the other replicas must wait for it.
    fleet.sandbox.set_latency(Duration::from_millis(100));

    assert_all_ok(&fleet.verify_burst(150, ADULT).await);

    let stats = fleet.sandbox.stats();
    assert_eq!(stats.get_token_calls, 1, "{stats:?}");
    assert_eq!(stats.certification_lookups, 150, "{stats:?}");
    let fetches: u64 = fleet
        .replicas
        .iter()
        .map(|replica| replica.token_stats().fetches)
        .sum();
    assert_eq!(fetches, 1);
}

#[tokio::test]
async fn a_warm_replica_answers_from_memory_without_a_redis_round_trip() {
    let redis = RedisServer::start();
    let fleet = App::new().redis(&redis.url()).fleet(1).await;
    let replica = &fleet.replicas[0];
    replica.verify(ADULT).await.unwrap();
    let before = replica.token_stats();
    for _ in 0..20 {
        replica.verify(ADULT).await.unwrap();
    }
    let after = replica.token_stats();
    assert_eq!(after.redis_round_trips, before.redis_round_trips, "{after:?}");
    assert_eq!(after.local_hits, before.local_hits + 20, "{after:?}");
}

#[tokio::test]
async fn a_token_expired_early_is_replaced_once_for_the_whole_fleet() {
    let redis = RedisServer::start();
    let fleet = App::new().redis(&redis.url()).fleet(3).await;
    assert_all_ok(&fleet.verify_burst(3, ADULT).await);
    assert_eq!(fleet.sandbox.stats().get_token_calls, 1);

    fleet.sandbox.expire_tokens();
    fleet.sandbox.set_latency(Duration::from_millis(50));
    assert_all_ok(&fleet.verify_burst(90, ADULT).await);

    let stats = fleet.sandbox.stats();
    assert_eq!(stats.tokens_issued, 2, "{stats:?}");
    assert_eq!(stats.get_token_calls, 2, "{stats:?}");
    assert!(stats.unauthorized >= 1, "{stats:?}");
}

#[tokio::test]
async fn a_token_near_expiry_is_refreshed_in_the_background_by_one_replica() {
    let redis = RedisServer::start();
    // 62 s tokens: usable for 32 s (30 s margin), refreshed once less than 25 s of that is
    // left, i.e. from 7 s on, when PortOne (here the sandbox) extends rather than repeats it.
    let fleet = App::new()
        .sandbox(|sandbox| sandbox.token_lifetime = Duration::from_secs(62))
        .redis(&redis.url())
        .fleet(3)
        .await;
    let key = token_key(&fleet.replicas[0].settings.portone_v1.as_ref().unwrap().imp_key);
    let mut connection = redis.connection().await;
    assert_all_ok(&fleet.verify_burst(3, ADULT).await);
    tokio::time::sleep(Duration::from_secs(8)).await;

    // The refresh's getToken takes 1.5 s (within the 3 s lock); callers meanwhile use the current token.
    fleet
        .sandbox
        .inject(Endpoint::GetToken, Fault::Delay { millis: 1500 }, 1);
    assert_all_ok(&fleet.verify_burst(30, ADULT).await);
    let remaining_ms: i64 = connection.pttl(&key).await.unwrap();
    assert!(
        (0..25_000).contains(&remaining_ms),
        "callers waited for the refresh: {remaining_ms} ms left"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let remaining_ms: i64 = connection.pttl(&key).await.unwrap();
        if remaining_ms > 60_000 {
            break;
        }
        assert!(Instant::now() < deadline, "the token was never extended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_all_ok(&fleet.verify_burst(30, ADULT).await);
    let stats = fleet.sandbox.stats();
    assert_eq!(stats.get_token_calls, 2, "one refresh for the fleet: {stats:?}");
    assert_eq!(stats.tokens_issued, 1, "extended, not replaced: {stats:?}");
    assert_eq!(stats.unauthorized, 0, "{stats:?}");
}

#[tokio::test]
async fn a_password_in_the_redis_url_is_used_and_the_token_is_shared() {
    let redis = RedisServer::start_with_password(Some("s3cret-redis-pass"));
    let fleet = App::new().redis(&redis.url()).fleet(2).await;
    assert_token_shared_through(&redis, &fleet).await;
}

#[tokio::test]
async fn a_late_401_for_an_old_token_never_deletes_the_fresh_one() {
    let redis = RedisServer::start();
    let fleet = App::new().redis(&redis.url()).fleet(2).await;
    let (first, second) = (&fleet.replicas[0], &fleet.replicas[1]);
    first.verify(ADULT).await.unwrap();
    second.verify(ADULT).await.unwrap();

    fleet.sandbox.expire_tokens();
    // The first replica meets the 401 and stores a fresh token in Redis.
    first.verify(ADULT).await.unwrap();
    let key = token_key(&first.settings.portone_v1.as_ref().unwrap().imp_key);
    let mut connection = redis.connection().await;
    let fresh: String = connection.get(&key).await.unwrap();

    // The second still holds the old token: its 401 must leave the fresh one in place.
    second.verify(ADULT).await.unwrap();
    let stored: Option<String> = connection.get(&key).await.unwrap();
    assert_eq!(stored.as_deref(), Some(fresh.as_str()));
    let stats = fleet.sandbox.stats();
    assert_eq!(stats.get_token_calls, 2, "{stats:?}");
    assert_eq!(stats.unauthorized, 2, "{stats:?}");
}

#[tokio::test]
async fn rediss_with_a_private_ca_and_a_password_shares_the_token() {
    let redis = RedisServer::start_tls("tls-redis-pass");
    let ca_file = redis.tls().unwrap().ca_file();
    let fleet = App::new()
        .redis(&redis.url())
        .adjust(|settings| {
            if let Some(redis) = settings.redis.as_mut() {
                redis.ca_file = Some(ca_file.clone());
            }
        })
        .fleet(2)
        .await;
    assert_token_shared_through(&redis, &fleet).await;
}

#[tokio::test]
async fn no_token_secret_or_personal_data_reaches_the_logs_even_at_debug_level() {
    let mut redis = RedisServer::start_with_password(Some("redis-pass-never-logged"));
    let fleet = App::new().redis(&redis.url()).fleet(1).await;
    let portone = &fleet.replicas[0].settings.portone_v1.as_ref().unwrap();
    let data = tempfile::tempdir().unwrap();
    let service = start_service_process(&fleet, &redis.url(), &data, &[("RUST_LOG", "debug")]);
    service.wait_serving().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", service.address))
        .unwrap()
        .connect_lazy();
    let mut client = CertificationServiceClient::new(channel);
    let key = token_key(&portone.imp_key);
    let mut connection = redis.connection().await;
    let mut tokens = Vec::new();
    // A token fetched, one replaced after a 401, and an outage of Redis: every path that
    // handles the token.
    let bind = certification_service::grpc::proto::VerifyRequest {
        account_id: "acct-logs".into(),
        ..verify_request(ADULT)
    };
    let identity = client.verify(bind).await.unwrap().into_inner().identity.unwrap();
    tokens.push(connection.get::<_, String>(&key).await.unwrap());
    fleet.sandbox.expire_tokens();
    client.verify(verify_request(ADULT)).await.unwrap();
    tokens.push(connection.get::<_, String>(&key).await.unwrap());
    redis.kill();
    fleet.sandbox.expire_tokens();
    client.verify(verify_request(ADULT)).await.unwrap();

    let logs = service.wait_for_log("redis unavailable").await;
    assert!(logs.contains("redis unavailable"), "the outage is logged: {logs}");
    assert_ne!(tokens[0], tokens[1]);
    for token in &tokens {
        assert!(!logs.contains(token.as_str()), "a token in the logs");
    }
    assert!(
        !logs.contains(portone.imp_secret.expose()),
        "the imp_secret in the logs"
    );
    assert!(
        !logs.contains("redis-pass-never-logged"),
        "the Redis password in the logs"
    );
    let personal = [identity.name, identity.ci, identity.di, identity.phone.unwrap()];
    for value in personal {
        assert!(!logs.contains(&value), "personal data in the logs at debug level");
    }
}
