//! Who may call what: the callers' names and tokens (CALLER_TOKENS), the methods they may call and
//! the purposes of the sessions they may begin (CALLER_PERMISSIONS), and the names of those
//! methods. Configuration parses these; the transport enforces them.

mod method;
mod permissions;
mod tokens;

pub(crate) use method::{Method, Rpc};
pub use permissions::{CallerPermissions, CallerPermissionsError};
pub use tokens::{CallerTokens, CallerTokensError};

/// The `name=items` entries of a comma-separated setting (CALLER_PERMISSIONS, CALLER_LIMITS),
/// blank ones skipped, each with its position from 1 (for the error naming it); `None` for an
/// entry without a name or without items.
pub(crate) fn named_entries(spec: &str) -> impl Iterator<Item = (usize, Option<(&str, &str)>)> {
    let entries = spec.split(',').map(str::trim).filter(|entry| !entry.is_empty());
    entries.enumerate().map(|(index, entry)| {
        let named = entry
            .split_once('=')
            .map(|(name, items)| (name.trim(), items.trim()))
            .filter(|(name, items)| !name.is_empty() && !items.is_empty());
        (index + 1, named)
    })
}

/// The name of the service that called, as configured (never the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Caller(pub String);
