//! Opaque one-use secrets (authorization codes, refresh tokens): 32 random bytes, given out
//! base64url-encoded, stored only as their SHA-256, compared in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// A freshly generated secret. `Debug` does not show it, so it cannot reach a log by accident.
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::rng().random();
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The value to hand to the client, once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> [u8; 32] {
        digest(&self.0)
    }
}

/// What is stored for a presented secret.
pub fn digest(presented: &str) -> [u8; 32] {
    Sha256::digest(presented.as_bytes()).into()
}

/// Whether `presented` is the secret whose digest is `stored`, in constant time.
pub fn matches(presented: &str, stored: &[u8; 32]) -> bool {
    bool::from(digest(presented).ct_eq(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_distinct_and_matched_by_digest() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_eq!(a.expose().len(), 43, "32 bytes base64url");
        assert_ne!(a.expose(), b.expose());
        assert!(matches(a.expose(), &a.digest()));
        assert!(!matches(b.expose(), &a.digest()));
        assert_eq!(format!("{a:?}"), "Secret(…)");
    }
}
