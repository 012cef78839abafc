//! Signups' binds on PostgreSQL (`src/store/batch/binds.rs`): binds waiting together are
//! written by one statement, each call still gets the answer it would get alone, and a batch
//! that loses a race leaves every bind to its own statement.

use std::time::{Duration, Instant};

use certification_service::{grpc::proto::Purpose, secret::Secret};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, Statement,
    TransactionTrait,
};
use tonic::Code;

use crate::{
    certify::insert_certified,
    helpers::{App, TestApp, TestDatabase, assert_status, postgres_for},
    records::until_looked_up,
    sessions::{begin, count, redeem},
};

pub struct Setup {
    pub app: TestApp,
    pub database_url: String,
    _database: TestDatabase,
    _server: Option<certification_testkit::PostgresServer>,
}

pub async fn setup(test: &str) -> Option<Setup> {
    setup_adjusted(test, |_| {}).await
}

/// [`setup`], with the settings adjusted further.
pub async fn setup_adjusted(
    test: &str,
    adjust: impl FnOnce(&mut certification_service::config::Settings) + 'static,
) -> Option<Setup> {
    let (admin_url, server) = postgres_for(test)?;
    let database = TestDatabase::create(&admin_url).await;
    let database_url = database.url().to_owned();
    let app = App::new()
        .adjust(|settings| {
            settings.store.database_url = Secret::new(database_url.clone());
        })
        .adjust(adjust)
        .spawn()
        .await;
    crate::records::note_certification_writers(&app).await;
    Some(Setup {
        app,
        database_url,
        _database: database,
        _server: server,
    })
}

/// A signup session for `account`, certified by `person`: (merchant_uid, imp_uid).
async fn signup(app: &TestApp, account: &str, person: &str) -> (String, String) {
    let session = begin(app, Purpose::Signup, Some(account)).await;
    let imp_uid = insert_certified(app, &session.merchant_uid, person);
    (session.merchant_uid, imp_uid)
}

/// Locks `merchant_uid`'s session row until the returned transaction commits.
async fn lock_session(setup: &Setup, merchant_uid: &str) -> DatabaseTransaction {
    let other = Database::connect(setup.database_url.as_str()).await.unwrap();
    let lock = other.begin().await.unwrap();
    lock.execute_unprepared(&format!(
        "SELECT 1 FROM verification_sessions WHERE merchant_uid = '{merchant_uid}' FOR UPDATE"
    ))
    .await
    .unwrap();
    lock
}

/// Holds the statement that inserts `account`'s person until [`Held::release`]: the lane's
/// statement is busy, not waiting on a lock (the lane gives up lock waits at once), and the
/// binds behind it queue. The trigger polls a table of its own; a volatile function's queries
/// each see what committed since, and it gives up after ten seconds.
struct Held {
    db: DatabaseConnection,
}

impl Held {
    async fn bind_of(setup: &Setup, account: &str) -> Self {
        let db = Database::connect(setup.database_url.as_str()).await.unwrap();
        db.execute_unprepared(&format!(
            "CREATE TABLE lane_released (at timestamptz); \
             CREATE FUNCTION hold_bind() RETURNS trigger LANGUAGE plpgsql AS $$ \
             DECLARE polls int := 0; \
             BEGIN \
               IF NEW.account_id = '{account}' THEN \
                 WHILE NOT EXISTS (SELECT 1 FROM lane_released) AND polls < 1000 LOOP \
                   PERFORM pg_sleep(0.01); polls := polls + 1; \
                 END LOOP; \
               END IF; \
               RETURN NEW; \
             END $$; \
             CREATE TRIGGER hold_bind BEFORE INSERT ON persons FOR EACH ROW EXECUTE FUNCTION hold_bind()"
        ))
        .await
        .unwrap();
        Self { db }
    }

    async fn release(&self) {
        self.db
            .execute_unprepared("INSERT INTO lane_released VALUES (now())")
            .await
            .unwrap();
    }
}

/// Time for the blocker's bind to reach the lane before the others are sent.
const BLOCKER_FIRST: Duration = Duration::from_millis(300);

/// Waits (at most five seconds) until a statement of the service waits on a lock and
/// `condition` (SQL over `pg_stat_activity`) holds for it.
async fn until_lock_wait(db: &impl ConnectionTrait, condition: &str, what: &str) {
    let waiting =
        format!("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND {condition}");
    let waiting_since = Instant::now();
    while one(db, &waiting).await == 0 {
        if waiting_since.elapsed() > Duration::from_secs(5) {
            let activity = Statement::from_string(
                DbBackend::Postgres,
                "SELECT coalesce(wait_event_type, '') || ' ' || coalesce(state, '') || ' ' || left(query, 120) AS a \
                 FROM pg_stat_activity WHERE datname = current_database()",
            );
            let rows = db.query_all_raw(activity).await.unwrap();
            let rows: Vec<String> = rows.iter().map(|row| row.try_get_by_index(0).unwrap()).collect();
            panic!("{what} never waited on a lock; the database's sessions: {rows:#?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One count, on a connection of the test's own.
async fn one(db: &impl ConnectionTrait, sql: &str) -> i64 {
    let statement = Statement::from_string(DbBackend::Postgres, sql.to_owned());
    let row = db.query_one_raw(statement).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// While one bind's statement runs, the signups behind it queue; the next statement binds
/// the fresh ones together. One sharing its person with an earlier one, and one whose person
/// was bound before, get the refusals they would get alone, and redeem nothing.
#[tokio::test]
async fn on_postgres_signups_waiting_together_are_bound_by_one_statement() {
    let Some(setup) = setup("on_postgres_signups_waiting_together_are_bound_by_one_statement").await else {
        return;
    };
    let app = &setup.app;
    let bound_before = signup(app, "acct-before", "fresh-before").await;
    assert!(redeem(app, &bound_before.0, &bound_before.1).await.unwrap().bound);
    let blocker = signup(app, "acct-blocker", "fresh-blocker").await;
    let a = signup(app, "acct-a", "fresh-a").await;
    let b = signup(app, "acct-b", "fresh-b").await;
    let same_person_as_a = signup(app, "acct-d", "fresh-a").await;
    let seen_before = signup(app, "acct-e", "fresh-before").await;
    // A bind without a session (REQUIRE_SESSION=false here): the account named by the call.
    let c = crate::certify::insert_certified(app, "merchant-c", "fresh-c");

    let held = Held::bind_of(&setup, "acct-blocker").await;
    let asked = app.sandbox.stats().certification_lookups;
    let queued = async {
        tokio::time::sleep(BLOCKER_FIRST).await;
        let first = async {
            tokio::join!(
                redeem(app, &a.0, &a.1),
                redeem(app, &b.0, &b.1),
                app.bind(&c, "acct-c"),
            )
        };
        // Sent once a, b and c are queued: a's bind comes before the one sharing its person.
        let then = async {
            until_looked_up(app, asked, 4).await;
            tokio::join!(
                redeem(app, &same_person_as_a.0, &same_person_as_a.1),
                redeem(app, &seen_before.0, &seen_before.1),
            )
        };
        let ((a_answer, b_answer, c_answer), (d_answer, e_answer)) = tokio::join!(first, then);
        (a_answer, b_answer, c_answer, d_answer, e_answer)
    };
    let release = async {
        // The blocker's lookup and the five queued.
        until_looked_up(app, asked, 6).await;
        held.release().await;
    };
    let (blocked, (a_answer, b_answer, c_answer, d_answer, e_answer), ()) =
        tokio::join!(redeem(app, &blocker.0, &blocker.1), queued, release);
    assert!(blocked.unwrap().bound);

    for answer in [a_answer.unwrap(), b_answer.unwrap(), c_answer.unwrap()] {
        assert!(answer.bound, "{answer:?}");
        assert!(!answer.duplicate.unwrap().duplicate);
    }
    assert_status(d_answer, Code::AlreadyExists, "ALREADY_REGISTERED");
    assert_status(e_answer, Code::AlreadyExists, "ALREADY_REGISTERED");

    // before, blocker, a, b, c: five persons, each bound; five certifications.
    assert_eq!(
        count(app, "SELECT count(*) FROM persons WHERE account_id IS NOT NULL").await,
        5
    );
    assert_eq!(count(app, "SELECT count(*) FROM certifications").await, 5);
    let redeemed = |merchant_uid: &str| {
        format!(
            "SELECT count(*) FROM verification_sessions WHERE merchant_uid = '{merchant_uid}' AND redeemed_id IS NOT NULL AND bound"
        )
    };
    for (session, expected) in [
        (&a.0, 1),
        (&b.0, 1),
        (&same_person_as_a.0, 0),
        (&seen_before.0, 0),
    ] {
        assert_eq!(count(app, &redeemed(session)).await, expected, "{session}");
    }
    // a, b and c written by one statement.
    let together = count(app, crate::records::WRITTEN_TOGETHER).await;
    assert_eq!(together, 3, "the queued signups were not bound together");
}

/// A batch whose insert meets a row another transaction inserted meanwhile, not committed yet,
/// gives up waiting for it and is undone as a whole; each of its binds then takes its own
/// statement, the one that still meets the row takes the long way, and only it is refused.
#[tokio::test]
async fn on_postgres_a_batch_that_loses_a_race_leaves_each_signup_to_its_own_statement() {
    let Some(setup) =
        setup("on_postgres_a_batch_that_loses_a_race_leaves_each_signup_to_its_own_statement").await
    else {
        return;
    };
    let app = &setup.app;
    let blocker = signup(app, "acct-race-blocker", "race-blocker").await;
    let a = signup(app, "acct-race-a", "race-a").await;
    let b = signup(app, "acct-race-b", "race-b").await;
    let c = signup(app, "acct-race-c", "race-c").await;

    let held = Held::bind_of(&setup, "acct-race-blocker").await;
    // Another writer takes acct-race-b for someone else, not yet committed: the batch cannot
    // see it, and its insert of acct-race-b waits for this transaction.
    let rival_db = Database::connect(setup.database_url.as_str()).await.unwrap();
    let rival = rival_db.begin().await.unwrap();
    rival
        .execute_unprepared(
            "INSERT INTO persons (ci_hash, ci_sealed, sealing_key_id, account_id, bound_at, created_at, updated_at) \
             VALUES (repeat('f', 64), 'sealed', 'k', 'acct-race-b', now(), now(), now())",
        )
        .await
        .unwrap();
    let asked = app.sandbox.stats().certification_lookups;
    let queued = async {
        tokio::time::sleep(BLOCKER_FIRST).await;
        tokio::join!(
            redeem(app, &a.0, &a.1),
            redeem(app, &b.0, &b.1),
            redeem(app, &c.0, &c.1),
        )
    };
    let release = async {
        // The blocker's lookup and the three queued.
        until_looked_up(app, asked, 4).await;
        held.release().await;
        // The batch gives up its wait on the rival's insert, and so does acct-race-b's own
        // statement; committed once acct-race-b's transaction (the long way) waits on it.
        until_lock_wait(
            &rival_db,
            "query NOT LIKE '%unnest%' AND query LIKE '%persons%'",
            "acct-race-b's transaction",
        )
        .await;
        rival.commit().await.unwrap();
    };
    let (blocked, (a_answer, b_answer, c_answer), ()) =
        tokio::join!(redeem(app, &blocker.0, &blocker.1), queued, release);
    assert!(blocked.unwrap().bound);

    assert!(a_answer.unwrap().bound);
    assert!(c_answer.unwrap().bound);
    assert_status(b_answer, Code::AlreadyExists, "ACCOUNT_HAS_IDENTITY");
    assert_eq!(count(app, "SELECT count(*) FROM certifications").await, 3);
    // Nothing of the failed batch remains: every certification came from a statement of its own.
    assert_eq!(count(app, crate::records::WRITTEN_TOGETHER).await, 1);
    // The refused signup spent its session, as it would alone, and bound nothing.
    let spent = format!(
        "SELECT count(*) FROM verification_sessions WHERE merchant_uid = '{}' AND redeemed_id IS NOT NULL AND NOT bound",
        b.0
    );
    assert_eq!(count(app, &spent).await, 1);
}

/// A signup whose session row another transaction holds takes the long way and waits there, on
/// a connection of its own: an unrelated signup that queued behind it in the lane is bound
/// while the row is still held. (The lane's statement waited for the row, up to
/// DATABASE_LOCK_TIMEOUT, and every signup behind it waited too.)
#[tokio::test]
async fn on_postgres_a_signup_waiting_on_a_held_row_does_not_hold_up_the_others() {
    let Some(setup) = setup_adjusted(
        "on_postgres_a_signup_waiting_on_a_held_row_does_not_hold_up_the_others",
        |settings| settings.store.lock_timeout = Duration::from_secs(30),
    )
    .await
    else {
        return;
    };
    let app = &setup.app;
    let blocker = signup(app, "acct-held", "held-person").await;
    let unrelated = signup(app, "acct-unrelated", "unrelated-person").await;

    let lock = lock_session(&setup, &blocker.0).await;
    let observer = Database::connect(setup.database_url.as_str()).await.unwrap();
    let unrelated_while_held = async {
        until_lock_wait(&observer, "datname = current_database()", "the held signup").await;
        let answer = tokio::select! {
            answer = redeem(app, &unrelated.0, &unrelated.1) => Some(answer),
            () = tokio::time::sleep(Duration::from_secs(10)) => None,
        };
        lock.commit().await.unwrap();
        answer
    };
    let (blocked, unrelated_answer) = tokio::join!(redeem(app, &blocker.0, &blocker.1), unrelated_while_held);

    let unrelated_answer = unrelated_answer
        .expect("the unrelated signup waited for the held session row")
        .expect("the unrelated signup was not answered while the session row was held");
    assert!(unrelated_answer.bound);
    // Once the row is free, the held signup is bound too.
    assert!(blocked.unwrap().bound);
    assert_eq!(
        count(app, "SELECT count(*) FROM persons WHERE account_id IS NOT NULL").await,
        2
    );
}
