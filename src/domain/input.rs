//! Request fields parsed at the edge ("parse, don't validate"): once one of these exists, it is
//! known to be safe to put in a PortOne URL or a database row.

use std::fmt;

/// Why a request field was refused: the field's name and a machine-readable reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {description}")]
pub struct FieldViolation {
    pub(crate) field: &'static str,
    pub(crate) reason: &'static str,
    pub(crate) description: String,
}

impl FieldViolation {
    pub(crate) fn new(field: &'static str, reason: &'static str, description: impl Into<String>) -> Self {
        Self {
            field,
            reason,
            description: description.into(),
        }
    }
}

/// PortOne's certification id: `imp_` then ASCII digits. Every observed id has 12 digits; we
/// accept 8 to 20 so a longer id PortOne may issue one day still works, while anything that
/// could change the lookup URL (slashes, dots, percent signs, queries) is refused outright.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImpUid(String);

impl ImpUid {
    pub(crate) const MIN_DIGITS: usize = 8;
    pub(crate) const MAX_DIGITS: usize = 20;

    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        Self::parse_field(raw, "imp_uid")
    }

    /// Parses for a field whose name differs from `imp_uid` (the oneof in CheckDuplicate).
    pub(crate) fn parse_field(raw: &str, field: &'static str) -> Result<Self, FieldViolation> {
        let invalid = |description: &str| FieldViolation::new(field, "INVALID_IMP_UID", description);
        if raw.is_empty() {
            return Err(invalid("required"));
        }
        let Some(digits) = raw.strip_prefix("imp_") else {
            return Err(invalid("must start with \"imp_\""));
        };
        if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(invalid("must be \"imp_\" followed by ASCII digits"));
        }
        if !(Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&digits.len()) {
            return Err(invalid("must have 8 to 20 digits after \"imp_\""));
        }
        Ok(Self(raw.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImpUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ImpUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImpUid({})", self.0)
    }
}

/// PortOne V2's identity verification id, chosen by the merchant (by this service, for its
/// sessions). Letters, digits, `.`, `_` and `-` only, so it is one safe URL path segment; not
/// only dots (`.` and `..` would change the path).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdentityVerificationId(String);

impl IdentityVerificationId {
    pub(crate) const MAX_LEN: usize = 128;

    pub(crate) fn parse_field(raw: &str, field: &'static str) -> Result<Self, FieldViolation> {
        let fine = (1..=Self::MAX_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
            && !raw.bytes().all(|byte| byte == b'.');
        if fine {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldViolation::new(
                field,
                "INVALID_IDENTITY_VERIFICATION_ID",
                "must be 1 to 128 characters of A-Z a-z 0-9 . _ -",
            ))
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdentityVerificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityVerificationId({})", self.0)
    }
}

/// Our own services' account id. Opaque to us, but bounded and plain so it is safe in logs,
/// metrics labels are never built from it, and it cannot smuggle control characters into storage.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AccountId(String);

impl AccountId {
    pub(crate) const MAX_LEN: usize = 128;

    pub(crate) fn parse(raw: &str) -> Result<Self, FieldViolation> {
        let invalid =
            |description: &str| FieldViolation::new("account_id", "INVALID_ACCOUNT_ID", description);
        if raw.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if raw.len() > Self::MAX_LEN {
            return Err(invalid("must be at most 128 characters"));
        }
        let allowed = |byte: u8| byte.is_ascii_alphanumeric() || b"._:@-".contains(&byte);
        if !raw.bytes().all(allowed) {
            return Err(invalid("may contain only A-Z a-z 0-9 . _ : @ -"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Rebuilds an id read back from our own database, where it was stored already parsed.
    pub(crate) fn from_trusted(stored: String) -> Self {
        Self(stored)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", self.0)
    }
}

/// The merchant's own id for a certification, compared exactly with what PortOne returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerchantUid(String);

impl MerchantUid {
    pub(crate) const MAX_LEN: usize = 256;

    pub(crate) fn parse(raw: &str) -> Result<Self, FieldViolation> {
        let invalid =
            |description: &str| FieldViolation::new("merchant_uid", "INVALID_MERCHANT_UID", description);
        if raw.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if raw.len() > Self::MAX_LEN {
            return Err(invalid("must be at most 256 bytes"));
        }
        if raw.chars().any(char::is_control) {
            return Err(invalid("must not contain control characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A minimum age a caller asks for. Above 150 is surely a bug in the caller, not a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinAge(u32);

impl MinAge {
    pub(crate) const MAX: u32 = 150;

    pub(crate) fn parse(raw: u32) -> Result<Self, FieldViolation> {
        if raw > Self::MAX {
            return Err(FieldViolation::new(
                "min_age",
                "INVALID_MIN_AGE",
                "must be between 0 and 150",
            ));
        }
        Ok(Self(raw))
    }

    pub(crate) fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imp_uid_accepts_portone_shape() {
        assert_eq!(
            ImpUid::parse("imp_123456789012").unwrap().as_str(),
            "imp_123456789012"
        );
        assert!(ImpUid::parse("imp_12345678").is_ok());
        assert!(ImpUid::parse("imp_12345678901234567890").is_ok());
    }

    #[test]
    fn imp_uid_rejects_anything_that_could_reach_another_url() {
        let hostile = [
            "",
            "imp_",
            "123456789012",
            "IMP_123456789012",
            "imp_1234567",
            "imp_123456789012345678901",
            "imp_12345678901a",
            "imp_123456789012/../../users/getToken",
            "imp_123456789012%2F",
            "imp_123456789012?x=1",
            "imp_12345678901\u{0}",
            "imp_١٢٣٤٥٦٧٨٩٠١٢",
            " imp_123456789012",
            "imp_123456789012\n",
        ];
        for raw in hostile {
            let violation = ImpUid::parse(raw).unwrap_err();
            assert_eq!(violation.reason, "INVALID_IMP_UID", "{raw:?}");
            assert_eq!(violation.field, "imp_uid");
        }
    }

    #[test]
    fn account_id_bounds_and_alphabet() {
        assert!(AccountId::parse("user-42@example.com").is_ok());
        assert!(AccountId::parse(&"a".repeat(128)).is_ok());
        for raw in ["", &"a".repeat(129), "a b", "a/b", "계정", "a\u{0}", "a%2F"] {
            assert_eq!(
                AccountId::parse(raw).unwrap_err().reason,
                "INVALID_ACCOUNT_ID",
                "{raw:?}"
            );
        }
    }

    #[test]
    fn merchant_uid_and_min_age_bounds() {
        assert!(MerchantUid::parse("signup-0001").is_ok());
        assert!(MerchantUid::parse(&"m".repeat(257)).is_err());
        assert!(MerchantUid::parse("a\u{7}").is_err());
        assert_eq!(MinAge::parse(150).unwrap().get(), 150);
        assert!(MinAge::parse(151).is_err());
    }
}
