//! The database connections, shared by the hot statements (kept between statements: a
//! Verify's record, the one-statement signup, a session's read, lookups by CI) and the pool's
//! own (BeginVerification, Unlink, transactions). With two connections and a short acquire
//! time-out, a statement of the pool's own that had to wait for the kept ones would time out.

use std::time::{Duration, Instant};

use certification_service::{
    grpc::proto::{
        BeginVerificationRequest, CheckDuplicateRequest, Purpose, UnlinkRequest, VerifyRequest,
        check_duplicate_request::Key,
    },
    sandbox::identities::ci_for,
};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::{
    certify::insert_certified,
    helpers::{App, TestApp},
    sessions::{begin_with, sessions_on},
};

/// What one kind of call did until the deadline.
#[derive(Default, Debug)]
struct Calls {
    answered: usize,
    failures: Vec<(Code, String)>,
}

impl Calls {
    fn record<T>(&mut self, result: Result<T, Status>) -> Option<T> {
        match result {
            Ok(answer) => {
                self.answered += 1;
                Some(answer)
            }
            Err(status) => {
                let reason = status
                    .get_error_details()
                    .error_info()
                    .map(|info| info.reason.clone())
                    .unwrap_or_default();
                self.failures.push((status.code(), reason));
                None
            }
        }
    }
}

fn timed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(Duration::from_secs(5));
    request
}

/// The whole signup: BeginVerification (the pool's), the browser certifies, Verify redeems the
/// session and binds a new person (hot), then Unlink (the pool's) every other time.
async fn signups(app: &TestApp, caller: usize, stop_at: Instant) -> (Calls, Calls, Calls) {
    let (mut begun, mut verified, mut unlinked) = (Calls::default(), Calls::default(), Calls::default());
    let mut n = 0;
    while Instant::now() < stop_at {
        n += 1;
        let account = format!("acct-conn-{caller}-{n}");
        let begin = BeginVerificationRequest {
            purpose: Purpose::Signup.into(),
            account_id: Some(account.clone()),
            ..Default::default()
        };
        let Some(session) = begun.record(begin_with(app, begin).await) else {
            continue;
        };
        let imp_uid = insert_certified(app, &session.merchant_uid, &format!("conn-{caller}-{n}"));
        let verify = VerifyRequest {
            imp_uid,
            merchant_uid: session.merchant_uid,
            ..Default::default()
        };
        let Some(answer) = verified.record(app.client.clone().verify(timed(verify)).await) else {
            continue;
        };
        assert!(answer.into_inner().bound, "a new person binds");
        if n % 2 == 0 {
            let unlink = UnlinkRequest { account_id: account };
            unlinked.record(app.client.clone().unlink(timed(unlink)).await);
        }
    }
    (begun, verified, unlinked)
}

async fn lookups(app: &TestApp, caller: usize, stop_at: Instant) -> Calls {
    let mut looked_up = Calls::default();
    while Instant::now() < stop_at {
        let key = Key::Ci(ci_for(&format!("conn-{caller}-1")));
        let request = timed(CheckDuplicateRequest {
            key: Some(key),
            ..Default::default()
        });
        looked_up.record(app.client.clone().check_duplicate(request).await);
    }
    looked_up
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_connections_serve_kept_and_pooled_statements_together_without_waiting_out_time() {
    let app = App::new()
        .adjust(|settings| {
            sessions_on(settings);
            settings.store.max_connections = 2;
            settings.store.acquire_timeout = Duration::from_millis(500);
        })
        .spawn()
        .await;
    let stop_at = Instant::now() + Duration::from_secs(3);
    let (signed_up, looked_up) = tokio::join!(
        futures::future::join_all((0..6).map(|caller| signups(&app, caller, stop_at))),
        futures::future::join_all((0..3).map(|caller| lookups(&app, caller, stop_at))),
    );

    let mut totals: [Calls; 4] = Default::default();
    for (begun, verified, unlinked) in signed_up {
        for (total, calls) in totals.iter_mut().zip([begun, verified, unlinked]) {
            total.answered += calls.answered;
            total.failures.extend(calls.failures);
        }
    }
    for calls in looked_up {
        totals[3].answered += calls.answered;
        totals[3].failures.extend(calls.failures);
    }
    for (kind, calls) in ["BeginVerification", "Verify", "Unlink", "CheckDuplicate"]
        .iter()
        .zip(&totals)
    {
        assert!(calls.failures.is_empty(), "{kind}: {:?}", calls.failures);
        assert!(
            calls.answered >= 5,
            "{kind} answered only {} times",
            calls.answered
        );
    }
}
