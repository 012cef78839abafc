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
        // Served only in sandbox mode; listed always, since the list is fixed at build time.
        (crate::sandbox::grpc::SERVICE, vec!["Certify"]),
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

    #[test]
    fn the_sandbox_service_is_known_with_every_rpc_of_its_proto() {
        let descriptors =
            FileDescriptorSet::decode(crate::sandbox::grpc::proto::FILE_DESCRIPTOR_SET).unwrap();
        let in_proto: Vec<(String, Vec<String>)> = descriptors
            .file
            .iter()
            .flat_map(|file| {
                file.service.iter().map(|service| {
                    (
                        format!("{}.{}", file.package(), service.name()),
                        service
                            .method
                            .iter()
                            .map(|method| method.name().to_owned())
                            .collect(),
                    )
                })
            })
            .collect();
        let known: Vec<(String, Vec<String>)> = known_methods()
            .into_iter()
            .filter(|(service, _)| service.starts_with("certification.sandbox."))
            .map(|(service, methods)| {
                (
                    service.to_owned(),
                    methods.into_iter().map(str::to_owned).collect(),
                )
            })
            .collect();
        assert_eq!(in_proto, known);
    }
}
