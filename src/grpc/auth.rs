//! Caller authentication: `authorization: Bearer <token>` against CALLER_TOKENS, and/or a client
//! certificate under mTLS. The caller's name travels on in the request's extensions.

use std::sync::Arc;

use tonic::{Request, Status, service::Interceptor};

use super::status::Refusal;
use crate::{
    access::{Caller, CallerTokens},
    config::CallerSan,
};

/// The interceptor in front of CertificationService. Without tokens or mTLS every call passes
/// (only with ALLOW_UNAUTHENTICATED); health is a separate service and never passes through here.
#[derive(Clone)]
pub(crate) struct Authenticator {
    tokens: Option<Arc<CallerTokens>>,
    /// Under mTLS: the TLS layer has verified a client certificate from our CA, for clientAuth;
    /// this name of it is the caller's.
    caller_san: Option<CallerSan>,
}

impl Authenticator {
    pub(crate) fn new(tokens: Option<CallerTokens>, caller_san: Option<CallerSan>) -> Self {
        Self {
            tokens: tokens.map(Arc::new),
            caller_san,
        }
    }
}

/// The caller the client certificate names by TLS_CALLER_SAN; never its common name.
fn certificate_name<T>(request: &Request<T>, caller_san: &CallerSan) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let certificates = request.peer_certs()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(certificates.first()?).ok()?;
    let names = certificate.subject_alternative_name().ok()??;
    let general_names = &names.value.general_names;
    let dns_names = general_names.iter().filter_map(|name| match name {
        GeneralName::DNSName(dns) => Some(*dns),
        _ => None,
    });
    let uris = general_names.iter().filter_map(|name| match name {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    caller_san.caller_name(dns_names, uris)
}

impl Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let from_certificate = if let Some(caller_san) = &self.caller_san {
            // rustls already refused connections without a certificate from our CA; a
            // certificate we cannot name is refused here.
            let Some(name) = certificate_name(&request, caller_san) else {
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
