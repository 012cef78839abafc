//! CI/DI sealed to their row: a ciphertext moved to another person's row does not open, and
//! `rekey` binds values sealed before rows were bound.

use base64::{Engine, engine::general_purpose::STANDARD};
use certification_service::{
    domain::{Purpose, SealingKeys},
    maintenance,
    sandbox::identities::{ADULT, FOREIGNER},
};
use sea_orm::{ConnectionTrait, Statement};

use crate::{
    helpers::spawn_app,
    protection::{sealed_rows, verify_and_bind},
};

#[tokio::test]
async fn ciphertexts_swapped_between_rows_do_not_open() {
    let app = spawn_app().await;
    verify_and_bind(&app, ADULT, "acct-swap-1").await;
    verify_and_bind(&app, FOREIGNER, "acct-swap-2").await;
    let rows = sealed_rows(&app).await;
    let keys = &app.settings.keys.sealing_keys;
    let (first, second) = (&rows[0], &rows[1]);
    // Each opens in its own row and in no other.
    keys.open(Purpose::Ci, &first.1, &first.2).unwrap();
    assert!(keys.open(Purpose::Ci, &first.1, &second.2).is_err());
    assert!(keys.open(Purpose::Ci, &second.1, &first.2).is_err());
    // Swapped in the database, rekey (the one reader of sealed values) notices instead of
    // re-sealing someone else's CI under this row.
    let connection = app.store.connection();
    let backend = connection.get_database_backend();
    for (row, other) in [(first, second), (second, first)] {
        connection
            .execute_raw(Statement::from_sql_and_values(
                backend,
                match backend {
                    sea_orm::DbBackend::Postgres => "UPDATE persons SET ci_sealed = $1 WHERE ci_hash = $2",
                    _ => "UPDATE persons SET ci_sealed = ? WHERE ci_hash = ?",
                },
                [other.2.blob.clone().into(), row.1.0.clone().into()],
            ))
            .await
            .unwrap();
    }
    let rotated = SealingKeys::parse(&format!(
        "test-k2:{},test-k1:{}",
        STANDARD.encode([10u8; 32]),
        STANDARD.encode([9u8; 32])
    ))
    .unwrap();
    let error = maintenance::rekey(&app.store, &rotated, &app.settings.keys.ci_index_key, 10)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("does not open"), "{error}");
}

#[tokio::test]
async fn rekey_binds_values_sealed_before_rows_were_bound_to_their_row() {
    use aes_gcm::{
        Aes256Gcm, KeyInit, Nonce,
        aead::{Aead, Payload},
    };
    let app = spawn_app().await;
    let answer = verify_and_bind(&app, ADULT, "acct-unbound-seal").await;
    let identity = answer.identity.unwrap();
    // As the previous release sealed: purpose only in the associated data, no row marker.
    let cipher = Aes256Gcm::new_from_slice(&[9u8; 32]).unwrap();
    let nonce = [3u8; 12];
    let mut blob = nonce.to_vec();
    blob.extend(
        cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: identity.ci.as_bytes(),
                    aad: b"certification-service/ci/v1",
                },
            )
            .unwrap(),
    );
    let legacy = STANDARD.encode(blob);
    let connection = app.store.connection();
    connection
        .execute_unprepared(&format!(
            "UPDATE persons SET ci_sealed = '{legacy}', di_sealed = NULL"
        ))
        .await
        .unwrap();
    let keys = app.settings.keys.sealing_keys.clone();
    let report = maintenance::rekey(&app.store, &keys, &app.settings.keys.ci_index_key, 10)
        .await
        .unwrap();
    assert_eq!(report.resealed, 1, "same key, but not yet bound to its row");
    let rows = sealed_rows(&app).await;
    let (_, index, ci, _) = &rows[0];
    assert!(ci.is_row_bound());
    assert_eq!(keys.open(Purpose::Ci, index, ci).unwrap(), identity.ci);
    assert_eq!(
        maintenance::rekey(&app.store, &keys, &app.settings.keys.ci_index_key, 10)
            .await
            .unwrap()
            .resealed,
        0
    );
}
