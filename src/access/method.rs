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
