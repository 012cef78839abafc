//! Caller authentication: `authorization: Bearer <token>` against CALLER_TOKENS, and/or a client
//! certificate under mTLS. Tokens are kept only as SHA-256 digests and compared in constant time
//! against every entry, so neither timing nor a memory dump gives one away. The caller's name
//! travels on in the request's extensions.

use std::{fmt, sync::Arc};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status, service::Interceptor};

use crate::error::ServiceError;

/// Shorter tokens are guessable; refuse them at start.
const MIN_TOKEN_LEN: usize = 16;

/// The name of the service that called, as configured (never the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller(pub String);

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

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(name, _)| name.as_str())
    }

    /// The caller whose token this is. Every entry is compared, match or not.
    fn caller_of(&self, presented: &str) -> Option<Caller> {
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

/// The interceptor in front of CertificationService. Without tokens or mTLS every call passes
/// (only with ALLOW_UNAUTHENTICATED); health is a separate service and never passes through here.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Option<Arc<CallerTokens>>,
    /// The TLS layer has verified a client certificate from our CA; its name is the caller's.
    mutual_tls: bool,
}

impl Authenticator {
    pub fn new(tokens: Option<CallerTokens>, mutual_tls: bool) -> Self {
        Self {
            tokens: tokens.map(Arc::new),
            mutual_tls,
        }
    }
}

/// The common name of the client certificate, or its first DNS name.
fn certificate_name<T>(request: &Request<T>) -> Option<String> {
    let certificates = request.peer_certs()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(certificates.first()?).ok()?;
    let common_name = certificate
        .subject()
        .iter_common_name()
        .find_map(|attribute| attribute.as_str().ok().map(str::to_owned));
    common_name.or_else(|| {
        let names = certificate.subject_alternative_name().ok()??;
        names.value.general_names.iter().find_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
    })
}

impl Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let from_certificate = if self.mutual_tls {
            // rustls already refused connections without a certificate from our CA; a
            // certificate we cannot name is refused here.
            let Some(name) = certificate_name(&request) else {
                return Err(ServiceError::Unauthenticated {
                    token_presented: false,
                }
                .into());
            };
            Some(Caller(name))
        } else {
            None
        };
        let Some(tokens) = &self.tokens else {
            if let Some(caller) = from_certificate {
                request.extensions_mut().insert(caller);
            }
            return Ok(request);
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let caller = presented.and_then(|token| tokens.caller_of(token));
        match caller {
            // Both name a caller: they must name the same one, or a stolen token would let
            // one certificate's holder act as another caller.
            Some(caller) if from_certificate.as_ref().is_some_and(|named| *named != caller) => {
                Err(ServiceError::CallerMismatch.into())
            }
            Some(caller) => {
                request.extensions_mut().insert(caller);
                Ok(request)
            }
            None => Err(ServiceError::Unauthenticated {
                token_presented: presented.is_some(),
            }
            .into()),
        }
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
