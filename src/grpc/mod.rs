//! The gRPC surface: generated types, the CertificationService handlers, request parsing,
//! response building and the one mapping from errors to gRPC status.

mod auth;
mod convert;
mod deadline;
mod handler;
mod method;
mod permissions;
mod status;

pub use auth::{Authenticator, Caller, CallerTokens, CallerTokensError};
pub use handler::CertificationGrpc;
pub use method::{Method, SERVICE, known_methods};
pub use permissions::{CallerPermissions, CallerPermissionsError};

/// Generated from `proto/certification/v1/certification.proto`.
pub mod proto {
    tonic::include_proto!("certification.v1");

    /// The descriptor set server reflection serves, with the proto's comments kept.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/certification_descriptor.bin"));
}

/// The domain of every `google.rpc.ErrorInfo` this service returns.
pub const ERROR_DOMAIN: &str = "certification.v1";
