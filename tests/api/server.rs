//! The server around the service: health, reflection, readiness.

use certification_service::{
    app::SERVICE_NAME, sandbox::identities::ADULT, secret::Secret, store::StoreSettings,
};
use tonic::{Code, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_reflection::pb::{v1, v1alpha};

use crate::helpers::{App, assert_status, spawn_app};

#[tokio::test]
async fn health_reports_serving_once_the_database_answers() {
    let app = spawn_app().await;
    assert_eq!(app.health_of("").await.unwrap(), ServingStatus::Serving);
    assert_eq!(app.health_of(SERVICE_NAME).await.unwrap(), ServingStatus::Serving);
    // And it stops cleanly when told to.
    app.stop().await;
}

#[tokio::test]
async fn without_a_database_health_is_not_serving_and_calls_are_unavailable_not_ready() {
    let app = App::new()
        .adjust(|settings| {
            // Nothing listens on port 1.
            settings.store = StoreSettings {
                database_url: Secret::new("postgres://root@127.0.0.1:1/test"),
                max_connections: 2,
                acquire_timeout: std::time::Duration::from_millis(300),
                ..settings.store.clone()
            };
        })
        .unready()
        .spawn()
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        app.health_of(SERVICE_NAME).await.unwrap(),
        ServingStatus::NotServing
    );
    assert_eq!(app.health_of("").await.unwrap(), ServingStatus::NotServing);
    // Refused before reaching the store: the schema may not even exist yet.
    assert_status(app.verify(ADULT).await, Code::Unavailable, "NOT_READY");
    assert_eq!(app.sandbox.stats().get_token_calls, 0, "nothing reached PortOne");
}

/// ListServices over one reflection version: v1 and v1alpha share their shape, not their types.
macro_rules! listed_services {
    ($version:ident, $channel:expr) => {{
        use $version::{
            server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
            server_reflection_response::MessageResponse,
        };
        let request = $version::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = ServerReflectionClient::new($channel)
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        match responses
            .message()
            .await
            .unwrap()
            .unwrap()
            .message_response
            .unwrap()
        {
            MessageResponse::ListServicesResponse(list) => list
                .service
                .into_iter()
                .map(|service| service.name)
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        }
    }};
}

#[tokio::test]
async fn reflection_lists_the_services_over_v1_and_v1alpha() {
    let app = spawn_app().await;
    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for services in [
        listed_services!(v1, channel.clone()),
        listed_services!(v1alpha, channel),
    ] {
        assert!(services.contains(&SERVICE_NAME.to_owned()), "{services:?}");
        assert!(
            services.contains(&"grpc.health.v1.Health".to_owned()),
            "{services:?}"
        );
    }
}

#[tokio::test]
async fn reflection_lists_the_sandbox_service_only_where_it_is_served() {
    const SANDBOX: &str = certification_service::sandbox::grpc::SERVICE;
    let with_sandbox = spawn_app().await;
    let without_sandbox = App::new().without_sandbox_service().spawn().await;
    for (app, served) in [(&with_sandbox, true), (&without_sandbox, false)] {
        let channel = Channel::from_shared(format!("http://{}", app.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        for services in [
            listed_services!(v1, channel.clone()),
            listed_services!(v1alpha, channel),
        ] {
            assert_eq!(services.contains(&SANDBOX.to_owned()), served, "{services:?}");
            assert!(services.contains(&SERVICE_NAME.to_owned()), "{services:?}");
        }
    }
    // And where it is not listed, it is not served either.
    let refused = without_sandbox
        .sandbox_client()
        .certify(certification_service::sandbox::grpc::proto::CertifyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unimplemented);
}

#[tokio::test]
async fn reflection_carries_the_protos_comments_for_describe() {
    use prost::Message;
    let descriptors =
        prost_types::FileDescriptorSet::decode(certification_service::grpc::proto::FILE_DESCRIPTOR_SET)
            .unwrap();
    let file = descriptors
        .file
        .iter()
        .find(|file| file.package() == "certification.v1")
        .unwrap();
    let comments: String = file
        .source_code_info
        .as_ref()
        .unwrap()
        .location
        .iter()
        .map(|location| location.leading_comments())
        .collect();
    assert!(comments.contains("PortOne V1's certification id"), "{comments}");
    assert!(
        descriptors
            .file
            .iter()
            .any(|file| file.name() == "google/protobuf/timestamp.proto")
    );
}

#[tokio::test]
async fn reflection_switched_off_is_unimplemented_while_calls_and_health_work() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest,
    };
    let app = App::new()
        .adjust(|settings| settings.server.grpc_reflection = false)
        .spawn()
        .await;
    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let refused = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([request]))
        .await;
    let code = match refused {
        Err(status) => status.code(),
        Ok(response) => response.into_inner().message().await.unwrap_err().code(),
    };
    assert_eq!(code, Code::Unimplemented);
    app.verify(ADULT).await.unwrap();
}

#[tokio::test]
async fn concurrent_migrations_of_a_fresh_postgres_database_all_succeed() {
    // PostgreSQL's advisory lock is what is tested; SQLite serialises writers itself.
    let Some((admin_url, _server)) =
        crate::helpers::postgres_for("concurrent_migrations_of_a_fresh_postgres_database_all_succeed")
    else {
        return;
    };
    for _ in 0..3 {
        let database = crate::helpers::TestDatabase::create(&admin_url).await;
        let mut stores = Vec::new();
        for _ in 0..4 {
            let settings = StoreSettings {
                database_url: Secret::new(database.url()),
                max_connections: 2,
                acquire_timeout: std::time::Duration::from_secs(10),
                statement_timeout: std::time::Duration::from_secs(10),
                lock_timeout: std::time::Duration::from_secs(3),
                migrate_on_start: true,
                readiness_interval: std::time::Duration::from_secs(5),
            };
            stores.push(
                certification_service::store::Store::connect(&settings)
                    .await
                    .unwrap(),
            );
        }
        // Replicas starting together: every one of them migrates, none fails.
        let results = futures::future::join_all(stores.iter().map(|store| store.migrate())).await;
        for result in results {
            result.unwrap();
        }
        for store in stores {
            store.close().await;
        }
    }
}
