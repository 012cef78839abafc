//! The gRPC surface: generated types, the CertificationService handlers, the layers in front of
//! them (authentication, permission, admission, deadline, readiness), request parsing, response
//! building and the one mapping to gRPC status.

mod auth;
mod convert;
mod deadline;
mod handler;
mod layers;
mod status;

pub(crate) use auth::Authenticator;
pub(crate) use handler::CertificationGrpc;
pub(crate) use layers::{Admission, CallSpanLayer, DeadlineLayer, GateLayer, Permission, Readiness};

/// Requests are a few short strings; anything near this is hostile.
pub(crate) const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// CertificationService's fully qualified name.
pub(crate) const SERVICE: &str = "certification.v1.CertificationService";

/// Generated from `proto/certification/v1/certification.proto`.
pub mod proto {
    tonic::include_proto!("certification.v1");

    /// The descriptor set server reflection serves, with the proto's comments kept.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/certification_descriptor.bin"));
}

/// The domain of every `google.rpc.ErrorInfo` this service returns.
pub(crate) const ERROR_DOMAIN: &str = "certification.v1";

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::*;
    use crate::access::Method;

    #[test]
    fn every_rpc_in_the_proto_is_a_method_and_back() {
        let descriptors = FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
        let in_proto: Vec<String> = descriptors
            .file
            .iter()
            .filter(|file| file.package() == "certification.v1")
            .flat_map(|file| &file.service)
            .filter(|service| format!("certification.v1.{}", service.name()) == SERVICE)
            .flat_map(|service| &service.method)
            .map(|method| method.name().to_owned())
            .collect();
        let known: Vec<String> = Method::ALL
            .iter()
            .map(|method| method.as_str().to_owned())
            .collect();
        assert_eq!(in_proto, known);
    }
}
