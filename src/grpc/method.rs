//! The RPCs this server answers, named once: the handlers' spans and the metrics' labels both
//! come from here, and a test checks the list against the proto, so a new RPC cannot be
//! counted as `unknown` unnoticed.

/// CertificationService's fully qualified name.
pub const SERVICE: &str = "certification.v1.CertificationService";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    BeginVerification,
    Verify,
    CheckDuplicate,
    Unlink,
}

impl Method {
    pub const ALL: &'static [Method] = &[
        Method::BeginVerification,
        Method::Verify,
        Method::CheckDuplicate,
        Method::Unlink,
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|method| method.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::BeginVerification => "BeginVerification",
            Method::Verify => "Verify",
            Method::CheckDuplicate => "CheckDuplicate",
            Method::Unlink => "Unlink",
        }
    }
}

/// Every service and method served on the gRPC port, for bounded metric labels.
pub fn known_methods() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (
            SERVICE,
            Method::ALL.iter().map(|method| method.as_str()).collect(),
        ),
        ("grpc.health.v1.Health", vec!["Check", "Watch"]),
        (
            "grpc.reflection.v1.ServerReflection",
            vec!["ServerReflectionInfo"],
        ),
        (
            "grpc.reflection.v1alpha.ServerReflection",
            vec!["ServerReflectionInfo"],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::*;

    #[test]
    fn every_rpc_in_the_proto_is_a_method_and_back() {
        let descriptors = FileDescriptorSet::decode(super::super::proto::FILE_DESCRIPTOR_SET).unwrap();
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
