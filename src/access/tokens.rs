//! CALLER_TOKENS: the bearer tokens callers present, by caller name. Tokens are kept only as
//! SHA-256 digests and compared in constant time against every entry, so neither timing nor a
//! memory dump gives one away.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Caller;

/// Shorter tokens are guessable; refuse them at start.
const MIN_TOKEN_LEN: usize = 16;
/// The least a token's estimate ([`estimated_bits`]) may be.
const MIN_TOKEN_BITS: f64 = 64.0;
/// Per caller name: the token in use, and during a rotation its successor.
const MAX_TOKENS_PER_CALLER: usize = 2;

#[derive(Clone)]
pub struct CallerTokens {
    /// A name appears at most twice (a rotation), each time with another token.
    entries: Vec<(String, [u8; 32])>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallerTokensError {
    #[error("CALLER_TOKENS entry {0} is not `name=token`")]
    Malformed(usize),
    #[error(
        "CALLER_TOKENS entry {0} starts with `#`: CALLER_TOKENS holds no comments; remove an entry to revoke its token"
    )]
    Comment(usize),
    #[error("CALLER_TOKENS entry {0}: the name must be 1-64 characters of [A-Za-z0-9._-]")]
    BadName(usize),
    #[error(
        "CALLER_TOKENS entry {0}: the token must be printable ASCII without spaces (what an `authorization` header carries)"
    )]
    UnusableToken(usize),
    #[error(
        "CALLER_TOKENS entry {0}: the token is guessable: it needs at least 16 characters and 64 bits by its characters' spread (length × their Shannon entropy); use e.g. `openssl rand -hex 32`"
    )]
    WeakToken(usize),
    #[error("CALLER_TOKENS entry {0} repeats the token of an earlier entry")]
    DuplicateToken(usize),
    #[error("CALLER_TOKENS names {0:?} more than twice: a caller holds one token, two while it rotates them")]
    TooManyTokens(String),
    #[error("CALLER_TOKENS holds no entry")]
    Empty,
}

/// A token's strength as its characters show it: its length times the Shannon entropy of its
/// characters' frequencies. A repeated or short token scores low, and no token scores more than
/// length × log2(length); a random 32-character hex token scores about 115.
fn estimated_bits(token: &str) -> f64 {
    let mut counts = [0u32; 256];
    for byte in token.bytes() {
        counts[usize::from(byte)] += 1;
    }
    let length = token.len() as f64;
    let per_character: f64 = counts
        .iter()
        .filter(|count| **count > 0)
        .map(|count| {
            let share = f64::from(*count) / length;
            -share * share.log2()
        })
        .sum();
    per_character * length
}

impl CallerTokens {
    /// `name=token` entries separated by commas or newlines (a file may hold one per line). A
    /// name given twice holds both tokens: how a caller rotates its token without a moment in
    /// which neither works, and with its sessions still its own.
    pub fn parse(spec: &str) -> Result<Self, CallerTokensError> {
        let mut entries: Vec<(String, [u8; 32])> = Vec::new();
        let items = spec
            .split([',', '\n'])
            .map(str::trim)
            .filter(|item| !item.is_empty());
        for (index, item) in items.enumerate() {
            let position = index + 1;
            if item.starts_with('#') {
                return Err(CallerTokensError::Comment(position));
            }
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
            if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
                return Err(CallerTokensError::UnusableToken(position));
            }
            if token.len() < MIN_TOKEN_LEN || estimated_bits(token) < MIN_TOKEN_BITS {
                return Err(CallerTokensError::WeakToken(position));
            }
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if entries.iter().any(|(_, known)| *known == digest) {
                return Err(CallerTokensError::DuplicateToken(position));
            }
            if entries.iter().filter(|(known, _)| known == name).count() >= MAX_TOKENS_PER_CALLER {
                return Err(CallerTokensError::TooManyTokens(name.to_owned()));
            }
            entries.push((name.to_owned(), digest));
        }
        if entries.is_empty() {
            return Err(CallerTokensError::Empty);
        }
        Ok(Self { entries })
    }

    /// Whether `name` is one of the callers.
    pub(crate) fn knows(&self, name: &str) -> bool {
        self.entries.iter().any(|(known, _)| known == name)
    }

    /// Each caller's name, once.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(index, (name, _))| !self.entries[..*index].iter().any(|(earlier, _)| earlier == name))
            .map(|(_, (name, _))| name.as_str())
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

    const SIGNUP: &str = "signup-token-0123456789abcdef";
    const RECOVERY: &str = "recovery-token-0123456789abcdef";

    #[test]
    fn tokens_parse_from_commas_or_lines_and_weak_ones_are_refused() {
        let tokens = CallerTokens::parse(&format!("signup={SIGNUP},\n\nrecovery = {RECOVERY}")).unwrap();
        assert_eq!(tokens.names().collect::<Vec<_>>(), ["signup", "recovery"]);
        assert_eq!(tokens.caller_of(RECOVERY), Some(Caller("recovery".into())));
        assert_eq!(tokens.caller_of("recovery-token-0123456789abcdeX"), None);
        assert_eq!(
            CallerTokens::parse("x=short").unwrap_err(),
            CallerTokensError::WeakToken(1)
        );
        assert_eq!(
            CallerTokens::parse("noequals").unwrap_err(),
            CallerTokensError::Malformed(1)
        );
        assert_eq!(
            CallerTokens::parse(&format!("a b={SIGNUP}")).unwrap_err(),
            CallerTokensError::BadName(1)
        );
        assert_eq!(CallerTokens::parse(" , ").unwrap_err(), CallerTokensError::Empty);
        assert!(!format!("{tokens:?}").contains("token-0123"));
    }

    #[test]
    fn a_comment_a_non_ascii_or_a_low_entropy_token_is_refused() {
        assert_eq!(
            CallerTokens::parse(&format!("signup={SIGNUP},# old=x")).unwrap_err(),
            CallerTokensError::Comment(2)
        );
        assert_eq!(
            CallerTokens::parse(&format!("#signup={SIGNUP}")).unwrap_err(),
            CallerTokensError::Comment(1)
        );
        assert_eq!(
            CallerTokens::parse("signup=토큰-0123456789abcdef-토큰").unwrap_err(),
            CallerTokensError::UnusableToken(1)
        );
        assert_eq!(
            CallerTokens::parse("signup=0123456789abc\tdef0123").unwrap_err(),
            CallerTokensError::UnusableToken(1)
        );
        // Long enough, but one character, a short pattern, or too few distinct characters.
        for weak in [
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abababababababababababababababab",
            "abcdabcdabcdabcd",
            "0000000000000000000000000000000000000001",
        ] {
            assert_eq!(
                CallerTokens::parse(&format!("signup={weak}")).unwrap_err(),
                CallerTokensError::WeakToken(1),
                "{weak}"
            );
        }
        // What `openssl rand -hex 16` and `-base64 24` make.
        for strong in [
            "3f9c1a7e5b2d8046c1e9a3f7b5d20c84",
            "q8Zr1fK2mVx+P0s7LcJ9tW4b/nYhGdE3",
        ] {
            CallerTokens::parse(&format!("signup={strong}")).unwrap();
        }
    }

    #[test]
    fn a_caller_holds_two_tokens_while_rotating_and_no_more() {
        let tokens = CallerTokens::parse(&format!(
            "signup={SIGNUP},recovery={RECOVERY},signup=next-{SIGNUP}"
        ))
        .unwrap();
        assert_eq!(tokens.names().collect::<Vec<_>>(), ["signup", "recovery"]);
        assert_eq!(tokens.caller_of(SIGNUP), Some(Caller("signup".into())));
        assert_eq!(
            tokens.caller_of(&format!("next-{SIGNUP}")),
            Some(Caller("signup".into()))
        );
        assert_eq!(
            CallerTokens::parse(&format!("a={SIGNUP},a=next-{SIGNUP},a=last-{SIGNUP}")).unwrap_err(),
            CallerTokensError::TooManyTokens("a".into())
        );
        assert_eq!(
            CallerTokens::parse(&format!("a={SIGNUP},b={SIGNUP}")).unwrap_err(),
            CallerTokensError::DuplicateToken(2)
        );
    }
}
