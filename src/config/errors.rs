//! Configuration problems: each names its setting and what to set, in one line; all of them are
//! collected and reported together.

use std::fmt;

use crate::{
    access::{CallerPermissionsError, CallerTokensError},
    audit::AuditKeyError,
    domain::{IndexKeyError, SealingError},
    quota::CallerLimitsError,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "PortOne credentials missing: set PORTONE_IMP_KEY and PORTONE_IMP_SECRET (V1), PORTONE_V2_API_SECRET (V2), or both; or run `serve --sandbox` for development"
    )]
    MissingPortoneCredentials,
    #[error("PORTONE_IMP_KEY and PORTONE_IMP_SECRET go together: set both or neither")]
    HalfPortoneCredentials,
    #[error(
        "PORTONE_DELETE_AFTER deletes V1 certifications and needs V1 credentials (PORTONE_IMP_KEY, PORTONE_IMP_SECRET): V2 has no delete endpoint"
    )]
    DeleteWithoutV1,
    #[error("PORTONE_TIER must be 3 ASCII letters or digits")]
    Tier,
    #[error("{0} must be 1 to 128 printable ASCII characters")]
    PortoneIdentifier(&'static str),
    #[error(
        "CI_INDEX_KEY missing: set it to a base64 key of at least 32 bytes (e.g. `openssl rand -base64 32`), or run `serve --sandbox` for development"
    )]
    MissingIndexKey,
    #[error(transparent)]
    IndexKey(#[from] IndexKeyError),
    #[error(
        "CI_ENCRYPTION_KEYS missing: set it to `id:base64key` (32-byte key, e.g. `k1:$(openssl rand -base64 32)`), or run `serve --sandbox` for development"
    )]
    MissingEncryptionKeys,
    #[error(transparent)]
    EncryptionKeys(#[from] SealingError),
    #[error(
        "AUDIT_KEY missing: set it to a base64 key of at least 32 bytes (e.g. `openssl rand -base64 32`), the key of the access records' MACs and person pseudonyms; or run `serve --sandbox` for development"
    )]
    MissingAuditKey,
    #[error(transparent)]
    AuditKey(#[from] AuditKeyError),
    #[error(transparent)]
    CallerTokens(#[from] CallerTokensError),
    #[error("reading CALLER_TOKENS_FILE {0}: {1}")]
    CallerTokensFile(String, String),
    #[error("set CALLER_TOKENS or CALLER_TOKENS_FILE, not both")]
    CallerTokensTwice,
    #[error("TLS_CERT_FILE and TLS_KEY_FILE go together; TLS_CLIENT_CA_FILE needs both")]
    TlsIncomplete,
    #[error("reading {0}: {1}")]
    TlsFile(String, String),
    #[error("PORTONE_BASE_URL {0}")]
    BaseUrl(&'static str),
    #[error(transparent)]
    CallerPermissions(#[from] CallerPermissionsError),
    #[error(
        "CALLER_PERMISSIONS names the caller {0:?}, which CALLER_TOKENS does not: a misspelt name would grant nothing to the caller meant"
    )]
    UnknownCaller(String),
    #[error(transparent)]
    CallerLimits(#[from] CallerLimitsError),
    #[error(
        "CALLER_LIMITS names the caller {0:?}, which CALLER_TOKENS does not: a misspelt name would bound nothing"
    )]
    UnknownLimitedCaller(String),
    #[error(
        "CALLER_PERMISSIONS missing: with callers authenticated, say what each may call (e.g. `signup=BeginVerification:SIGNUP+Verify+CheckDuplicate,deletion=Unlink`), or CALLER_PERMISSIONS=* to let every caller call every method"
    )]
    PermissionsUndecided,
    #[error(
        "no caller authentication: set CALLER_TOKENS (or CALLER_TOKENS_FILE) or TLS_CLIENT_CA_FILE; ALLOW_UNAUTHENTICATED=true lets anyone who reaches the port call"
    )]
    NoAuthentication,
    #[error("{0} must be between {1} and {2}")]
    Duration(&'static str, String, String),
    #[error("{0}")]
    OutOfRange(&'static str),
    #[error("METRICS_LISTEN_ADDR must be host:port or `off`")]
    MetricsAddr,
    /// `--sandbox` beside a sign of production: the setting's name and what it signals, never
    /// its value.
    #[error(
        "--sandbox refuses {0} ({1}): the sandbox is for development; set SANDBOX_ALLOW_EXTERNAL=true to run it beside external systems anyway"
    )]
    SandboxExternal(&'static str, &'static str),
    #[error(
        "--sandbox: this binary is built without the sandbox (the runtime image); callers' tests use the sandbox image (`--target sandbox`), development `cargo run -- serve --sandbox`"
    )]
    SandboxNotBuilt,
}

/// Every problem found in one configuration; at least one.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [only] = self.0.as_slice() {
            return write!(f, "{only}");
        }
        write!(f, "{} configuration problems:", self.0.len())?;
        for error in &self.0 {
            write!(f, "\n  - {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects problems; each check records what it found and carries on.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<ConfigError>);

impl Problems {
    /// The value, or `None` with the problem recorded.
    pub(super) fn take<T>(&mut self, result: Result<T, impl Into<ConfigError>>) -> Option<T> {
        result.map_err(|error| self.0.push(error.into())).ok()
    }

    pub(super) fn fail<T>(&mut self, problem: ConfigError) -> Option<T> {
        self.0.push(problem);
        None
    }

    pub(super) fn check(&mut self, ok: bool, problem: ConfigError) {
        if !ok {
            self.0.push(problem);
        }
    }
}
