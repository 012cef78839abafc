//! Bad input is refused with INVALID_ARGUMENT and a field violation, and never reaches PortOne.

use certification_service::{grpc::proto::VerifyRequest, sandbox::identities::ADULT};
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{assert_status, spawn_app, verify_request};

#[tokio::test]
async fn odd_imp_uids_are_invalid_arguments_that_never_reach_portone() {
    let app = spawn_app().await;
    let ten_kilobytes = format!("imp_{}", "1".repeat(10 * 1024));
    let odd = [
        "",
        "imp_",
        "imp_1234567",
        "123456789012",
        "IMP_123456789012",
        "imp_12345678901a",
        "imp_１２３４５６７８９０１２",
        "imp_١٢٣٤٥٦٧٨٩٠١٢",
        "imp_123456789012\0",
        "imp_123456789012/../../users/getToken",
        "imp_..",
        "imp_123456789012%2F",
        "imp_123456789012%2f..%2fusers",
        "imp_123456789012?token=x",
        "imp_123456789012#x",
        " imp_123456789012",
        "imp_123456789012 ",
        ten_kilobytes.as_str(),
    ];
    for imp_uid in odd {
        let status = assert_status(
            app.verify(imp_uid).await,
            Code::InvalidArgument,
            "INVALID_IMP_UID",
        );
        let details = status.get_error_details();
        assert_eq!(
            details.bad_request().unwrap().field_violations[0].field,
            "imp_uid",
            "{imp_uid:?}"
        );
    }
    assert!(
        app.sandbox.stats().requests.is_empty(),
        "{:?}",
        app.sandbox.stats().requests
    );
}

#[tokio::test]
async fn odd_account_ids_merchant_uids_and_ages_are_invalid_arguments() {
    let app = spawn_app().await;
    let long = "a".repeat(129);
    for account_id in [
        long.as_str(),
        "a b",
        "../acct",
        "acct%2F1",
        "계정",
        "acct\0",
        "acct\n",
    ] {
        let request = VerifyRequest {
            account_id: account_id.into(),
            ..verify_request(ADULT)
        };
        assert_status(
            app.client.clone().verify(request).await,
            Code::InvalidArgument,
            "INVALID_ACCOUNT_ID",
        );
    }
    let request = VerifyRequest {
        merchant_uid: "m".repeat(300),
        ..verify_request(ADULT)
    };
    assert_status(
        app.client.clone().verify(request).await,
        Code::InvalidArgument,
        "INVALID_MERCHANT_UID",
    );
    let request = VerifyRequest {
        min_age: Some(200),
        ..verify_request(ADULT)
    };
    assert_status(
        app.client.clone().verify(request).await,
        Code::InvalidArgument,
        "INVALID_MIN_AGE",
    );
    assert!(app.sandbox.stats().requests.is_empty());
}

#[tokio::test]
async fn an_oversized_request_is_refused_by_the_message_size_limit() {
    let app = spawn_app().await;
    let request = VerifyRequest {
        account_id: "a".repeat(128 * 1024),
        ..verify_request(ADULT)
    };
    let status = app.client.clone().verify(request).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(app.sandbox.stats().requests.is_empty());
}
