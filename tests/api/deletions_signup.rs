//! PORTONE_DELETE_AFTER on the one-statement signup (`src/store/batch/binds.rs`): its deletion is
//! enqueued by that statement.

use std::time::Duration;

use certification_service::secret::Secret;
use sea_orm::{ConnectionTrait, Statement};

use crate::{
    deletions::{deleting_after, redeemed_signup},
    helpers::{App, TestDatabase, postgres_for},
    sessions::redeem,
};

/// On PostgreSQL a fresh signup redeems its session, binds and enqueues its deletion in one
/// statement (`src/store/batch/binds.rs`): the outbox row is written by that statement, not by the
/// transaction the signup falls back to, which would write the same row.
#[tokio::test]
async fn on_postgres_a_fresh_signup_enqueues_its_deletion_in_its_one_statement() {
    let Some((admin_url, _server)) =
        postgres_for("on_postgres_a_fresh_signup_enqueues_its_deletion_in_its_one_statement")
    else {
        return;
    };
    let database = TestDatabase::create(&admin_url).await;
    let database_url = database.url().to_owned();
    let delay = Duration::from_secs(3600);
    let app = App::new()
        .adjust(|settings| {
            deleting_after(delay)(settings);
            settings.store.database_url = Secret::new(database_url);
        })
        .spawn()
        .await;
    // Which statement wrote each outbox row.
    app.store
        .connection()
        .execute_unprepared(
            "CREATE TABLE outbox_writers (query text NOT NULL); \
             CREATE FUNCTION note_outbox_writer() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN INSERT INTO outbox_writers VALUES (current_query()); RETURN NEW; END $$; \
             CREATE TRIGGER outbox_writer BEFORE INSERT ON portone_deletions \
             FOR EACH ROW EXECUTE FUNCTION note_outbox_writer()",
        )
        .await
        .unwrap();

    let before = chrono::Utc::now();
    let (imp_uid, merchant_uid) = redeemed_signup(&app, "acct-del-fresh", "del-fresh-person").await;
    // A retry answers from the session and enqueues nothing again.
    assert!(redeem(&app, &merchant_uid, &imp_uid).await.unwrap().bound);

    let writers = app
        .store
        .connection()
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT query FROM outbox_writers",
        ))
        .await
        .unwrap();
    assert_eq!(writers.len(), 1);
    let writer: String = writers[0].try_get("", "query").unwrap();
    assert!(writer.contains("fresh AS ("), "written by: {writer}");
    let row = app
        .store
        .connection()
        .query_one_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT not_before, attempts, finished_at FROM portone_deletions WHERE imp_uid = $1",
            [imp_uid.as_str().into()],
        ))
        .await
        .unwrap()
        .expect("the deletion is enqueued");
    let not_before: chrono::DateTime<chrono::Utc> = row.try_get("", "not_before").unwrap();
    let attempts: i32 = row.try_get("", "attempts").unwrap();
    let finished: Option<chrono::DateTime<chrono::Utc>> = row.try_get("", "finished_at").unwrap();
    assert!(not_before >= before + delay && not_before <= chrono::Utc::now() + delay);
    assert_eq!((attempts, finished), (0, None));
}
