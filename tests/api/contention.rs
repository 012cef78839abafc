//! Contention on PostgreSQL: a signup's transaction that waits on a row another holds is undone
//! past DATABASE_LOCK_TIMEOUT and run again, and answered ABORTED (retryable) when the wait outlasts
//! the retries; never INTERNAL, and never a wait without end.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, TransactionTrait};
use tonic::Code;

use crate::{
    certify::insert_certified,
    fresh_binds::{setup, setup_adjusted},
    helpers::assert_status,
};

#[tokio::test]
async fn on_postgres_a_bind_waiting_on_a_held_person_is_aborted_then_binds_when_retried() {
    // Each of the three runs waits DATABASE_LOCK_TIMEOUT, all within the call's deadline.
    let Some(setup) = setup_adjusted(
        "on_postgres_a_bind_waiting_on_a_held_person_is_aborted_then_binds_when_retried",
        |settings| settings.store.lock_timeout = Duration::from_millis(500),
    )
    .await
    else {
        return;
    };
    let app = &setup.app;
    // The person is known and unheld: a new signup takes the transaction, not the fresh path.
    let first = insert_certified(app, "merchant-contended-1", "contended-person");
    assert!(app.bind(&first, "acct-contended-1").await.unwrap().bound);
    app.unlink("acct-contended-1").await;

    let other = Database::connect(setup.database_url.as_str()).await.unwrap();
    let lock = other.begin().await.unwrap();
    lock.execute_unprepared("SELECT 1 FROM persons FOR UPDATE")
        .await
        .unwrap();

    let second = insert_certified(app, "merchant-contended-2", "contended-person");
    let answer = tokio::time::timeout(Duration::from_secs(30), app.bind(&second, "acct-contended-2"))
        .await
        .expect("a bind waiting on a held row is answered, not left waiting");
    assert_status(answer, Code::Aborted, "STORE_CONTENTION");

    lock.commit().await.unwrap();
    let retried = app.bind(&second, "acct-contended-2").await.unwrap();
    assert!(
        retried.bound,
        "the caller's retry binds: nothing of the aborted call remained"
    );
}

/// With no cooldown (REJOIN_COOLDOWN=0s), a signup whose transaction began before an Unlink of
/// the person's holder committed binds: the cooldown is judged on the clock after the Unlink,
/// not on the one read when the transaction began.
#[tokio::test]
async fn on_postgres_a_bind_racing_an_unlink_with_no_cooldown_binds() {
    let Some(setup) = setup("on_postgres_a_bind_racing_an_unlink_with_no_cooldown_binds").await else {
        return;
    };
    let app = &setup.app;
    let first = insert_certified(app, "merchant-raced-1", "raced-person");
    assert!(app.bind(&first, "acct-raced-1").await.unwrap().bound);
    // The second certification recorded before, so the signup's record waits on its row.
    let second = insert_certified(app, "merchant-raced-2", "raced-person");
    app.verify(&second).await.unwrap();

    let other = Database::connect(setup.database_url.as_str()).await.unwrap();
    let hold = other.begin().await.unwrap();
    hold.execute_unprepared(&format!(
        "SELECT 1 FROM certifications WHERE provider_id = '{second}' FOR UPDATE"
    ))
    .await
    .unwrap();
    let unlink_meanwhile = async {
        let waiting = "SELECT count(*) FROM pg_stat_activity \
                       WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO certifications%'";
        let mut tries = 0;
        while one(&other, waiting).await == 0 {
            tries += 1;
            assert!(tries < 500, "the signup never waited on the certification's row");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(app.unlink("acct-raced-1").await.unlinked);
        hold.commit().await.unwrap();
    };
    let (answer, ()) = tokio::join!(app.bind(&second, "acct-raced-2"), unlink_meanwhile);
    assert!(answer.unwrap().bound, "a 0s cooldown refused a rejoin");
}

async fn one(db: &impl ConnectionTrait, sql: &str) -> i64 {
    let statement = sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql.to_owned());
    let row = db.query_one_raw(statement).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}
