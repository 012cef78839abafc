//! Caller authentication: `authorization: Bearer <token>` against CALLER_TOKENS, and/or a client
//! certificate under mTLS. The caller's name travels on in the request's extensions.

use std::sync::Arc;

use tonic::{Request, Status, service::Interceptor};

use super::status::Refusal;
use crate::access::{Caller, CallerTokens};

/// The interceptor in front of CertificationService. Without tokens or mTLS every call passes
/// (only with ALLOW_UNAUTHENTICATED); health is a separate service and never passes through here.
#[derive(Clone)]
pub(crate) struct Authenticator {
    tokens: Option<Arc<CallerTokens>>,
    /// The TLS layer has verified a client certificate from our CA; its name is the caller's.
    mutual_tls: bool,
}

impl Authenticator {
    pub(crate) fn new(tokens: Option<CallerTokens>, mutual_tls: bool) -> Self {
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
                return Err(Refusal::Unauthenticated {
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
                Err(Refusal::CallerMismatch.into())
            }
            Some(caller) => {
                request.extensions_mut().insert(caller);
                Ok(request)
            }
            None => Err(Refusal::Unauthenticated {
                token_presented: presented.is_some(),
            }
            .into()),
        }
    }
}
