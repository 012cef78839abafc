//! The cache against a real `redis-server` of the test's own.

use std::time::Duration;

use certification_testkit::RedisServer;
use redis::AsyncCommands as _;

use super::{AccessToken, SharedToken, TokenCache};

#[tokio::test]
async fn a_refused_token_read_back_from_redis_is_a_miss_until_portone_issues_it_again() {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let connection = redis::aio::ConnectionManager::new(client.clone()).await.unwrap();
    let cache = TokenCache::redis(connection, "imp_key", "imp_secret", Duration::from_secs(2));
    let key = cache.redis_key().unwrap().to_owned();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();

    let refused = AccessToken::new("token-portone-refused".into());
    cache.put(&refused, Duration::from_secs(60)).await;
    let sealed: String = redis.get(&key).await.unwrap();
    cache.invalidate(&refused).await;
    assert!(cache.local().is_none());
    // What another call read from Redis just before the refusal, written back after it (a
    // copy in flight, another replica's write-back): it must not serve the retry.
    let () = redis.set_ex(&key, &sealed, 60).await.unwrap();
    assert!(matches!(cache.shared().await, SharedToken::Missing));
    assert!(cache.local().is_none(), "the refused token came back into memory");

    // A token PortOne issues is used, even if PortOne hands out the refused one again.
    let fresh = AccessToken::new("token-fresh".into());
    cache.put(&fresh, Duration::from_secs(60)).await;
    assert_eq!(cache.local().map(|usable| usable.token), Some(fresh));
    cache.put(&refused, Duration::from_secs(60)).await;
    assert_eq!(cache.local().map(|usable| usable.token), Some(refused.clone()));
    assert!(matches!(cache.shared().await, SharedToken::Found(usable) if usable.token == refused));
}
