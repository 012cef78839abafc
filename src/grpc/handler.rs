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
    access::{Caller, CallerPermissions},
    domain::{FieldViolation, VerificationPurpose},
    service::{IdentityService, ServiceError},
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
    /// service, and `respond` with its result.
    async fn unary<In, Command, Output, Out, Run>(
        &self,
        request: Request<In>,
        parse: impl FnOnce(In) -> Result<Command, FieldViolation>,
        run: impl FnOnce(Arc<IdentityService>, Command, Call) -> Run,
        respond: impl FnOnce(Output) -> Out,
    ) -> Result<Response<Out>, Status>
    where
        Run: Future<Output = Result<Output, ServiceError>>,
    {
        let call = Call::of(&request);
        let command = parse(request.into_inner())?;
        // Boxed: the use case's state then lives once, outside this wrapper's own (BENCHMARKS.md,
        // memory per call in flight).
        let output = Box::pin(run(Arc::clone(&self.service), command, call)).await?;
        Ok(Response::new(respond(output)))
    }
}

/// What a call's use case may know about the call: its deadline, and who is calling
/// (`anonymous` without authentication), to whom sessions belong.
pub(crate) struct Call {
    pub(crate) deadline: Instant,
    pub(crate) caller: String,
    /// Whether authentication named the caller (else `caller` is `anonymous`).
    authenticated: bool,
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
        self.unary(
            request,
            convert::session_spec,
            |service, spec, call| async move {
                call.may_begin(permissions.as_deref(), spec.purpose)?;
                service.begin_verification(spec, &call.caller).await
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
            convert::verify_command,
            |service, command, call| async move { service.verify(command, &call.caller, call.deadline).await },
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
            convert::duplicate_key,
            |service, key, call| async move { service.check_duplicate(key, &call.caller, call.deadline).await },
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
            convert::unlink_account,
            |service, account, _call| async move { service.unlink(&account).await },
            convert::unlink_response,
        )
        .await
    }
}
