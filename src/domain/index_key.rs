//! The keyed hash that lets us find a person by CI without storing the CI. A plain hash of a CI
//! is linkable across every site that hashes it; an HMAC under our own key is not.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Ci, Di};

/// The HMAC key (`CI_INDEX_KEY`). Losing it makes every stored person unfindable; leaking it
/// makes CIs guessable from hashes only by brute force over a space of real people, so keep it
/// in a secret store, not in the ConfigMap.
#[derive(Clone)]
pub struct CiIndexKey(Vec<u8>);

/// The lookup key stored for a CI or DI: hex of HMAC-SHA-256, 64 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PersonIndex(pub String);

#[derive(Debug, thiserror::Error)]
pub enum IndexKeyError {
    #[error("CI_INDEX_KEY is not valid base64")]
    NotBase64,
    #[error("CI_INDEX_KEY must decode to at least 32 bytes, got {0}")]
    TooShort(usize),
}

impl CiIndexKey {
    pub(crate) const MIN_LEN: usize = 32;

    pub fn from_base64(encoded: &str) -> Result<Self, IndexKeyError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| IndexKeyError::NotBase64)?;
        if bytes.len() < Self::MIN_LEN {
            return Err(IndexKeyError::TooShort(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// The lookup key of a CI: the hash of its canonical text.
    pub fn ci_index(&self, ci: &Ci) -> PersonIndex {
        self.digest(b"ci:", ci.expose())
    }

    /// The hash of a CI's text as received, canonical or not: what releases before CI was
    /// canonicalised stored, so `rekey` can tell a row it must move from a wrong CI_INDEX_KEY.
    pub fn ci_index_as_received(&self, raw: &str) -> PersonIndex {
        self.digest(b"ci:", raw)
    }

    pub(crate) fn di_index(&self, di: &Di) -> PersonIndex {
        self.digest(b"di:", di.expose())
    }

    /// The label keeps a CI and a DI that happen to be equal strings from colliding.
    fn digest(&self, label: &[u8], value: &str) -> PersonIndex {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(label);
        mac.update(value.as_bytes());
        PersonIndex(hex::encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for CiIndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CiIndexKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_keyed_stable_and_separates_ci_from_di() {
        let key = CiIndexKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        let other_key = CiIndexKey::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        let ci = Ci::parse("QUJD").unwrap();
        let di = Di::parse("QUJD").unwrap();
        assert_eq!(key.ci_index(&ci), key.ci_index(&ci));
        assert_eq!(key.ci_index(&ci).0.len(), 64);
        assert_ne!(key.ci_index(&ci), other_key.ci_index(&ci));
        assert_ne!(key.ci_index(&ci), key.di_index(&di));
        assert!(!key.ci_index(&ci).0.contains("QUJD"));
    }

    #[test]
    fn short_or_garbled_keys_are_refused() {
        assert!(matches!(
            CiIndexKey::from_base64("c2hvcnQ="),
            Err(IndexKeyError::TooShort(5))
        ));
        assert!(matches!(
            CiIndexKey::from_base64("***"),
            Err(IndexKeyError::NotBase64)
        ));
        assert!(
            !format!(
                "{:?}",
                CiIndexKey::from_base64(&STANDARD.encode([1u8; 32])).unwrap()
            )
            .contains('1')
        );
    }
}
