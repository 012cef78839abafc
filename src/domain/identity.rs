//! The verified person. Every personal value is a newtype whose `Debug` redacts, so a stray
//! `{:?}` in a log line or a span cannot leak a name, phone number, CI or DI.

use std::fmt;

use chrono::NaiveDate;

use super::FieldViolation;

macro_rules! personal_string {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// The value itself, for the response that is its only destination.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

personal_string!(
    /// CI (PortOne `unique_key`): one person's identifier across every site, for life.
    Ci
);
personal_string!(
    /// DI (PortOne `unique_in_site`): one person's identifier within one merchant site.
    Di
);
personal_string!(
    /// A verified real name.
    PersonName
);
personal_string!(
    /// A mobile number, digits only.
    Phone
);

/// CI and DI are base64 (88 and 64 characters from PortOne). We bound them generously and
/// insist on the base64 alphabet so a caller-supplied CI cannot be an arbitrary blob.
const IDENTIFIER_MAX_LEN: usize = 256;

fn is_base64_identifier(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= IDENTIFIER_MAX_LEN
        && raw
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=' | b'-' | b'_'))
}

impl Ci {
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        if is_base64_identifier(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldViolation::new(
                "ci",
                "INVALID_CI",
                "must be 1 to 256 base64 characters",
            ))
        }
    }
}

impl Di {
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        is_base64_identifier(raw).then(|| Self(raw.to_owned()))
    }
}

impl PersonName {
    pub(crate) fn new(raw: &str) -> Option<Self> {
        let trimmed = raw.trim();
        (!trimmed.is_empty()).then(|| Self(trimmed.to_owned()))
    }
}

impl Phone {
    pub(crate) fn new(raw: &str) -> Option<Self> {
        (!raw.is_empty() && raw.bytes().all(|byte| byte.is_ascii_digit())).then(|| Self(raw.to_owned()))
    }
}

/// The carrier code as PortOne sends it (SKT, KT, LGT, SKT_MVNO, ...). Not personal on its own;
/// kept as text because PortOne may add codes at any time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carrier(pub String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gender {
    Unspecified,
    Male,
    Female,
    /// Neither: PortOne V2 may report it.
    Other,
}

/// A person as the identity provider verified them.
#[derive(Clone)]
pub struct Identity {
    pub(crate) name: PersonName,
    pub(crate) gender: Gender,
    pub(crate) birth_date: NaiveDate,
    pub(crate) phone: Option<Phone>,
    pub(crate) carrier: Option<Carrier>,
    pub(crate) foreigner: bool,
    pub(crate) ci: Ci,
    pub(crate) di: Option<Di>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Birth date is personal too; only the shape of the record is worth a debug line.
        f.debug_struct("Identity")
            .field("has_phone", &self.phone.is_some())
            .field("has_di", &self.di.is_some())
            .field("foreigner", &self.foreigner)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_personal_values() {
        let identity = Identity {
            name: PersonName::new("홍길동").unwrap(),
            gender: Gender::Male,
            birth_date: NaiveDate::from_ymd_opt(1990, 3, 15).unwrap(),
            phone: Phone::new("01012345678"),
            carrier: Some(Carrier("SKT".into())),
            foreigner: false,
            ci: Ci::parse("Q0lDSUNJ==").unwrap(),
            di: Di::parse("RElESURJ"),
        };
        let printed = format!("{identity:?} {:?} {:?}", identity.ci, identity.name);
        for secret in ["홍길동", "01012345678", "Q0lDSUNJ", "RElESURJ", "1990"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    #[test]
    fn ci_must_be_base64_shaped() {
        assert!(Ci::parse(&"A".repeat(86)).is_ok());
        for raw in ["", "not base64!", "a b", "ci\u{0}", &"A".repeat(257)] {
            assert_eq!(Ci::parse(raw).unwrap_err().reason, "INVALID_CI");
        }
    }
}
