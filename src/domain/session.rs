//! Verification sessions: the service issues the `merchant_uid` a verification runs under, and
//! a Verify redeems it once, for the purpose it was issued for. Here: the purposes, the id, what
//! a caller expects of the person, and the rules a session's redemption follows.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization as _;

use super::{AccountId, BindOutcome, FieldViolation, Holder, Identity, MinAge, Provider};

/// What a session is for; it decides what its Verify does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VerificationPurpose {
    /// Binds the session's account, when it has one.
    Signup,
    /// Never binds; says who holds the person.
    Recovery,
    /// The session's account must hold the certified person; never binds.
    Reverify,
    /// Only the age matters; never binds.
    AgeCheck,
}

impl VerificationPurpose {
    pub(crate) const ALL: [Self; 4] = [Self::Signup, Self::Recovery, Self::Reverify, Self::AgeCheck];

    /// Stored in the database and used as a metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Signup => "signup",
            Self::Recovery => "recovery",
            Self::Reverify => "reverify",
            Self::AgeCheck => "age_check",
        }
    }

    pub(crate) fn from_stored(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|purpose| purpose.as_str() == raw)
    }

    /// What its Verify answers: only what the purpose exists for (the table is in the proto's
    /// VerifyResponse). Whatever is left out never reaches the caller.
    pub(crate) fn disclosure(self) -> Disclosure {
        match self {
            Self::Signup | Self::Reverify => Disclosure::EVERYTHING,
            // Which account holds the person: the caller's own records of that account say the
            // rest a recovery screen shows (its masked login, say). Nothing of the person.
            Self::Recovery => Disclosure {
                identity: false,
                holder: true,
                age: AgeDisclosure::None,
            },
            // The decision alone: nothing that identifies the person, nor their exact age.
            Self::AgeCheck => Disclosure {
                identity: false,
                holder: false,
                age: AgeDisclosure::Decision,
            },
        }
    }
}

/// What a Verify's answer carries besides the certification record and the outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Disclosure {
    /// The verified person: name, gender, birth date, phone, carrier, foreigner, CI, DI.
    pub(crate) identity: bool,
    /// Which account held the person before the call.
    pub(crate) holder: bool,
    pub(crate) age: AgeDisclosure,
}

/// How much of the age check a Verify answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AgeDisclosure {
    None,
    /// The minimum age and whether it is met.
    Decision,
    /// The decision and the person's full age.
    Full,
}

impl Disclosure {
    /// Signup, reverify, and a Verify without a session (REQUIRE_SESSION=false).
    pub(crate) const EVERYTHING: Self = Self {
        identity: true,
        holder: true,
        age: AgeDisclosure::Full,
    };
}

/// The merchant_uid the service issued: `vs_` and 32 lowercase hex digits, 128 random bits.
/// ASCII letters, digits and `_` only, well within what PortOne accepts as a merchant_uid.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

const SESSION_PREFIX: &str = "vs_";
const SESSION_HEX_DIGITS: usize = 32;

impl SessionId {
    pub(crate) fn generate() -> Self {
        let mut bytes = [0u8; SESSION_HEX_DIGITS / 2];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{SESSION_PREFIX}{}", hex::encode(bytes)))
    }

    /// Some when `raw` has the shape of an id this service issues: such a merchant_uid is always
    /// redeemed as a session, whatever REQUIRE_SESSION says.
    pub(crate) fn recognise(raw: &str) -> Option<Self> {
        let digits = raw.strip_prefix(SESSION_PREFIX)?;
        (digits.len() == SESSION_HEX_DIGITS && digits.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(raw.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", LoggedSessionId(&self.0))
    }
}

/// How a session id appears in logs, whichever provider it names (V1's merchant_uid, V2's
/// identity verification id): a live session id is a bearer value for its caller, so logs show
/// its first characters only.
pub(crate) struct LoggedSessionId<'a>(pub(crate) &'a str);

impl fmt::Display for LoggedSessionId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ids are ASCII (parsed), so a byte cut is a character cut; `get` keeps it total.
        write!(f, "{}…", self.0.get(..7).unwrap_or_default())
    }
}

/// Whom a caller expects to be certified. Personal data: sealed at rest, redacted in `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExpectedPerson {
    /// Normalised (NFC, trimmed, whitespace runs as one space).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "n")]
    pub(crate) name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "b")]
    pub(crate) birth_date: Option<NaiveDate>,
    /// Digits only.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "p")]
    pub(crate) phone: Option<String>,
}

impl fmt::Debug for ExpectedPerson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpectedPerson")
            .field("name", &self.name.is_some())
            .field("birth_date", &self.birth_date.is_some())
            .field("phone", &self.phone.is_some())
            .finish()
    }
}

const NAME_MAX_CHARS: usize = 100;

/// NFC, trimmed, every run of whitespace one space: how names are compared.
pub(crate) fn normalise_name(raw: &str) -> String {
    let composed: String = raw.nfc().collect();
    composed.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl ExpectedPerson {
    pub(crate) fn parse(
        name: Option<&str>,
        birth_date: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Self, FieldViolation> {
        let name = name
            .map(|raw| {
                let name = normalise_name(raw);
                let count = name.chars().count();
                if count == 0 || count > NAME_MAX_CHARS || name.chars().any(char::is_control) {
                    Err(FieldViolation::new(
                        "expected.name",
                        "INVALID_NAME",
                        "must be 1 to 100 characters, without control characters",
                    ))
                } else {
                    Ok(name)
                }
            })
            .transpose()?;
        let birth_date = birth_date
            .map(|raw| {
                NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                    .ok()
                    .filter(|_| raw.len() == 10)
                    .ok_or_else(|| {
                        FieldViolation::new(
                            "expected.birth_date",
                            "INVALID_BIRTH_DATE",
                            "must be a date as YYYY-MM-DD",
                        )
                    })
            })
            .transpose()?;
        let phone = phone
            .map(|raw| {
                let separators_only = raw
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '-' | ' ' | '+'));
                let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
                if separators_only && (9..=11).contains(&digits.len()) {
                    Ok(digits)
                } else {
                    Err(FieldViolation::new(
                        "expected.phone",
                        "INVALID_PHONE",
                        "must be 9 to 11 digits, optionally separated by '-' or spaces",
                    ))
                }
            })
            .transpose()?;
        Ok(Self {
            name,
            birth_date,
            phone,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.name.is_none() && self.birth_date.is_none() && self.phone.is_none()
    }

    /// The fields whose expected value the certified person does not have, in a fixed order.
    /// A certification without a phone cannot confirm an expected phone: that is a mismatch.
    pub(crate) fn mismatches(&self, identity: &Identity) -> Vec<&'static str> {
        let mut fields = Vec::new();
        if self
            .name
            .as_ref()
            .is_some_and(|name| *name != normalise_name(identity.name.expose()))
        {
            fields.push("name");
        }
        if self.birth_date.is_some_and(|date| date != identity.birth_date) {
            fields.push("birth_date");
        }
        if let Some(phone) = &self.phone {
            let certified: Option<String> = identity
                .phone
                .as_ref()
                .map(|phone| phone.expose().chars().filter(char::is_ascii_digit).collect());
            if certified.as_deref() != Some(phone.as_str()) {
                fields.push("phone");
            }
        }
        fields
    }
}

/// What BeginVerification asks for, checked: the account rules of each purpose hold.
#[derive(Debug)]
pub struct SessionSpec {
    pub(crate) purpose: VerificationPurpose,
    /// None: the configured default (V2 when configured, else V1).
    pub(crate) provider: Option<Provider>,
    pub(crate) account: Option<AccountId>,
    pub(crate) min_age: Option<MinAge>,
    pub(crate) expected: ExpectedPerson,
}

impl SessionSpec {
    pub(crate) fn new(
        purpose: VerificationPurpose,
        account: Option<AccountId>,
        min_age: Option<MinAge>,
        expected: ExpectedPerson,
    ) -> Result<Self, FieldViolation> {
        match (purpose, &account) {
            (VerificationPurpose::Reverify, None) => Err(FieldViolation::new(
                "account_id",
                "MISSING_ACCOUNT_ID",
                "PURPOSE_REVERIFY needs the account whose person is confirmed",
            )),
            (VerificationPurpose::Recovery | VerificationPurpose::AgeCheck, Some(_)) => {
                Err(FieldViolation::new(
                    "account_id",
                    "INVALID_ACCOUNT_ID",
                    "PURPOSE_RECOVERY and PURPOSE_AGE_CHECK bind no account: leave account_id unset",
                ))
            }
            _ => Ok(Self {
                purpose,
                provider: None,
                account,
                min_age,
                expected,
            }),
        }
    }
}

/// A session as stored, with its expected person opened.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: SessionId,
    pub(crate) purpose: VerificationPurpose,
    pub(crate) account: Option<AccountId>,
    pub(crate) min_age: Option<MinAge>,
    pub(crate) expected: ExpectedPerson,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) expires_at: DateTime<Utc>,
}

/// Which certification redeemed a session, and the answer it got.
#[derive(Clone, Debug)]
pub struct Redemption {
    pub(crate) provider: Provider,
    pub(crate) certification_id: String,
    pub(crate) redeemed_at: DateTime<Utc>,
    /// Who held the person before the redemption.
    pub(crate) holder_before: Option<Holder>,
    /// The bind it refused (a signup's), which a retry answers again.
    pub(crate) refused: Option<BindOutcome>,
}

impl Session {
    /// Whether the purpose binds the session's account once every check passed.
    pub(crate) fn binds(&self) -> bool {
        self.purpose == VerificationPurpose::Signup && self.account.is_some()
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
