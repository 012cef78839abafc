//! CertificationService handlers: every RPC reads parse → call → convert. What the transport
//! decides before (authentication, permission, admission, the deadline, readiness) are layers
//! composed in `app` ([`super::layers`]); a use case's error becomes a status in
//! [`super::status`].

use std::{future::Future, sync::Arc};

use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::{
    convert,
    layers::{ANONYMOUS, CallDeadline},
    proto::{self, certification_service_server::CertificationService},
};
use crate::{
    access::{Caller, CallerPermissions, Method},
    audit::{Accessor, Actor, Fate, OUTCOME_OK, Subject, Work},
    domain::{FieldViolation, VerificationPurpose},
    service::{DEADLINE_EXCEEDED, IdentityService, ServiceError},
};

pub(crate) struct CertificationGrpc {
    service: Arc<IdentityService>,
    /// CALLER_PERMISSIONS, for the purposes a caller may begin (the layers checked its methods
    /// before the request was read); None: no caller authentication.
    permissions: Option<Arc<CallerPermissions>>,
}

impl CertificationGrpc {
    pub(crate) fn new(service: Arc<IdentityService>, permissions: Option<Arc<CallerPermissions>>) -> Self {
        Self { service, permissions }
    }

    /// The one path of every RPC: `parse` the request into a command, `run` it against the
    /// service, leave the call's access record where it did `work` on personal data (none:
    /// it touched none), and `respond` with its result. A record that cannot be written
    /// fails the call: nothing is answered without its record.
    async fn unary<In, Command, Output, Out, Run>(
        &self,
        request: Request<In>,
        (method, work): (Method, Option<Work>),
        parse: impl FnOnce(In) -> Result<Command, FieldViolation>,
        run: impl FnOnce(Arc<IdentityService>, Command, Call) -> Run,
        respond: impl FnOnce(Output) -> Out,
    ) -> Result<Response<Out>, Status>
    where
        Run: Future<Output = Result<Output, ServiceError>>,
    {
        let call = Call::of(&request);
        let (accessor, actor) = accessor_of(&request, &call, method);
        let recording = work.map(|work| {
            call.subject.keeps(accessor, work);
            Recording {
                armed: Some((Arc::clone(&self.service), Arc::clone(&call.subject))),
                deadline: call.deadline,
            }
        });
        let outcome = async {
            actor?;
            let command = parse(request.into_inner())?;
            // Boxed: the use case's state then lives once, outside this wrapper's own
            // (BENCHMARKS.md, memory per call in flight).
            Box::pin(run(Arc::clone(&self.service), command, call)).await
        }
        .await;
        if let Some(recording) = recording {
            Box::pin(recording.finish(outcome.as_ref().err())).await?;
        }
        Ok(Response::new(respond(outcome?)))
    }
}

/// A call's access record, from the call's start to its answer. An answer that discloses or
/// changes something (OK, or a refusal about the person or the request) waits for its record;
/// an outage or a time-out, which discloses nothing, does not (its record is written all the
/// same). A record the call's own statement wrote ([`Fate::Written`]) is not written again. A
/// call dropped before its end (its deadline passed, its caller went) is recorded as such when
/// it is dropped, unless a statement of its writes, left to finish, wrote its record.
struct Recording {
    armed: Option<(Arc<IdentityService>, Arc<Subject>)>,
    deadline: Instant,
}

impl Recording {
    async fn finish(mut self, error: Option<&ServiceError>) -> Result<(), ServiceError> {
        let Some((service, subject)) = self.armed.take() else {
            return Ok(());
        };
        if subject.fate() == Fate::Written {
            return Ok(());
        }
        let Some(record) = subject.record(error.map_or(OUTCOME_OK, ServiceError::reason)) else {
            return Ok(());
        };
        match error {
            Some(error) if !error.is_refusal() => {
                tokio::spawn(async move { service.record_access(record).await });
                Ok(())
            }
            _ => service.record_access(record).await,
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Some((service, subject)) = self.armed.take() {
            let outcome = if Instant::now() >= self.deadline {
                DEADLINE_EXCEEDED
            } else {
                CANCELLED
            };
            tokio::spawn(async move {
                if subject.settled().await == Fate::Open
                    && let Some(record) = subject.record(outcome)
                {
                    let _ = service.record_access(record).await;
                }
            });
        }
    }
}

/// The outcome recorded of a call its caller gave up before its end.
const CANCELLED: &str = "CANCELLED";

/// Who is calling, for whom, from where: the access record's side of the call. `x-actor`, when
/// sent, must be a plain name; an unusable one refuses the call (its record names no actor).
fn accessor_of<T>(request: &Request<T>, call: &Call, method: Method) -> (Accessor, Result<(), ServiceError>) {
    let actor = match request.metadata().get(ACTOR_HEADER) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .map_or_else(|| Err(Actor::invalid()), |text| Actor::parse(text).map(Some)),
    };
    let accessor = Accessor {
        caller: call.caller.clone(),
        actor: actor.clone().ok().flatten(),
        peer: request.remote_addr().map(|peer| peer.ip().to_string()),
        method: method.as_str(),
        trace_id: crate::telemetry::tracing_context::current_trace_id(),
    };
    (accessor, actor.map(|_| ()).map_err(ServiceError::from))
}

/// The metadata naming the person a caller acts for.
const ACTOR_HEADER: &str = "x-actor";

/// What a call's use case may know about the call: its deadline, and who is calling
/// (`anonymous` without authentication), to whom sessions belong; and whose data it touches,
/// which the use case fills in for the call's access record.
pub(crate) struct Call {
    pub(crate) deadline: Instant,
    pub(crate) caller: String,
    /// Whether authentication named the caller (else `caller` is `anonymous`).
    authenticated: bool,
    pub(crate) subject: Arc<Subject>,
}

impl Call {
    fn of<T>(request: &Request<T>) -> Self {
        let extensions = request.extensions();
        let caller = extensions.get::<Caller>();
        Self {
            // Always set by the deadline layer; without it the call has no time at all.
            deadline: extensions
                .get::<CallDeadline>()
                .map_or_else(Instant::now, |deadline| deadline.0),
            caller: caller.map_or_else(|| ANONYMOUS.to_owned(), |caller| caller.0.clone()),
            authenticated: caller.is_some(),
            subject: Arc::new(Subject::default()),
        }
    }

    /// PURPOSE_NOT_ALLOWED unless CALLER_PERMISSIONS lets this caller begin `purpose` sessions.
    fn may_begin(
        &self,
        permissions: Option<&CallerPermissions>,
        purpose: VerificationPurpose,
    ) -> Result<(), ServiceError> {
        let caller = self.authenticated.then_some(self.caller.as_str());
        match permissions {
            Some(permissions) if !permissions.may_begin(caller, purpose) => {
                Err(ServiceError::PurposeNotAllowed { purpose })
            }
            _ => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl CertificationService for CertificationGrpc {
    async fn begin_verification(
        &self,
        request: Request<proto::BeginVerificationRequest>,
    ) -> Result<Response<proto::BeginVerificationResponse>, Status> {
        let permissions = self.permissions.clone();
        // A session that expects a person keeps personal data; one without touches none.
        let work = request.get_ref().expected.is_some().then_some(Work::Entry);
        self.unary(
            request,
            (Method::BeginVerification, work),
            convert::session_spec,
            |service, spec, call| async move {
                call.may_begin(permissions.as_deref(), spec.purpose)?;
                service
                    .begin_verification(spec, &call.caller, &call.subject)
                    .await
            },
            convert::begin_response,
        )
        .await
    }

    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        self.unary(
            request,
            (Method::Verify, Some(Work::Lookup)),
            convert::verify_command,
            |service, command, call| async move {
                service
                    .verify(command, &call.caller, call.deadline, &call.subject)
                    .await
            },
            convert::verify_response,
        )
        .await
    }

    async fn check_duplicate(
        &self,
        request: Request<proto::CheckDuplicateRequest>,
    ) -> Result<Response<proto::CheckDuplicateResponse>, Status> {
        self.unary(
            request,
            (Method::CheckDuplicate, Some(Work::Lookup)),
            convert::duplicate_key,
            |service, key, call| async move {
                service
                    .check_duplicate(key, &call.caller, call.deadline, &call.subject)
                    .await
            },
            |holder| convert::duplicate_status(holder.as_ref()),
        )
        .await
    }

    async fn unlink(
        &self,
        request: Request<proto::UnlinkRequest>,
    ) -> Result<Response<proto::UnlinkResponse>, Status> {
        self.unary(
            request,
            (Method::Unlink, Some(Work::Deletion)),
            convert::unlink_account,
            |service, account, call| async move { service.unlink(&account, &call.subject).await },
            convert::unlink_response,
        )
        .await
    }
}
