//! Encryption at rest for CI and DI: AES-256-GCM under keys named by an id, so keys can rotate.
//! The first key seals; every key opens. The purpose ("ci", "di") and the row's lookup hash are
//! bound in as associated data, so a CI ciphertext copied into the DI column, or into another
//! person's row, fails to open instead of passing for theirs.

use std::fmt;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use rand::RngCore;

use super::PersonIndex;

const NONCE_LEN: usize = 12;
/// Marks a blob sealed with its row's lookup hash in the associated data. Blobs without it
/// were sealed before rows were bound; they still open, and `rekey` re-seals them bound.
const ROW_BOUND: &str = "r1.";
/// Stored with each row; short and printable.
const MAX_KEY_ID_LEN: usize = 32;

/// `CI_ENCRYPTION_KEYS`: `id:base64key,id:base64key`, the first seals, all open.
#[derive(Clone)]
pub struct SealingKeys {
    keys: Vec<(String, Aes256Gcm)>,
}

/// A sealed value as stored: the key id, and base64 of nonce ‖ ciphertext ‖ tag.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub blob: String,
}

impl Sealed {
    /// Whether this value is bound to its row (sealed since rows were bound).
    pub fn is_row_bound(&self) -> bool {
        self.blob.starts_with(ROW_BOUND)
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// What a sealed value protects, bound into the ciphertext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Ci,
    Di,
    /// A verification session's expected person, bound to the session's id.
    ExpectedPerson,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::Ci => b"certification-service/ci/v1",
            Purpose::Di => b"certification-service/di/v1",
            Purpose::ExpectedPerson => b"certification-service/expected-person/v1",
        }
    }

    /// The purpose and the row: the person's CI lookup hash, which never changes for a row.
    fn row_aad(self, row: &str) -> Vec<u8> {
        let mut aad = self.aad().to_vec();
        aad.push(0);
        aad.extend_from_slice(row.as_bytes());
        aad
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealingError {
    #[error("CI_ENCRYPTION_KEYS is empty")]
    NoKeys,
    #[error("CI_ENCRYPTION_KEYS entry {0} is not `id:base64key`")]
    Malformed(usize),
    #[error("CI_ENCRYPTION_KEYS entry {0}: the id must be 1-32 characters of [A-Za-z0-9._-]")]
    BadId(usize),
    #[error("CI_ENCRYPTION_KEYS entry {0}: the key must be base64 of exactly 32 bytes")]
    BadKey(usize),
    #[error("CI_ENCRYPTION_KEYS names the key id {0:?} twice")]
    DuplicateId(String),
    #[error("no key with id {0:?} in CI_ENCRYPTION_KEYS: it is needed to read stored rows")]
    UnknownKey(String),
    #[error("a stored ciphertext does not open: wrong key, or altered")]
    Corrupt,
}

impl SealingKeys {
    pub fn parse(spec: &str) -> Result<Self, SealingError> {
        let mut keys: Vec<(String, Aes256Gcm)> = Vec::new();
        for (index, entry) in spec
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .enumerate()
        {
            let position = index + 1;
            let (id, encoded) = entry.split_once(':').ok_or(SealingError::Malformed(position))?;
            let id = id.trim();
            let id_ok = !id.is_empty()
                && id.len() <= MAX_KEY_ID_LEN
                && id
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte));
            if !id_ok {
                return Err(SealingError::BadId(position));
            }
            let bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|_| SealingError::BadKey(position))?;
            let cipher = (bytes.len() == 32)
                .then(|| Aes256Gcm::new_from_slice(&bytes).ok())
                .flatten()
                .ok_or(SealingError::BadKey(position))?;
            if keys.iter().any(|(known, _)| known == id) {
                return Err(SealingError::DuplicateId(id.to_owned()));
            }
            keys.push((id.to_owned(), cipher));
        }
        if keys.is_empty() {
            return Err(SealingError::NoKeys);
        }
        Ok(Self { keys })
    }

    /// The id new writes use.
    pub(crate) fn primary_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Seals `plaintext` for the person row whose CI lookup hash is `row`.
    pub fn seal(&self, purpose: Purpose, row: &PersonIndex, plaintext: &str) -> Sealed {
        self.seal_row(purpose, &row.0, plaintext)
    }

    /// Opens a value stored in the row whose CI lookup hash is `row`.
    pub fn open(&self, purpose: Purpose, row: &PersonIndex, sealed: &Sealed) -> Result<String, SealingError> {
        self.open_row(purpose, &row.0, sealed)
    }

    /// Seals `plaintext` for the row whose unchanging key is `row` (a CI hash, a session id).
    pub(crate) fn seal_row(&self, purpose: Purpose, row: &str, plaintext: &str) -> Sealed {
        let (key_id, cipher) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        // A random 96-bit nonce per value: safe far beyond the number of people we will store.
        rand::rng().fill_bytes(&mut nonce);
        let aad = purpose.row_aad(row);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: &aad,
        };
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("AES-GCM encryption of a short value cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        Sealed {
            key_id: key_id.clone(),
            blob: format!("{ROW_BOUND}{}", STANDARD.encode(blob)),
        }
    }

    /// Opens a value sealed by [`SealingKeys::seal_row`] for `row`.
    pub(crate) fn open_row(
        &self,
        purpose: Purpose,
        row: &str,
        sealed: &Sealed,
    ) -> Result<String, SealingError> {
        let cipher = self
            .keys
            .iter()
            .find(|(id, _)| *id == sealed.key_id)
            .map(|(_, cipher)| cipher)
            .ok_or_else(|| SealingError::UnknownKey(sealed.key_id.clone()))?;
        let (encoded, aad) = match sealed.blob.strip_prefix(ROW_BOUND) {
            Some(encoded) => (encoded, purpose.row_aad(row)),
            None => (sealed.blob.as_str(), purpose.aad().to_vec()),
        };
        let blob = STANDARD.decode(encoded).map_err(|_| SealingError::Corrupt)?;
        if blob.len() <= NONCE_LEN {
            return Err(SealingError::Corrupt);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: &aad,
        };
        let plaintext = cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| SealingError::Corrupt)?;
        String::from_utf8(plaintext).map_err(|_| SealingError::Corrupt)
    }
}

impl fmt::Debug for SealingKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("SealingKeys")
            .field("ids", &ids)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    fn row(name: &str) -> PersonIndex {
        PersonIndex(name.repeat(64 / name.len()))
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let old = SealingKeys::parse(&format!("k1:{}", key(1))).unwrap();
        let sealed_old = old.seal(Purpose::Ci, &row("a"), "CI-VALUE");
        assert_eq!(sealed_old.key_id, "k1");
        let rotated = SealingKeys::parse(&format!("k2:{}, k1:{}", key(2), key(1))).unwrap();
        assert_eq!(
            rotated.open(Purpose::Ci, &row("a"), &sealed_old).unwrap(),
            "CI-VALUE"
        );
        let sealed_new = rotated.seal(Purpose::Ci, &row("a"), "CI-VALUE");
        assert_eq!(sealed_new.key_id, "k2");
        assert_ne!(sealed_new.blob, sealed_old.blob);
        assert_eq!(
            old.open(Purpose::Ci, &row("a"), &sealed_new),
            Err(SealingError::UnknownKey("k2".into()))
        );
    }

    #[test]
    fn a_ci_ciphertext_does_not_open_as_a_di_or_when_altered() {
        let keys = SealingKeys::parse(&format!("k1:{}", key(1))).unwrap();
        let sealed = keys.seal(Purpose::Ci, &row("a"), "CI-VALUE");
        assert_eq!(
            keys.open(Purpose::Di, &row("a"), &sealed),
            Err(SealingError::Corrupt)
        );
        let mut bytes = STANDARD
            .decode(sealed.blob.trim_start_matches(ROW_BOUND))
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = Sealed {
            blob: format!("{ROW_BOUND}{}", STANDARD.encode(bytes)),
            ..sealed.clone()
        };
        assert_eq!(
            keys.open(Purpose::Ci, &row("a"), &altered),
            Err(SealingError::Corrupt)
        );
        // Two seals of one value differ: nothing links two rows by ciphertext.
        assert_ne!(keys.seal(Purpose::Ci, &row("a"), "CI-VALUE").blob, sealed.blob);
    }

    #[test]
    fn a_ciphertext_moved_to_another_row_does_not_open() {
        let keys = SealingKeys::parse(&format!("k1:{}", key(1))).unwrap();
        let sealed = keys.seal(Purpose::Ci, &row("a"), "CI-VALUE");
        assert!(sealed.is_row_bound());
        assert_eq!(
            keys.open(Purpose::Ci, &row("b"), &sealed),
            Err(SealingError::Corrupt)
        );
        // Without its marker, a row-bound value is not taken for a legacy one either.
        let unmarked = Sealed {
            blob: sealed.blob.trim_start_matches(ROW_BOUND).to_owned(),
            ..sealed.clone()
        };
        assert_eq!(
            keys.open(Purpose::Ci, &row("a"), &unmarked),
            Err(SealingError::Corrupt)
        );
    }

    #[test]
    fn values_sealed_before_rows_were_bound_still_open() {
        let keys = SealingKeys::parse(&format!("k1:{}", key(1))).unwrap();
        let (_, cipher) = &keys.keys[0];
        let nonce = [7u8; NONCE_LEN];
        let payload = Payload {
            msg: b"CI-VALUE".as_slice(),
            aad: Purpose::Ci.aad(),
        };
        let mut blob = nonce.to_vec();
        blob.extend(cipher.encrypt(Nonce::from_slice(&nonce), payload).unwrap());
        let legacy = Sealed {
            key_id: "k1".into(),
            blob: STANDARD.encode(blob),
        };
        assert!(!legacy.is_row_bound());
        assert_eq!(keys.open(Purpose::Ci, &row("a"), &legacy).unwrap(), "CI-VALUE");
    }

    #[test]
    fn bad_specs_are_refused_without_echoing_the_key() {
        assert_eq!(SealingKeys::parse("").unwrap_err(), SealingError::NoKeys);
        assert_eq!(
            SealingKeys::parse("nokey").unwrap_err(),
            SealingError::Malformed(1)
        );
        assert_eq!(
            SealingKeys::parse(&format!("bad id:{}", key(1))).unwrap_err(),
            SealingError::BadId(1)
        );
        assert_eq!(
            SealingKeys::parse(&format!("k1:{}", STANDARD.encode([1u8; 16]))).unwrap_err(),
            SealingError::BadKey(1)
        );
        assert_eq!(
            SealingKeys::parse(&format!("k1:{},k1:{}", key(1), key(2))).unwrap_err(),
            SealingError::DuplicateId("k1".into())
        );
        let debug = format!("{:?}", SealingKeys::parse(&format!("k1:{}", key(1))).unwrap());
        assert!(!debug.contains(&key(1)), "{debug}");
    }
}
