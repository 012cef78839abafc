//! `certification.sandbox.v1.Sandbox`: the sandbox plays the browser over gRPC. Registered only
//! in sandbox mode ([`crate::app::Application::with_sandbox`]).

use tonic::{Request, Response, Status};

use self::proto::{CertifyRequest, CertifyResponse, sandbox_server::Sandbox as SandboxService};
use super::{SandboxHandle, people::Person};
use crate::{domain::FieldViolation, error::ServiceError};

/// Generated from `proto/certification/sandbox/v1/sandbox.proto`.
pub mod proto {
    tonic::include_proto!("certification.sandbox.v1");

    /// The descriptor set reflection serves in sandbox mode, with the proto's comments kept.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/sandbox_descriptor.bin"));
}

/// The service's fully qualified name.
pub const SERVICE: &str = "certification.sandbox.v1.Sandbox";

/// PortOne's limit on a merchant_uid, in bytes.
const MAX_MERCHANT_UID_BYTES: usize = 256;
const MAX_PERSON_KEY_CHARS: usize = 64;
/// A day: older certifications are of no use to a caller, every policy refuses them.
const MAX_CERTIFIED_SECONDS_AGO: u32 = 86_400;

/// The Sandbox service over a running sandbox.
#[derive(Clone)]
pub struct SandboxGrpc {
    sandbox: SandboxHandle,
}

impl SandboxGrpc {
    pub fn new(sandbox: SandboxHandle) -> Self {
        Self { sandbox }
    }
}

/// A Certify request that passed validation.
struct CertifyCommand {
    merchant_uid: String,
    person: Person,
    person_key: Option<String>,
    certified_seconds_ago: u32,
}

#[tonic::async_trait]
impl SandboxService for SandboxGrpc {
    #[tracing::instrument(skip_all, fields(rpc.method = "Certify"))]
    async fn certify(&self, request: Request<CertifyRequest>) -> Result<Response<CertifyResponse>, Status> {
        // The service's own mapping: ErrorInfo plus BadRequest, like every INVALID_ARGUMENT.
        let command =
            parse(request.into_inner()).map_err(|violation| Status::from(ServiceError::from(violation)))?;
        let imp_uid = self.sandbox.certify(
            command.person,
            &command.merchant_uid,
            command.person_key.as_deref(),
            command.certified_seconds_ago,
        );
        tracing::info!(%imp_uid, person = ?command.person, "sandbox certification completed");
        Ok(Response::new(CertifyResponse {
            imp_uid,
            merchant_uid: command.merchant_uid,
        }))
    }
}

fn parse(request: CertifyRequest) -> Result<CertifyCommand, FieldViolation> {
    let merchant_uid = request.merchant_uid;
    if merchant_uid.is_empty()
        || merchant_uid.len() > MAX_MERCHANT_UID_BYTES
        || merchant_uid.chars().any(char::is_control)
    {
        return Err(FieldViolation::new(
            "merchant_uid",
            "INVALID_MERCHANT_UID",
            "required: 1 to 256 bytes without control characters",
        ));
    }
    let person = person_of(request.person).ok_or_else(|| {
        FieldViolation::new(
            "person",
            "INVALID_PERSON",
            "required: one of the Person values other than PERSON_UNSPECIFIED",
        )
    })?;
    if let Some(key) = &request.person_key {
        let well_formed = (1..=MAX_PERSON_KEY_CHARS).contains(&key.len())
            && key
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
        if !well_formed {
            return Err(FieldViolation::new(
                "person_key",
                "INVALID_PERSON_KEY",
                "1 to 64 characters of [A-Za-z0-9._-]",
            ));
        }
    }
    let certified_seconds_ago = request.certified_seconds_ago.unwrap_or(0);
    if certified_seconds_ago > MAX_CERTIFIED_SECONDS_AGO {
        return Err(FieldViolation::new(
            "certified_seconds_ago",
            "INVALID_CERTIFIED_SECONDS_AGO",
            "at most 86400 (a day)",
        ));
    }
    Ok(CertifyCommand {
        merchant_uid,
        person,
        person_key: request.person_key,
        certified_seconds_ago,
    })
}

/// The wire's person, or `None` for PERSON_UNSPECIFIED and values this build does not know.
fn person_of(wire: i32) -> Option<Person> {
    use proto::Person as Wire;
    match Wire::try_from(wire).ok()? {
        Wire::Unspecified => None,
        Wire::Adult => Some(Person::Adult),
        Wire::Minor => Some(Person::Minor),
        Wire::Foreigner => Some(Person::Foreigner),
        Wire::NoPhone => Some(Person::NoPhone),
        Wire::Inicis => Some(Person::Inicis),
        Wire::NoCi => Some(Person::NoCi),
        Wire::NotCertified => Some(Person::NotCertified),
        Wire::Turns19Today => Some(Person::Turns19Today),
        Wire::Turns19Tomorrow => Some(Person::Turns19Tomorrow),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(merchant_uid: &str, person: proto::Person) -> CertifyRequest {
        CertifyRequest {
            merchant_uid: merchant_uid.to_owned(),
            person: person as i32,
            ..CertifyRequest::default()
        }
    }

    fn reason(request: CertifyRequest) -> &'static str {
        parse(request).err().expect("refused").reason
    }

    #[test]
    fn every_wire_person_but_unspecified_is_a_person() {
        for wire in 1..=9 {
            assert!(person_of(wire).is_some(), "{wire}");
        }
        assert_eq!(person_of(0), None);
        assert_eq!(person_of(99), None);
    }

    #[test]
    fn merchant_uid_is_bounded_and_printable() {
        assert!(parse(request(&"m".repeat(256), proto::Person::Adult)).is_ok());
        for bad in ["", "a\nb", "\u{7f}", &"m".repeat(257)] {
            assert_eq!(
                reason(request(bad, proto::Person::Adult)),
                "INVALID_MERCHANT_UID",
                "{bad:?}"
            );
        }
        // Multibyte counts in bytes: 86 three-byte characters are 258 bytes.
        assert_eq!(
            reason(request(&"가".repeat(86), proto::Person::Adult)),
            "INVALID_MERCHANT_UID"
        );
    }

    #[test]
    fn person_key_and_age_of_certification_are_checked() {
        let with_key = |key: &str| CertifyRequest {
            person_key: Some(key.to_owned()),
            ..request("m-1", proto::Person::Adult)
        };
        assert!(parse(with_key("user-1.a_B")).is_ok());
        assert!(parse(with_key(&"k".repeat(64))).is_ok());
        for bad in ["", "a b", "키", "a/b", &"k".repeat(65)] {
            assert_eq!(reason(with_key(bad)), "INVALID_PERSON_KEY", "{bad:?}");
        }
        let seconds_ago = |seconds: u32| CertifyRequest {
            certified_seconds_ago: Some(seconds),
            ..request("m-1", proto::Person::Adult)
        };
        assert!(parse(seconds_ago(86_400)).is_ok());
        assert_eq!(reason(seconds_ago(86_401)), "INVALID_CERTIFIED_SECONDS_AGO");
        assert_eq!(
            reason(request("m-1", proto::Person::Unspecified)),
            "INVALID_PERSON"
        );
    }
}
