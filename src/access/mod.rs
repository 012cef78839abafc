//! Who may call what: the callers' names and tokens (CALLER_TOKENS), the methods they may call and
//! the purposes of the sessions they may begin (CALLER_PERMISSIONS), and the names of those
//! methods. Configuration parses these; the transport enforces them.

mod method;
mod permissions;
mod tokens;

pub(crate) use method::{Method, Rpc};
pub use permissions::{CallerPermissions, CallerPermissionsError};
pub use tokens::{CallerTokens, CallerTokensError};

/// The name of the service that called, as configured (never the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Caller(pub String);
