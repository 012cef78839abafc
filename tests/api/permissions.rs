//! Least privilege (issue 29): purposes are permissions and each purpose answers only what it
//! exists for, the sandbox's Certify is a permission of its own, CALLER_PERMISSIONS must be said
//! when callers authenticate, the documented permissions let a signup complete, and a caller
//! rotating its token keeps its sessions.

use std::collections::BTreeSet;

use certification_service::{
    access::{CallerPermissions, CallerTokens},
    app::Application,
    config::Settings,
    grpc::proto::{
        BeginVerificationRequest, CheckDuplicateRequest, Provider, Purpose, UnlinkRequest, VerifyRequest,
        VerifyResponse, check_duplicate_request::Key,
    },
    sandbox::{grpc::proto::Person, identities::ci_for},
};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::{
    certify::{insert_certified, v1_request},
    helpers::{App, TestApp, as_caller, assert_status, test_settings},
    sessions::sessions_on,
};

const AGEGATE: &str = "agegate-token-0123456789abcdef";
const SIGNUP: &str = "signup-token-0123456789abcdef";
const LOOKUP: &str = "lookup-token-0123456789abcdef";
const TESTER: &str = "tester-token-0123456789abcdef";

/// Sessions on, the callers of these tests, and `permissions`.
fn callers(permissions: &str) -> impl FnOnce(&mut Settings) + '_ {
    move |settings| {
        sessions_on(settings);
        let tokens = format!("agegate={AGEGATE},signup={SIGNUP},lookup={LOOKUP},tester={TESTER}");
        settings.server.caller_tokens = Some(CallerTokens::parse(&tokens).unwrap());
        settings.server.caller_permissions = Some(CallerPermissions::parse(permissions).unwrap());
    }
}

async fn begin_as(
    app: &TestApp,
    token: &str,
    purpose: Purpose,
    account: Option<&str>,
) -> Result<String, Status> {
    let request = BeginVerificationRequest {
        purpose: purpose.into(),
        provider: Provider::PortoneV1.into(),
        account_id: account.map(str::to_owned),
        min_age: (purpose == Purpose::AgeCheck).then_some(19),
        ..Default::default()
    };
    let began = app
        .client
        .clone()
        .begin_verification(as_caller(token, request))
        .await?;
    Ok(began.into_inner().merchant_uid)
}

/// Certifies `person` under the session and redeems it as `token`.
async fn redeem_as(
    app: &TestApp,
    token: &str,
    merchant_uid: String,
    person: &str,
) -> Result<VerifyResponse, Status> {
    let imp_uid = insert_certified(app, &merchant_uid, person);
    let verify = VerifyRequest {
        imp_uid,
        merchant_uid,
        ..Default::default()
    };
    let answer = app.client.clone().verify(as_caller(token, verify)).await?;
    Ok(answer.into_inner())
}

/// Begins a session as `token`, certifies `person` under it, and redeems it.
async fn session_as(
    app: &TestApp,
    token: &str,
    purpose: Purpose,
    account: Option<&str>,
    person: &str,
) -> VerifyResponse {
    let merchant_uid = begin_as(app, token, purpose, account).await.unwrap();
    redeem_as(app, token, merchant_uid, person).await.unwrap()
}

#[tokio::test]
async fn a_session_of_a_purpose_its_caller_may_not_begin_is_refused_as_purpose_not_allowed() {
    let app = App::new()
        .adjust(callers(
            "agegate=BeginVerification:AGE_CHECK+Verify,signup=BeginVerification+Verify",
        ))
        .spawn()
        .await;
    for purpose in [Purpose::Recovery, Purpose::Signup, Purpose::Reverify] {
        let account = (purpose == Purpose::Reverify).then_some("acct-gated");
        let status = assert_status(
            begin_as(&app, AGEGATE, purpose, account).await,
            Code::PermissionDenied,
            "PURPOSE_NOT_ALLOWED",
        );
        let info = status.get_error_details().error_info().unwrap().clone();
        assert_eq!(info.metadata["purpose"], purpose.as_str_name(), "{status:?}");
    }
    begin_as(&app, AGEGATE, Purpose::AgeCheck, None).await.unwrap();
    // A bare BeginVerification still grants every purpose.
    begin_as(&app, SIGNUP, Purpose::Recovery, None).await.unwrap();
    begin_as(&app, SIGNUP, Purpose::AgeCheck, None).await.unwrap();
    let sessions = crate::sessions::count(&app, "SELECT COUNT(*) FROM verification_sessions").await;
    assert_eq!(sessions, 3, "a refused purpose begins no session");
}

#[tokio::test]
async fn an_age_check_answers_the_age_decision_and_nothing_of_the_person() {
    let app = App::new()
        .adjust(callers(
            "agegate=BeginVerification:AGE_CHECK+Verify,signup=BeginVerification:SIGNUP+Verify",
        ))
        .spawn()
        .await;
    // The person holds an account: an age gate still learns nothing of it.
    let signup = session_as(&app, SIGNUP, Purpose::Signup, Some("acct-adult"), "gated-adult").await;
    assert!(signup.bound && signup.identity.is_some() && signup.duplicate.is_some());
    assert!(signup.age_check.unwrap().age >= 30, "a signup answers as before");

    let answer = session_as(&app, AGEGATE, Purpose::AgeCheck, None, "gated-adult").await;
    assert_eq!(answer.purpose(), Purpose::AgeCheck);
    let age = answer.age_check.unwrap();
    assert!(age.satisfied && age.min_age == 19, "{age:?}");
    assert_eq!(age.age, 0, "the exact age is withheld");
    assert_eq!(answer.identity, None, "no name, birth date, phone, CI or DI");
    assert_eq!(answer.duplicate, None, "no holder");
    assert!(!answer.bound);
}

#[tokio::test]
async fn a_recovery_answers_the_holding_account_and_nothing_of_the_person() {
    let app = App::new()
        .adjust(callers("signup=BeginVerification+Verify"))
        .spawn()
        .await;
    session_as(&app, SIGNUP, Purpose::Signup, Some("acct-found"), "recovered").await;
    let answer = session_as(&app, SIGNUP, Purpose::Recovery, None, "recovered").await;
    assert_eq!(answer.purpose(), Purpose::Recovery);
    let holder = answer.duplicate.unwrap();
    assert!(holder.duplicate && holder.account_id == "acct-found" && holder.bound_at.is_some());
    assert_eq!(answer.identity, None, "no name, birth date, phone, CI or DI");
    assert_eq!(answer.age_check, None);
    assert!(answer.certification.is_some());
    assert!(!answer.bound);
}

#[tokio::test]
async fn sandbox_certify_needs_its_own_permission() {
    let app = App::new()
        .adjust(callers(
            "lookup=CheckDuplicate,signup=BeginVerification+Verify+CheckDuplicate,tester=Sandbox/Certify",
        ))
        .spawn()
        .await;
    for token in [LOOKUP, SIGNUP] {
        let status = assert_status(
            app.sandbox_client()
                .certify(as_caller(token, v1_request("m-minted", Person::Adult)))
                .await,
            Code::PermissionDenied,
            "METHOD_NOT_ALLOWED",
        );
        let info = status.get_error_details().error_info().unwrap().clone();
        assert_eq!(info.metadata["method"], "Sandbox/Certify");
    }
    assert_eq!(app.sandbox.stats().certification_lookups, 0);
    let certified = app
        .sandbox_client()
        .certify(as_caller(TESTER, v1_request("m-minted", Person::Adult)))
        .await
        .unwrap();
    assert_eq!(certified.into_inner().merchant_uid, "m-minted");
}

#[tokio::test]
async fn authenticated_callers_without_caller_permissions_are_refused_unless_star_says_so() {
    let (mut settings, _sandbox, _data) = test_settings(|_| {}).await;
    settings.server.allow_unauthenticated = false;
    settings.server.caller_tokens = Some(CallerTokens::parse(&format!("signup={SIGNUP}")).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = Application::build(settings, listener)
        .await
        .err()
        .expect("refused without CALLER_PERMISSIONS");
    let message = format!("{error:#}");
    assert!(
        message.contains("CALLER_PERMISSIONS") && message.contains("CALLER_PERMISSIONS=*"),
        "{message}"
    );

    // `*`, said in so many words: every caller, every method.
    let app = App::new()
        .adjust(|settings| {
            settings.server.allow_unauthenticated = false;
            settings.server.caller_tokens = Some(CallerTokens::parse(&format!("signup={SIGNUP}")).unwrap());
            settings.server.caller_permissions = Some(CallerPermissions::parse("*").unwrap());
        })
        .spawn()
        .await;
    let mut client = app.client.clone();
    let by_ci = CheckDuplicateRequest {
        key: Some(Key::Ci(ci_for("everyone"))),
        ..Default::default()
    };
    client.check_duplicate(as_caller(SIGNUP, by_ci)).await.unwrap();
    let unlink = UnlinkRequest {
        account_id: "acct-everyone".into(),
    };
    client.unlink(as_caller(SIGNUP, unlink)).await.unwrap();
    app.sandbox_client()
        .certify(as_caller(SIGNUP, v1_request("m-everyone", Person::Adult)))
        .await
        .unwrap();
}

/// Every CALLER_PERMISSIONS example the documentation gives that names a signup caller.
fn documented_permissions() -> BTreeSet<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let files = [
        "README.md",
        "SECURITY.md",
        "docs/api.md",
        "docs/configuration.md",
        "docs/operations.md",
        "docs/security.md",
        "docs/sessions.md",
        "helm/certification-service/README.md",
        "helm/certification-service/values.yaml",
        "helm/certification-service/templates/NOTES.txt",
    ];
    let mut found = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        // An example is a run of `name=Item+Item` entries from `signup=` on (a chart value's
        // commas escaped for --set).
        let mut rest = text.as_str();
        while let Some(at) = rest.find("signup=") {
            let example = &rest[at..];
            let end = example
                .find(|c: char| !(c.is_ascii_alphanumeric() || "=+:|*,_/\\".contains(c)))
                .unwrap_or(example.len());
            let spec = example[..end].replace("\\,", ",");
            if spec.contains('+') || spec.contains(':') {
                found.insert(spec.trim_end_matches(',').to_owned());
            }
            rest = &example[end.max(1)..];
        }
    }
    found
}

#[tokio::test]
async fn a_signup_completes_with_every_documented_caller_permissions_example() {
    let examples = documented_permissions();
    assert!(examples.len() >= 2, "{examples:?}");
    for example in examples {
        let names: Vec<&str> = example
            .split(',')
            .filter_map(|entry| entry.split_once('='))
            .map(|(name, _)| name.trim())
            .collect();
        let tokens: Vec<String> = names
            .iter()
            .map(|name| format!("{name}={name}-token-0123456789abcdef"))
            .collect();
        let app = App::new()
            .adjust(|settings| {
                sessions_on(settings);
                settings.server.caller_tokens = Some(CallerTokens::parse(&tokens.join(",")).unwrap());
                settings.server.caller_permissions = Some(
                    CallerPermissions::parse(&example).unwrap_or_else(|error| panic!("{example}: {error}")),
                );
            })
            .spawn()
            .await;
        let token = "signup-token-0123456789abcdef";
        let merchant_uid = begin_as(&app, token, Purpose::Signup, Some("acct-documented"))
            .await
            .unwrap_or_else(|status| panic!("{example}: {status:?}"));
        let answer = redeem_as(&app, token, merchant_uid, "documented")
            .await
            .unwrap_or_else(|status| panic!("{example}: {status:?}"));
        assert!(answer.bound, "{example}");
    }
}

#[tokio::test]
async fn a_caller_rotating_its_token_keeps_its_sessions() {
    let old = "signup-token-0123456789abcdef";
    let new = "signup-token-fedcba9876543210-next";
    let app = App::new()
        .adjust(|settings| {
            sessions_on(settings);
            let tokens = format!("signup={old},signup={new}");
            settings.server.caller_tokens = Some(CallerTokens::parse(&tokens).unwrap());
            settings.server.caller_permissions = Some(CallerPermissions::parse("signup=*").unwrap());
        })
        .spawn()
        .await;
    // Begun with the old token, redeemed with the new one: the same caller's session.
    let merchant_uid = begin_as(&app, old, Purpose::Signup, Some("acct-rotating"))
        .await
        .unwrap();
    let answer = redeem_as(&app, new, merchant_uid, "rotating").await.unwrap();
    assert!(answer.bound);
}
