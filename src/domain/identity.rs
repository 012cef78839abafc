//! The verified person. Every personal value is a newtype whose `Debug` redacts, so a stray
//! `{:?}` in a log line or a span cannot leak a name, phone number, CI or DI.

use std::fmt;

use base64::{
    Engine, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose::STANDARD},
};
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

/// CI and DI are base64 (88 and 64 characters from PortOne). We bound them generously before
/// decoding, so a caller-supplied CI cannot be an arbitrary blob.
const IDENTIFIER_MAX_LEN: usize = 256;

/// Decoding accepts padding present or absent; a wrong amount of padding, and bits left over
/// after the last byte, are refused (no encoder writes them), so each accepted text has one byte
/// string and the canonical text is unique to it.
const ANY_PADDING: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, ANY_PADDING);
const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, ANY_PADDING);

/// The one text of a CI or DI: its bytes in standard base64 with padding (PortOne V1's form).
/// The index hashes this text, so the same identifier written in the URL-safe alphabet or
/// without padding is the same person. A text mixing both alphabets is refused: no encoder
/// writes one, so it is damaged or made up.
fn canonical_base64(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.len() > IDENTIFIER_MAX_LEN {
        return None;
    }
    let url_safe = raw.contains(['-', '_']);
    let engine = match (url_safe, raw.contains(['+', '/'])) {
        (true, true) => return None,
        (true, false) => &URL_SAFE_ANY_PADDING,
        (false, _) => &STANDARD_ANY_PADDING,
    };
    let bytes = engine.decode(raw).ok().filter(|bytes| !bytes.is_empty())?;
    Some(STANDARD.encode(bytes))
}

impl Ci {
    /// The canonical form of `raw` (see [`canonical_base64`]), or INVALID_CI.
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        canonical_base64(raw).map(Self).ok_or_else(|| {
            FieldViolation::new(
                "ci",
                "INVALID_CI",
                "must be base64 (standard or URL-safe alphabet, padding optional), at most 256 characters",
            )
        })
    }
}

impl Di {
    /// The canonical form of `raw`, like a CI's; `None` when it does not decode.
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        canonical_base64(raw).map(Self)
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
            ci: Ci::parse("Q0lDSUNJ").unwrap(),
            di: Di::parse("RElESURJ"),
        };
        let printed = format!("{identity:?} {:?} {:?}", identity.ci, identity.name);
        for secret in ["홍길동", "01012345678", "Q0lDSUNJ", "RElESURJ", "1990"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    #[test]
    fn ci_must_be_base64_shaped() {
        assert_eq!(
            Ci::parse(&"A".repeat(86)).unwrap().expose(),
            format!("{}==", "A".repeat(86))
        );
        let refused = [
            "",
            "not base64!",
            "a b",
            "ci\u{0}",
            &"A".repeat(257),
            // Both alphabets in one text.
            "ab+_",
            // Too much padding, padding inside, a lone character, bits after the last byte.
            "QUJD==",
            "QQ===",
            "QQ=A",
            "Q",
            "QR==",
            // Padding alone decodes to nothing.
            "====",
        ];
        for raw in refused {
            assert_eq!(Ci::parse(raw).unwrap_err().reason, "INVALID_CI", "{raw:?}");
            assert!(Di::parse(raw).is_none(), "{raw:?}");
        }
    }

    #[test]
    fn the_four_forms_of_one_ci_are_one_ci_in_the_standard_padded_form() {
        // 64 bytes like a real CI, with `+` and `/` in its standard form.
        let bytes: Vec<u8> = (0..64u8).map(|byte| byte.wrapping_mul(37) | 0x80).collect();
        let standard = STANDARD.encode(&bytes);
        assert!(standard.len() == 88 && standard.ends_with("==") && standard.contains(['+', '/']));
        let url_safe = base64::engine::general_purpose::URL_SAFE.encode(&bytes);
        for form in [
            standard.clone(),
            standard.trim_end_matches('=').to_owned(),
            url_safe.clone(),
            url_safe.trim_end_matches('=').to_owned(),
        ] {
            assert_eq!(Ci::parse(&form).unwrap().expose(), standard, "{form}");
            assert_eq!(Di::parse(&form).unwrap().expose(), standard, "{form}");
        }
    }

    mod forms {
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Every form of the same bytes is one CI, whose text is the standard padded one.
            #[test]
            fn every_form_of_the_same_bytes_is_one_ci(bytes in prop::collection::vec(any::<u8>(), 1..=120)) {
                let canonical = STANDARD.encode(&bytes);
                for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
                    let ci = Ci::parse(&engine.encode(&bytes)).unwrap();
                    prop_assert_eq!(ci.expose(), canonical.as_str());
                }
            }

            /// Whatever is accepted, its canonical text is accepted as itself and holds the bytes
            /// the input held: canonicalising never changes who the person is.
            #[test]
            fn an_accepted_text_keeps_its_bytes_and_its_canonical_form_is_a_fixed_point(
                raw in prop_oneof!["[A-Za-z0-9+/]{0,96}={0,2}", "[A-Za-z0-9_-]{0,96}={0,2}", "[A-Za-z0-9+/_=-]{0,96}"]
            ) {
                if let Ok(ci) = Ci::parse(&raw) {
                    prop_assert_eq!(Ci::parse(ci.expose()).unwrap(), ci.clone());
                    let url_safe = raw.contains(['-', '_']);
                    let engine = if url_safe { &URL_SAFE_NO_PAD } else { &STANDARD_NO_PAD };
                    let held = engine.decode(raw.trim_end_matches('=')).unwrap();
                    prop_assert_eq!(STANDARD.decode(ci.expose()).unwrap(), held);
                }
            }
        }
    }
}
