//! CertificationService's RPCs, named once: CALLER_PERMISSIONS names them, the handlers' spans
//! and the metrics' labels come from here, and a test in `grpc` checks the list against the
//! proto, so a new RPC cannot be counted as `unknown` unnoticed.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    BeginVerification,
    Verify,
    CheckDuplicate,
    Unlink,
}

impl Method {
    pub(crate) const ALL: &'static [Method] = &[
        Method::BeginVerification,
        Method::Verify,
        Method::CheckDuplicate,
        Method::Unlink,
    ];

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|method| method.as_str() == name)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::BeginVerification => "BeginVerification",
            Method::Verify => "Verify",
            Method::CheckDuplicate => "CheckDuplicate",
            Method::Unlink => "Unlink",
        }
    }
}

/// What a CALLER_PERMISSIONS item grants: a CertificationService method, or the sandbox's
/// `Sandbox/Certify` (served only in sandbox mode, and it mints identities: never implied by a
/// CertificationService method).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rpc {
    Certification(Method),
    SandboxCertify,
}

impl Rpc {
    const SANDBOX_CERTIFY: &'static str = "Sandbox/Certify";

    /// The item's name in CALLER_PERMISSIONS, and the `method` of a METHOD_NOT_ALLOWED.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        if name == Self::SANDBOX_CERTIFY {
            return Some(Self::SandboxCertify);
        }
        Method::from_name(name).map(Self::Certification)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Certification(method) => method.as_str(),
            Self::SandboxCertify => Self::SANDBOX_CERTIFY,
        }
    }

    /// Every name an item may use, for an error message.
    pub(crate) fn known() -> String {
        Method::ALL
            .iter()
            .map(|method| method.as_str())
            .chain([Self::SANDBOX_CERTIFY])
            .collect::<Vec<_>>()
            .join(", ")
    }
}
