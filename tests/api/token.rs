//! The PortOne access token: fetched once, cached (in process or in Redis), renewed on 401.

use certification_service::sandbox::identities::{ADULT, ADULT_SECOND_CERTIFICATION};
use std::time::Duration;

use redis::AsyncCommands;

use crate::helpers::{App, redis_url, spawn_app};

#[tokio::test]
async fn concurrent_cold_verifies_make_one_get_token_call() {
    let app = spawn_app().await;
    let calls = (0..30).map(|index| {
        let app = &app;
        async move {
            app.verify(if index % 2 == 0 {
                ADULT
            } else {
                ADULT_SECOND_CERTIFICATION
            })
            .await
        }
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    let stats = app.sandbox.stats();
    assert_eq!(stats.get_token_calls, 1, "{stats:?}");
    assert_eq!(stats.certification_lookups, 30);
}

#[tokio::test]
async fn a_token_expired_early_is_replaced_without_the_caller_noticing() {
    let app = spawn_app().await;
    app.verify(ADULT).await.unwrap();
    app.sandbox.expire_tokens();
    app.verify(ADULT).await.unwrap();
    app.verify(ADULT).await.unwrap();
    let stats = app.sandbox.stats();
    assert_eq!(stats.unauthorized, 1, "{stats:?}");
    assert_eq!(stats.tokens_issued, 2, "{stats:?}");
    assert_eq!(stats.get_token_calls, 2, "{stats:?}");
}

#[tokio::test]
async fn token_lifetime_is_counted_on_portones_clock_not_ours() {
    // The skewed sandbox also stamps certified_at an hour back: widen the freshness window.
    let app = App::new()
        .adjust(|settings| settings.policy.max_certification_age = Duration::from_secs(3 * 3600))
        .spawn()
        .await;
    // PortOne's clock an hour behind ours: expired_at is in our past, but the token has 30
    // minutes to live. Trusting our own clock would fetch a token for every request.
    app.sandbox.set_clock_skew(-3600);
    app.verify(ADULT).await.unwrap();
    app.verify(ADULT).await.unwrap();
    app.verify(ADULT).await.unwrap();
    assert_eq!(app.sandbox.stats().get_token_calls, 1);
}

#[tokio::test]
async fn the_token_is_shared_through_redis_under_a_key_without_secrets() {
    // The run's Redis, or one of this test's own: it runs on every leg.
    let private;
    let url = match redis_url() {
        Some(url) => url,
        None => {
            private = crate::processes::RedisServer::start();
            private.url()
        }
    };
    let fleet = App::new().redis(&url).fleet(2).await;
    let (app, replica) = (&fleet.replicas[0], &fleet.replicas[1]);
    app.verify(ADULT).await.unwrap();
    let key = format!(
        "certification-service:portone-v1:token:{}",
        &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            app.settings.portone_v1.as_ref().unwrap().imp_key.as_bytes()
        ))[..32]
    );
    let mut redis = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let token: Option<String> = redis.get(&key).await.unwrap();
    let ttl: i64 = redis.ttl(&key).await.unwrap();
    // Stored sealed (`s1.` + base64 of nonce, ciphertext and tag), never as the token itself.
    assert!(
        token.as_deref().is_some_and(|stored| stored.starts_with("s1.")),
        "the token is stored sealed: {token:?}"
    );
    assert!(
        (1800 - 60..=1800 - 30).contains(&ttl),
        "30 minutes less the 30 s margin, got {ttl}"
    );
    assert!(!key.contains(&app.settings.portone_v1.as_ref().unwrap().imp_key));

    // A second replica sharing Redis and the sandbox takes the token from Redis.
    replica.verify(ADULT_SECOND_CERTIFICATION).await.unwrap();
    assert_eq!(fleet.sandbox.stats().get_token_calls, 1);

    // A 401 clears the shared token only while it is still the one rejected.
    fleet.sandbox.expire_tokens();
    replica.verify(ADULT).await.unwrap();
    let fresh: Option<String> = redis.get(&key).await.unwrap();
    assert!(
        fresh.is_some() && fresh != token,
        "the fresh token replaced the rejected one"
    );
}
