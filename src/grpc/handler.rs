//! CertificationService handlers: parse, run within the deadline, convert.

use std::{sync::Arc, time::Duration};

use tokio::time::timeout_at;
use tonic::{Request, Response, Status};

use super::{
    convert,
    deadline::deadline,
    proto::{self, certification_service_server::CertificationService},
};
use crate::{error::ServiceError, service::IdentityService};

pub struct CertificationGrpc {
    service: Arc<IdentityService>,
    /// Bounds a call whose caller set no deadline.
    default_timeout: Duration,
}

impl CertificationGrpc {
    pub fn new(service: Arc<IdentityService>, default_timeout: Duration) -> Self {
        Self {
            service,
            default_timeout,
        }
    }
}

#[tonic::async_trait]
impl CertificationService for CertificationGrpc {
    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let deadline = deadline(request.metadata(), self.default_timeout);
        let command = convert::verify_command(request.into_inner()).map_err(ServiceError::from)?;
        let verified = timeout_at(deadline, self.service.verify(command, deadline))
            .await
            .map_err(|_| ServiceError::DeadlineExceeded)??;
        Ok(Response::new(convert::verify_response(verified)))
    }

    async fn check_duplicate(
        &self,
        request: Request<proto::CheckDuplicateRequest>,
    ) -> Result<Response<proto::CheckDuplicateResponse>, Status> {
        let deadline = deadline(request.metadata(), self.default_timeout);
        let key = convert::duplicate_key(request.into_inner()).map_err(ServiceError::from)?;
        let holder = timeout_at(deadline, self.service.check_duplicate(key, deadline))
            .await
            .map_err(|_| ServiceError::DeadlineExceeded)??;
        Ok(Response::new(convert::duplicate_status(holder.as_ref())))
    }
}
