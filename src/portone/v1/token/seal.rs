//! The token as Redis holds it: sealed with AES-256-GCM under a key derived from the merchant's
//! `imp_secret` (HKDF-SHA-256), with the Redis key name as associated data. Whoever reads Redis
//! gets no usable credential; whoever writes Redis cannot plant a token (another merchant's,
//! say): a value that does not open is a miss, and is replaced.
//!
//! The nonce is derived from the token itself (HMAC under a second derived key), so one token
//! always seals to the same value: the compare-and-delete that drops a rejected token compares
//! sealed values. That reveals only whether two cached values hold the same token.

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::AccessToken;

type HmacSha256 = Hmac<Sha256>;

/// Marks the format, so a later change can tell its values apart.
const PREFIX: &str = "s1.";
const NONCE_LEN: usize = 12;

pub(super) struct TokenSeal {
    cipher: Aes256Gcm,
    nonce_key: [u8; 32],
    /// The Redis key the value lives under: a value copied to another key does not open.
    aad: Vec<u8>,
}

/// HKDF-SHA-256 (RFC 5869) for one 32-byte output block.
fn hkdf(secret: &[u8], info: &[u8]) -> [u8; 32] {
    let mut extract =
        <HmacSha256 as Mac>::new_from_slice(b"certification-service token cache").expect("any key length");
    extract.update(secret);
    let prk = extract.finalize().into_bytes();
    let mut expand = <HmacSha256 as Mac>::new_from_slice(&prk).expect("any key length");
    expand.update(info);
    expand.update(&[1]);
    expand.finalize().into_bytes().into()
}

impl TokenSeal {
    pub(super) fn new(imp_secret: &str, redis_key: &str) -> Self {
        let key = hkdf(imp_secret.as_bytes(), b"portone-v1 token/aes-256-gcm");
        Self {
            cipher: Aes256Gcm::new_from_slice(&key).expect("a 32-byte key"),
            nonce_key: hkdf(imp_secret.as_bytes(), b"portone-v1 token/nonce"),
            aad: redis_key.as_bytes().to_vec(),
        }
    }

    pub(super) fn seal(&self, token: &AccessToken) -> String {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.nonce_key).expect("any key length");
        mac.update(token.expose().as_bytes());
        let digest = mac.finalize().into_bytes();
        let nonce = &digest[..NONCE_LEN];
        let payload = Payload {
            msg: token.expose().as_bytes(),
            aad: &self.aad,
        };
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(nonce), payload)
            .expect("AES-GCM encryption of a short value cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", STANDARD.encode(blob))
    }

    /// The token, or `None` for anything we did not seal under this secret and key.
    pub(super) fn open(&self, stored: &str) -> Option<AccessToken> {
        let blob = STANDARD.decode(stored.strip_prefix(PREFIX)?).ok()?;
        if blob.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: &self.aad,
        };
        let plaintext = self.cipher.decrypt(Nonce::from_slice(nonce), payload).ok()?;
        String::from_utf8(plaintext).ok().map(AccessToken::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_values_sealed_under_this_secret_and_key_open() {
        let seal = TokenSeal::new("merchant-secret", "certification-service:portone-v1:token:abc");
        let token = AccessToken::new("a1b2c3d4e5".into());
        let sealed = seal.seal(&token);
        assert!(!sealed.contains("a1b2c3d4e5"));
        assert_eq!(seal.open(&sealed), Some(token.clone()));
        // Deterministic, so compare-and-delete can compare sealed values.
        assert_eq!(seal.seal(&token), sealed);
        // A planted plain token, another merchant's seal, another key, an altered value: misses.
        assert_eq!(seal.open("a1b2c3d4e5"), None);
        let other_merchant = TokenSeal::new("other-secret", "certification-service:portone-v1:token:abc");
        assert_eq!(seal.open(&other_merchant.seal(&token)), None);
        let other_key = TokenSeal::new("merchant-secret", "certification-service:portone-v1:token:def");
        assert_eq!(seal.open(&other_key.seal(&token)), None);
        let mut altered = sealed.clone();
        altered.pop();
        altered.push('A');
        assert_eq!(seal.open(&altered), None);
        assert_eq!(seal.open(""), None);
        assert_eq!(seal.open("s1."), None);
    }
}
