//! `certification.sandbox.v1.Sandbox`: the sandbox plays the browser over gRPC. Registered only
//! in sandbox mode (`Application::with_sandbox`).

use tonic::{Request, Response, Status};

use self::proto::{CertifyRequest, CertifyResponse, sandbox_server::Sandbox as SandboxService};
use super::{
    SandboxHandle,
    merchants::Owner,
    people::Person,
    v2::{ChannelType, IdentifierForm, MAX_IDENTITY_VERIFICATION_ID_CHARS},
};
use crate::domain::FieldViolation;

/// Generated from `proto/certification/sandbox/v1/sandbox.proto`.
pub mod proto {
    tonic::include_proto!("certification.sandbox.v1");

    /// The descriptor set reflection serves in sandbox mode, with the proto's comments kept.
    pub(crate) const FILE_DESCRIPTOR_SET: &[u8] =
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
pub(crate) struct SandboxGrpc {
    sandbox: SandboxHandle,
}

impl SandboxGrpc {
    pub(crate) fn new(sandbox: SandboxHandle) -> Self {
        Self { sandbox }
    }
}

/// A Certify request that passed validation.
struct CertifyCommand {
    target: Target,
    person: Person,
    person_key: Option<String>,
    certified_seconds_ago: u32,
}

/// What the "browser" completes: a V1 certification or a V2 identity verification.
enum Target {
    V1 {
        merchant_uid: String,
        tier: Option<String>,
    },
    V2 {
        id: String,
        channel: ChannelType,
        identifier_form: IdentifierForm,
    },
}

#[tonic::async_trait]
impl SandboxService for SandboxGrpc {
    #[tracing::instrument(skip_all, fields(rpc.method = "Certify"))]
    async fn certify(&self, request: Request<CertifyRequest>) -> Result<Response<CertifyResponse>, Status> {
        let command = parse(request.into_inner()).map_err(invalid)?;
        let person_key = command.person_key.as_deref();
        let seconds_ago = command.certified_seconds_ago;
        let response = match command.target {
            Target::V1 { merchant_uid, tier } => {
                let owner = tier.as_deref().map_or_else(Owner::main, Owner::tier);
                let imp_uid = self
                    .sandbox
                    .certify_as(owner, command.person, &merchant_uid, person_key, seconds_ago)
                    .map_err(|_| invalid(tier_violation()))?;
                tracing::info!(%imp_uid, person = ?command.person, "sandbox certification completed");
                CertifyResponse {
                    imp_uid,
                    merchant_uid,
                    ..CertifyResponse::default()
                }
            }
            Target::V2 {
                id,
                channel,
                identifier_form,
            } => {
                self.sandbox
                    .certify_identity_verification(
                        command.person,
                        &id,
                        person_key,
                        seconds_ago,
                        channel,
                        identifier_form,
                    )
                    .map_err(|_| {
                        invalid(FieldViolation::new(
                            "identity_verification_id",
                            "INVALID_IDENTITY_VERIFICATION_ID",
                            "already VERIFIED: an identity verification id succeeds only once",
                        ))
                    })?;
                tracing::info!(person = ?command.person, "sandbox identity verification completed");
                CertifyResponse {
                    identity_verification_id: id,
                    ..CertifyResponse::default()
                }
            }
        };
        Ok(Response::new(response))
    }
}

/// The service's mapping: ErrorInfo plus BadRequest, like every INVALID_ARGUMENT.
fn invalid(violation: FieldViolation) -> Status {
    Status::from(violation)
}

fn tier_violation() -> FieldViolation {
    FieldViolation::new(
        "tier",
        "INVALID_TIER",
        "the sandbox's sub-merchant code (T01 unless configured otherwise), V1 only",
    )
}

fn parse(request: CertifyRequest) -> Result<CertifyCommand, FieldViolation> {
    let identifier_form =
        identifier_form_of(request.identifier_form).ok_or_else(identifier_form_violation)?;
    let target = if request.identity_verification_id.is_empty() {
        if identifier_form != IdentifierForm::Standard {
            return Err(identifier_form_violation());
        }
        parse_v1(request.merchant_uid, request.tier)?
    } else {
        if !request.merchant_uid.is_empty() || request.tier.is_some() {
            return Err(FieldViolation::new(
                "identity_verification_id",
                "INVALID_IDENTITY_VERIFICATION_ID",
                "exactly one of merchant_uid (V1) and identity_verification_id (V2); tier is V1 only",
            ));
        }
        parse_v2(request.identity_verification_id, request.channel, identifier_form)?
    };
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
        target,
        person,
        person_key: request.person_key,
        certified_seconds_ago,
    })
}

fn parse_v1(merchant_uid: String, tier: Option<String>) -> Result<Target, FieldViolation> {
    if merchant_uid.is_empty()
        || merchant_uid.len() > MAX_MERCHANT_UID_BYTES
        || merchant_uid.chars().any(char::is_control)
    {
        return Err(FieldViolation::new(
            "merchant_uid",
            "INVALID_MERCHANT_UID",
            "required: 1 to 256 bytes without control characters (or identity_verification_id)",
        ));
    }
    // PortOne's sub-merchant codes are 3 characters; whether it is the configured one is checked
    // against the running sandbox.
    if let Some(code) = &tier
        && !(code.len() == 3 && code.bytes().all(|byte| byte.is_ascii_alphanumeric()))
    {
        return Err(tier_violation());
    }
    Ok(Target::V1 { merchant_uid, tier })
}

fn parse_v2(id: String, channel: i32, identifier_form: IdentifierForm) -> Result<Target, FieldViolation> {
    // A `/` could never be looked up: it would split the path.
    if id.chars().count() > MAX_IDENTITY_VERIFICATION_ID_CHARS
        || id.chars().any(|c| c.is_control() || c == '/')
    {
        return Err(FieldViolation::new(
            "identity_verification_id",
            "INVALID_IDENTITY_VERIFICATION_ID",
            "1 to 200 characters without control characters or '/'",
        ));
    }
    let channel = match proto::ChannelType::try_from(channel) {
        Ok(proto::ChannelType::Unspecified | proto::ChannelType::Live) => ChannelType::Live,
        Ok(proto::ChannelType::Test) => ChannelType::Test,
        Err(_) => {
            return Err(FieldViolation::new(
                "channel",
                "INVALID_CHANNEL",
                "one of the ChannelType values",
            ));
        }
    };
    Ok(Target::V2 {
        id,
        channel,
        identifier_form,
    })
}

/// The wire's form, or `None` for values this build does not know.
fn identifier_form_of(wire: i32) -> Option<IdentifierForm> {
    use proto::IdentifierForm as Wire;
    match Wire::try_from(wire).ok()? {
        Wire::Unspecified | Wire::Standard => Some(IdentifierForm::Standard),
        Wire::UrlSafeUnpadded => Some(IdentifierForm::UrlSafeUnpadded),
    }
}

fn identifier_form_violation() -> FieldViolation {
    FieldViolation::new(
        "identifier_form",
        "INVALID_IDENTIFIER_FORM",
        "one of the IdentifierForm values, V2 only: V1's unique_key is always standard base64",
    )
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
        Wire::BornBefore1970 => Some(Person::BornBefore1970),
        Wire::Kcp => Some(Person::Kcp),
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
        for wire in 1..=11 {
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
    fn exactly_one_of_merchant_uid_and_identity_verification_id() {
        let v2 = |id: &str| CertifyRequest {
            identity_verification_id: id.to_owned(),
            ..request("", proto::Person::Adult)
        };
        assert!(parse(v2("iv-1")).is_ok());
        assert!(parse(v2(&"i".repeat(200))).is_ok());
        for bad in ["a/b", "a\nb", &"i".repeat(201)] {
            assert_eq!(reason(v2(bad)), "INVALID_IDENTITY_VERIFICATION_ID", "{bad:?}");
        }
        let both = CertifyRequest {
            merchant_uid: "m-1".to_owned(),
            ..v2("iv-1")
        };
        assert_eq!(reason(both), "INVALID_IDENTITY_VERIFICATION_ID");
        let with_tier = CertifyRequest {
            tier: Some("T01".to_owned()),
            ..v2("iv-1")
        };
        assert_eq!(reason(with_tier), "INVALID_IDENTITY_VERIFICATION_ID");
        assert_eq!(reason(request("", proto::Person::Adult)), "INVALID_MERCHANT_UID");
        let channel = |value: i32| CertifyRequest {
            channel: value,
            ..v2("iv-1")
        };
        assert!(parse(channel(2)).is_ok());
        assert_eq!(reason(channel(9)), "INVALID_CHANNEL");
        let form = |request: CertifyRequest, value: i32| CertifyRequest {
            identifier_form: value,
            ..request
        };
        assert!(parse(form(v2("iv-1"), 2)).is_ok());
        assert_eq!(reason(form(v2("iv-1"), 9)), "INVALID_IDENTIFIER_FORM");
        assert!(parse(form(request("m-1", proto::Person::Adult), 1)).is_ok());
        assert_eq!(
            reason(form(request("m-1", proto::Person::Adult), 2)),
            "INVALID_IDENTIFIER_FORM"
        );
        let tier = |code: &str| CertifyRequest {
            tier: Some(code.to_owned()),
            ..request("m-1", proto::Person::Adult)
        };
        assert!(parse(tier("T01")).is_ok());
        for bad in ["", "T1", "T001", "T-1"] {
            assert_eq!(reason(tier(bad)), "INVALID_TIER", "{bad:?}");
        }
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
