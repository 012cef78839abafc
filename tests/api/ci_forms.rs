//! One person, one CI text: a CI (or DI) in base64url or without padding is the person its
//! standard form names, through V1 and V2, CheckDuplicate and `rekey`, which moves rows indexed
//! by a CI as received to the hash of its canonical form and lists the rows that are one person.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD},
};
use certification_service::{
    domain::{PersonIndex, Purpose as Sealing, SealingKeys},
    grpc::proto::{Purpose, check_duplicate_request::Key},
    maintenance::{self, MaintenanceError},
    sandbox::{
        grpc::proto::{IdentifierForm, Person},
        identities::{ADULT, ci_for, di_for},
    },
    store::Collision,
};
use chrono::Utc;
use hmac::{Hmac, Mac};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sha2::Sha256;
use tonic::Code;

use crate::{
    certify::{CertifyRequestExt, certify, insert_certified, v2_request},
    helpers::{App, TEST_AUDIT_KEY, TEST_INDEX_KEY, TestApp, assert_status, spawn_app, test_encryption_keys},
    portone_v2::{begin_v2, verify_v2},
    protection::sealed_rows,
    sessions::{begin, redeem, scalar, sessions_on},
};

/// The same bytes as `standard`, in base64url without padding.
fn url_safe_unpadded(standard: &str) -> String {
    let written = URL_SAFE_NO_PAD.encode(STANDARD.decode(standard).unwrap());
    assert_ne!(
        written,
        standard.trim_end_matches('='),
        "the fixture needs a + or a /"
    );
    written
}

/// The lookup hash releases before canonicalisation stored: the HMAC of the text as received.
fn hash_as_received(label: &str, raw: &str) -> PersonIndex {
    let mut mac = Hmac::<Sha256>::new_from_slice(&TEST_INDEX_KEY).unwrap();
    mac.update(label.as_bytes());
    mac.update(raw.as_bytes());
    PersonIndex(hex::encode(mac.finalize().into_bytes()))
}

/// A person row as a release before canonicalisation wrote one for a CI and DI received as
/// `ci` and `di`: hashed and sealed as received. Returns its id.
async fn insert_person_as_before(app: &TestApp, ci: &str, di: &str, account: Option<&str>) -> i64 {
    let keys = &app.settings.keys.sealing_keys;
    let index = hash_as_received("ci:", ci);
    let ci_sealed = keys.seal(Sealing::Ci, &index, ci);
    let di_sealed = keys.seal(Sealing::Di, &index, di);
    let now = Utc::now();
    let connection = app.store.connection();
    let backend = connection.get_database_backend();
    let placeholders = match backend {
        DbBackend::Postgres => "$1, $2, $3, $4, $5, $6, $7, $8, $9",
        _ => "?, ?, ?, ?, ?, ?, ?, ?, ?",
    };
    let row = connection
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO persons (ci_hash, di_hash, ci_sealed, di_sealed, sealing_key_id, \
                 account_id, bound_at, created_at, updated_at) VALUES ({placeholders}) RETURNING id"
            ),
            [
                index.0.into(),
                hash_as_received("di:", di).0.into(),
                ci_sealed.blob.into(),
                di_sealed.blob.into(),
                ci_sealed.key_id.into(),
                account.map(str::to_owned).into(),
                account.map(|_| now).into(),
                now.into(),
                now.into(),
            ],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "id").unwrap()
}

/// A text column of person `id`.
async fn column_of(app: &TestApp, id: i64, column: &str) -> Option<String> {
    scalar(app, &format!("SELECT {column} FROM persons WHERE id = {id}")).await
}

/// The id of the person found by `index`.
async fn id_of(app: &TestApp, index: &PersonIndex) -> i64 {
    scalar(
        app,
        &format!("SELECT id FROM persons WHERE ci_hash = '{}'", index.0),
    )
    .await
}

async fn holder_of(app: &TestApp, ci: &str) -> Option<String> {
    let answer = app.check_duplicate(Key::Ci(ci.to_owned())).await.unwrap();
    answer.duplicate.then_some(answer.account_id)
}

#[tokio::test]
async fn a_v1_and_a_v2_certification_whose_ci_differ_only_in_form_are_one_person() {
    let app = App::new().adjust(sessions_on).spawn().await;
    let v1 = begin(&app, Purpose::Signup, Some("acct-form-1")).await;
    let imp_uid = insert_certified(&app, &v1.merchant_uid, "form-person");
    let first = redeem(&app, &v1.merchant_uid, &imp_uid).await.unwrap();
    assert!(first.bound);
    assert_eq!(first.identity.unwrap().ci, ci_for("form-person"));

    // The same person through V2, its answer writing CI and DI in base64url without padding.
    url_safe_unpadded(&ci_for("form-person"));
    let id = begin_v2(&app, Purpose::Signup, Some("acct-form-2")).await;
    let url_safe = |id: &str, key: &str| {
        v2_request(id, Person::Adult)
            .person_key(key)
            .written_as(IdentifierForm::UrlSafeUnpadded)
    };
    certify(&app, url_safe(&id, "form-person")).await.unwrap();
    assert_status(
        verify_v2(&app, &id).await,
        Code::AlreadyExists,
        "ALREADY_REGISTERED",
    );

    // A person first seen that way is answered, and found, in the standard form.
    let id = begin_v2(&app, Purpose::Signup, Some("acct-form-3")).await;
    certify(&app, url_safe(&id, "other-form-person")).await.unwrap();
    let answer = verify_v2(&app, &id).await.unwrap();
    assert!(answer.bound);
    let identity = answer.identity.unwrap();
    assert_eq!(identity.ci, ci_for("other-form-person"));
    assert_eq!(identity.di, di_for("other-form-person"));
    assert_eq!(
        holder_of(&app, &ci_for("other-form-person")).await.as_deref(),
        Some("acct-form-3")
    );
}

#[tokio::test]
async fn check_duplicate_by_ci_in_any_base64_form_finds_the_holder() {
    let app = spawn_app().await;
    app.bind(ADULT, "acct-forms").await.unwrap();
    let standard = ci_for("hong");
    let bytes = STANDARD.decode(&standard).unwrap();
    for form in [
        url_safe_unpadded(&standard),
        URL_SAFE.encode(&bytes),
        standard.trim_end_matches('=').to_owned(),
        standard.clone(),
    ] {
        assert_eq!(
            holder_of(&app, &form).await.as_deref(),
            Some("acct-forms"),
            "{form}"
        );
    }
    // Both alphabets in one text: no encoder writes it, so it is refused, not a person.
    let mixed = format!("{}-", &standard[..standard.find(['+', '/']).unwrap() + 1]);
    assert_status(
        app.check_duplicate(Key::Ci(mixed)).await,
        Code::InvalidArgument,
        "INVALID_CI",
    );
}

#[tokio::test]
async fn rekey_makes_rows_indexed_by_a_ci_as_received_findable_by_any_form() {
    let app = spawn_app().await;
    let (ci, di) = (ci_for("rekey-person"), di_for("rekey-person"));
    let id = insert_person_as_before(
        &app,
        &url_safe_unpadded(&ci),
        &url_safe_unpadded(&di),
        Some("acct-before"),
    )
    .await;
    // As the previous release left it: the person is not found by the standard form.
    assert_eq!(holder_of(&app, &ci).await, None);

    let keys = &app.settings.keys.sealing_keys;
    let index_key = &app.settings.keys.ci_index_key;
    let report = maintenance::rekey(&app.store, keys, index_key, 10).await.unwrap();
    assert_eq!((report.resealed, report.rehashed), (1, 1), "{report:?}");
    assert!(report.is_complete(), "{report:?}");

    assert_eq!(holder_of(&app, &ci).await.as_deref(), Some("acct-before"));
    assert_eq!(
        holder_of(&app, &url_safe_unpadded(&ci)).await.as_deref(),
        Some("acct-before")
    );
    // Sealed to its new hash, in the standard form; the DI re-indexed by its standard form.
    let rows = sealed_rows(&app).await;
    let (_, index, sealed_ci, sealed_di) = &rows[0];
    assert_eq!(index, &hash_as_received("ci:", &ci));
    assert_eq!(keys.open(Sealing::Ci, index, sealed_ci).unwrap(), ci);
    assert_eq!(
        keys.open(Sealing::Di, index, sealed_di.as_ref().unwrap())
            .unwrap(),
        di
    );
    assert_eq!(
        column_of(&app, id, "di_hash").await,
        Some(hash_as_received("di:", &di).0)
    );
    // Resumable and idempotent: nothing left to do.
    let again = maintenance::rekey(&app.store, keys, index_key, 10).await.unwrap();
    assert_eq!((again.resealed, again.rehashed), (0, 0));
}

/// The pair the V1/V2 split made: one person bound twice, once per form. `rekey` merges
/// nothing: it lists the pair by row ids, keeps both rows (the stale one re-sealed in place
/// under the new key), moves the rows it can, and the command exits non-zero.
#[tokio::test]
async fn rekey_lists_two_rows_of_one_person_merges_nothing_and_the_command_fails() {
    let app = spawn_app().await;
    app.bind(ADULT, "acct-v1").await.unwrap();
    let hong = ci_for("hong");
    let canonical_id = id_of(&app, &hash_as_received("ci:", &hong)).await;
    let twin_id = insert_person_as_before(
        &app,
        &url_safe_unpadded(&hong),
        &url_safe_unpadded(&di_for("hong")),
        Some("acct-v2"),
    )
    .await;
    let movable_id = insert_person_as_before(
        &app,
        &url_safe_unpadded(&ci_for("stale-person")),
        &url_safe_unpadded(&di_for("stale-person")),
        None,
    )
    .await;
    // A text the previous release accepted that decodes to nothing canonical (bad padding).
    let undecodable_id = insert_person_as_before(&app, "Q0lDSUNJ==", "RElESURJ", None).await;

    let new_key = format!("test-k2:{}", STANDARD.encode([10u8; 32]));
    let rotated_spec = format!("{new_key},{}", test_encryption_keys());
    let rotated = SealingKeys::parse(&rotated_spec).unwrap();
    let index_key = &app.settings.keys.ci_index_key;
    let report = maintenance::rekey(&app.store, &rotated, index_key, 2)
        .await
        .unwrap();
    assert_eq!(
        report.collisions,
        [Collision {
            person_id: twin_id,
            holds_account: true,
            other_person_id: canonical_id,
            other_holds_account: true,
        }]
    );
    assert_eq!(report.undecodable, [undecodable_id]);
    assert!(!report.is_complete());
    // Moved: the movable row. Re-sealed in place: the twin and the undecodable row. And the
    // canonical row, under the new key.
    assert_eq!((report.resealed, report.rehashed), (4, 1), "{report:?}");

    // Nothing merged: each row keeps its account, the canonical one still answers by CI.
    assert_eq!(holder_of(&app, &hong).await.as_deref(), Some("acct-v1"));
    let rows = sealed_rows(&app).await;
    assert_eq!(rows.len(), 4);
    let only_new = SealingKeys::parse(&new_key).unwrap();
    for (key_id, index, ci, _) in &rows {
        assert_eq!(key_id, "test-k2");
        only_new.open(Sealing::Ci, index, ci).unwrap();
    }
    assert_eq!(
        column_of(&app, twin_id, "ci_hash").await,
        Some(hash_as_received("ci:", &url_safe_unpadded(&hong)).0)
    );
    assert_eq!(
        column_of(&app, movable_id, "ci_hash").await,
        Some(hash_as_received("ci:", &ci_for("stale-person")).0)
    );

    // The command says so, by row ids, never by CI, and fails.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_certification-service"))
        .arg("rekey")
        .env("DATABASE_URL", app.settings.store.database_url.expose())
        .env("CI_ENCRYPTION_KEYS", &rotated_spec)
        .env("CI_INDEX_KEY", STANDARD.encode(TEST_INDEX_KEY))
        .env("AUDIT_KEY", STANDARD.encode(TEST_AUDIT_KEY))
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{printed}");
    assert!(
        printed.contains(&format!("{twin_id}={canonical_id}")),
        "{printed}"
    );
    assert!(printed.contains(&format!("[{undecodable_id}]")), "{printed}");
    for secret in [hong.as_str(), &url_safe_unpadded(&hong), "Q0lDSUNJ", "acct-v"] {
        assert!(!printed.contains(secret), "{printed}");
    }
}

#[tokio::test]
async fn rekey_with_another_index_key_stops_before_rewriting_anything() {
    let app = spawn_app().await;
    app.bind(ADULT, "acct-index-key").await.unwrap();
    let before = sealed_rows(&app).await;
    let other = certification_service::domain::CiIndexKey::from_base64(&STANDARD.encode([43u8; 32])).unwrap();
    let keys = &app.settings.keys.sealing_keys;
    let error = maintenance::rekey(&app.store, keys, &other, 10)
        .await
        .unwrap_err();
    let id = id_of(&app, &hash_as_received("ci:", &ci_for("hong"))).await;
    assert!(
        matches!(error, MaintenanceError::WrongIndexKey { person_id } if person_id == id),
        "{error}"
    );
    let after = sealed_rows(&app).await;
    assert_eq!(
        before.iter().map(|row| &row.1).collect::<Vec<_>>(),
        after.iter().map(|row| &row.1).collect::<Vec<_>>()
    );
    assert_eq!(
        holder_of(&app, &ci_for("hong")).await.as_deref(),
        Some("acct-index-key")
    );
}

/// `rekey` re-indexes rows, so it needs the key they are indexed with: never a default.
#[test]
fn rekey_without_the_index_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_certification-service"))
        .arg("rekey")
        .env_remove("CI_INDEX_KEY")
        .env("DATABASE_URL", "sqlite://rekey.db?mode=rwc")
        .env("CI_ENCRYPTION_KEYS", test_encryption_keys())
        .env("AUDIT_KEY", STANDARD.encode(TEST_AUDIT_KEY))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--ci-index-key"), "{stderr}");
}
