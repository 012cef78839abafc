//! What both PortOne APIs' answers need read the same way: the operator's copy of a refusal
//! message, a JSON error reported without the input it quotes, the CI, and a phone with its
//! carrier.

use crate::{
    domain::{Carrier, Ci, Phone, Provider},
    service::ProviderError,
};

/// PortOne's own words about a refusal, for the operator: short, on one line.
pub(super) fn operator_text(message: Option<String>) -> String {
    let text: String = message
        .unwrap_or_default()
        .chars()
        .map(|character| if character.is_control() { ' ' } else { character })
        .take(200)
        .collect();
    text.trim().to_owned()
}

/// An answer that is not the JSON we expect. serde_json's messages can quote the input (a
/// name, a CI): its category and place only.
pub(super) fn malformed_json(error: &serde_json::Error) -> ProviderError {
    let category = match error.classify() {
        serde_json::error::Category::Io => "io error",
        serde_json::error::Category::Syntax => "invalid json",
        serde_json::error::Category::Data => "unexpected json shape",
        serde_json::error::Category::Eof => "truncated json",
    };
    ProviderError::Malformed(format!(
        "{category} at line {} column {}",
        error.line(),
        error.column()
    ))
}

/// The phone, digits only (PortOne's contract; anything else is stripped rather than failing
/// the person), and its carrier code, which means nothing without a phone.
pub(super) fn phone_and_carrier(
    phone: Option<&str>,
    carrier: Option<String>,
) -> (Option<Phone>, Option<Carrier>) {
    let phone = phone
        .map(|raw| raw.chars().filter(char::is_ascii_digit).collect::<String>())
        .and_then(|digits| Phone::new(&digits));
    let carrier = phone
        .as_ref()
        .and(carrier)
        .filter(|code| !code.is_empty())
        .map(Carrier);
    (phone, carrier)
}

/// The certified person's CI in its canonical form, or `None` when PortOne sent none (no CI
/// contract) or sent one that does not decode as base64: a CI we cannot canonicalise would not
/// find the person again, so both are CI_UNAVAILABLE rather than a person of their own.
pub(super) fn provider_ci(provider: Provider, raw: Option<&str>) -> Option<Ci> {
    let raw = raw.filter(|raw| !raw.is_empty())?;
    let ci = Ci::parse(raw).ok();
    if ci.is_none() {
        tracing::warn!(
            provider = provider.as_str(),
            "the provider sent a ci that is not base64; answered as CI_UNAVAILABLE"
        );
    }
    ci
}
