//! Verify's records on PostgreSQL (`src/store/batch/records.rs`): records waiting together are written
//! by one statement, and each call still gets its own answer.

use std::time::{Duration, Instant};

use certification_service::{sandbox::identities::CertificationRecord, secret::Secret};
use chrono::{NaiveDate, Utc};
use sea_orm::{ConnectionTrait, Database, TransactionTrait};

use crate::{
    helpers::{App, TestApp, TestDatabase, postgres_for},
    sessions::count,
};

fn certification(app: &TestApp, imp_uid: &str, person: &str) -> String {
    let born = NaiveDate::from_ymd_opt(1990, 6, 1).unwrap();
    let certified_at = Utc::now().timestamp() - 30;
    app.sandbox.insert_certification(CertificationRecord::certified(
        imp_uid,
        person,
        "묶음",
        born,
        certified_at,
    ));
    imp_uid.to_owned()
}

/// From here on, which transaction wrote each certification row, and with which statement
/// (the table `certification_writers`): see [`WRITTEN_TOGETHER`].
pub async fn note_certification_writers(app: &TestApp) {
    app.store
        .connection()
        .execute_unprepared(
            "CREATE TABLE certification_writers (tx bigint NOT NULL, query text NOT NULL, provider_id text NOT NULL); \
             CREATE FUNCTION note_certification_writer() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN INSERT INTO certification_writers VALUES (txid_current(), current_query(), NEW.provider_id); \
             RETURN NEW; END $$; \
             CREATE TRIGGER certification_writer BEFORE INSERT OR UPDATE ON certifications \
             FOR EACH ROW EXECUTE FUNCTION note_certification_writer()",
        )
        .await
        .unwrap();
}

/// The most certifications one batch statement (`unnest`) wrote in one transaction.
pub const WRITTEN_TOGETHER: &str = "SELECT coalesce(max(written), 0) FROM (SELECT count(DISTINCT provider_id) AS written \
     FROM certification_writers WHERE query LIKE '%unnest%' GROUP BY tx) AS per_tx";

/// Waits until the sandbox has answered `count` more lookups than `since` (the queued calls
/// reached the lane), then a little more.
pub async fn until_looked_up(app: &TestApp, since: u64, count: u64) {
    let waiting_since = Instant::now();
    while app.sandbox.stats().certification_lookups < since + count
        && waiting_since.elapsed() < Duration::from_secs(2)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// While one record waits on a row lock, the records behind it queue; the next statement
/// writes them all. A person bound before, a new person seen twice and a certification seen
/// twice are each answered as alone, and written once.
#[tokio::test]
async fn on_postgres_records_waiting_together_are_written_by_one_statement() {
    let Some((admin_url, _server)) =
        postgres_for("on_postgres_records_waiting_together_are_written_by_one_statement")
    else {
        return;
    };
    let database = TestDatabase::create(&admin_url).await;
    let database_url = database.url().to_owned();
    let app = App::new()
        .adjust(|settings| {
            settings.store.database_url = Secret::new(database_url.clone());
        })
        .spawn()
        .await;
    let blocker = certification(&app, "imp_610000000000", "batch-blocker");
    let bound = certification(&app, "imp_610000000001", "batch-bound");
    let bound_again = [
        certification(&app, "imp_610000000002", "batch-bound"),
        certification(&app, "imp_610000000003", "batch-bound"),
    ];
    let new_person = [
        certification(&app, "imp_610000000004", "batch-new"),
        certification(&app, "imp_610000000005", "batch-new"),
    ];
    assert!(app.bind(&bound, "acct-batch").await.unwrap().bound);
    app.verify(&blocker).await.unwrap();
    note_certification_writers(&app).await;

    // The blocker's record waits on its certification's row, locked here.
    let other = Database::connect(database_url.as_str()).await.unwrap();
    let lock = other.begin().await.unwrap();
    lock.execute_unprepared(&format!(
        "SELECT 1 FROM certifications WHERE provider_id = '{blocker}' FOR UPDATE"
    ))
    .await
    .unwrap();
    let asked = app.sandbox.stats().certification_lookups;
    let blocked = tokio::spawn({
        let mut client = app.client.clone();
        let request = crate::helpers::verify_request(&blocker);
        async move { client.verify(request).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued = [
        &bound_again[0],
        &bound_again[1],
        &new_person[0],
        &new_person[1],
        &new_person[0],
    ]
    .map(|imp_uid| app.verify(imp_uid));
    // Released once the five have had their answers from PortOne and queued behind it.
    let release = async {
        until_looked_up(&app, asked, 6).await;
        lock.commit().await.unwrap();
    };
    let (answers, ()) = tokio::join!(futures::future::join_all(queued), release);
    assert!(blocked.await.unwrap().is_ok());

    let answers: Vec<_> = answers
        .into_iter()
        .map(|answer| answer.unwrap().into_inner().duplicate.unwrap())
        .collect();
    for held in &answers[..2] {
        assert!(held.duplicate);
        assert_eq!(held.account_id, "acct-batch");
    }
    for fresh in &answers[2..] {
        assert!(!fresh.duplicate, "{fresh:?}");
    }
    // blocker, bound and new: three persons; six certifications.
    assert_eq!(count(&app, "SELECT count(*) FROM persons").await, 3);
    assert_eq!(count(&app, "SELECT count(*) FROM certifications").await, 6);
    // The four queued certifications (one of them asked twice) written by one statement.
    let batched = count(&app, WRITTEN_TOGETHER).await;
    assert_eq!(batched, 4, "the queued records were not written together");
}
