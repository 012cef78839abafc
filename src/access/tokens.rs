//! CALLER_TOKENS: the bearer tokens callers present, by caller name. Tokens are kept only as
//! SHA-256 digests and compared in constant time against every entry, so neither timing nor a
//! memory dump gives one away.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Caller;

/// Shorter tokens are guessable; refuse them at start.
const MIN_TOKEN_LEN: usize = 16;

#[derive(Clone)]
pub struct CallerTokens {
    entries: Vec<(String, [u8; 32])>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallerTokensError {
    #[error("CALLER_TOKENS entry {0} is not `name=token`")]
    Malformed(usize),
    #[error("CALLER_TOKENS entry {0}: the name must be 1-64 characters of [A-Za-z0-9._-]")]
    BadName(usize),
    #[error("CALLER_TOKENS entry {0}: the token must be at least 16 characters without spaces")]
    WeakToken(usize),
    #[error("CALLER_TOKENS names {0:?} twice")]
    DuplicateName(String),
    #[error("CALLER_TOKENS holds no entry")]
    Empty,
}

impl CallerTokens {
    /// `name=token` entries separated by commas or newlines (a file may hold one per line;
    /// lines starting with `#` are comments).
    pub fn parse(spec: &str) -> Result<Self, CallerTokensError> {
        let mut entries: Vec<(String, [u8; 32])> = Vec::new();
        let items = spec
            .split([',', '\n'])
            .map(str::trim)
            .filter(|item| !item.is_empty() && !item.starts_with('#'));
        for (index, item) in items.enumerate() {
            let position = index + 1;
            let (name, token) = item
                .split_once('=')
                .ok_or(CallerTokensError::Malformed(position))?;
            let name = name.trim();
            let token = token.trim();
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte));
            if !name_ok {
                return Err(CallerTokensError::BadName(position));
            }
            if token.len() < MIN_TOKEN_LEN || token.bytes().any(|byte| byte.is_ascii_whitespace()) {
                return Err(CallerTokensError::WeakToken(position));
            }
            if entries.iter().any(|(known, _)| known == name) {
                return Err(CallerTokensError::DuplicateName(name.to_owned()));
            }
            entries.push((name.to_owned(), Sha256::digest(token.as_bytes()).into()));
        }
        if entries.is_empty() {
            return Err(CallerTokensError::Empty);
        }
        Ok(Self { entries })
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(name, _)| name.as_str())
    }

    /// The caller whose token this is. Every entry is compared, match or not.
    pub(crate) fn caller_of(&self, presented: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (name, expected) in &self.entries {
            if bool::from(expected.ct_eq(&digest)) {
                found = Some(Caller(name.clone()));
            }
        }
        found
    }
}

impl fmt::Debug for CallerTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerTokens")
            .field("names", &self.names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_from_commas_or_lines_and_weak_ones_are_refused() {
        let tokens =
            CallerTokens::parse("signup=aaaaaaaaaaaaaaaaaaaa,\n# comment\nrecovery = bbbbbbbbbbbbbbbbbbbb")
                .unwrap();
        assert_eq!(tokens.names().collect::<Vec<_>>(), ["signup", "recovery"]);
        assert_eq!(
            tokens.caller_of("bbbbbbbbbbbbbbbbbbbb"),
            Some(Caller("recovery".into()))
        );
        assert_eq!(tokens.caller_of("bbbbbbbbbbbbbbbbbbbc"), None);
        assert_eq!(
            CallerTokens::parse("x=short").unwrap_err(),
            CallerTokensError::WeakToken(1)
        );
        assert_eq!(
            CallerTokens::parse("noequals").unwrap_err(),
            CallerTokensError::Malformed(1)
        );
        assert_eq!(
            CallerTokens::parse("a b=aaaaaaaaaaaaaaaaaaaa").unwrap_err(),
            CallerTokensError::BadName(1)
        );
        assert_eq!(
            CallerTokens::parse("a=aaaaaaaaaaaaaaaaaaaa,a=bbbbbbbbbbbbbbbbbbbb").unwrap_err(),
            CallerTokensError::DuplicateName("a".into())
        );
        assert_eq!(CallerTokens::parse(" , ").unwrap_err(), CallerTokensError::Empty);
        assert!(!format!("{tokens:?}").contains("aaaa"));
    }
}
