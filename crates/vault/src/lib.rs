//! Secrets at rest: values are sealed with XChaCha20-Poly1305 under a key from the operator's
//! configuration before they enter an event or a read model, and opened only where they are used
//! (the runtime, or `include_env`). Keys are named, so a new key can seal while old ones still
//! open: rotation is adding a key in front.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use events::Sealed;
use rand::RngExt as _;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("secret keys must be `<id>:<base64 of 32 bytes>` separated by commas (the first seals); {0}")]
    BadKeys(String),
    #[error("this value was sealed with key `{0}`, which the configuration no longer has")]
    UnknownKey(String),
    #[error("a sealed value does not open: it was altered or the key is wrong")]
    Corrupt,
}

/// The platform's sealing keys; the first one seals.
#[derive(Clone)]
pub struct Keyring {
    current: String,
    keys: BTreeMap<String, XChaCha20Poly1305>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring(current {}, {} keys)", self.current, self.keys.len())
    }
}

impl Keyring {
    /// Parses `id:base64key[,id:base64key…]`.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let mut current = None;
        let mut keys = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, key) = part.split_once(':').ok_or_else(|| Error::BadKeys("a key has no `id:`".into()))?;
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(Error::BadKeys(format!("key id `{id}` must be letters, digits, `-` or `_`")));
            }
            let bytes = B64.decode(key).map_err(|e| Error::BadKeys(format!("key `{id}`: {e}")))?;
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
                .map_err(|_| Error::BadKeys(format!("key `{id}` is {} bytes, not 32", bytes.len())))?;
            current.get_or_insert_with(|| id.to_owned());
            keys.insert(id.to_owned(), cipher);
        }
        let current = current.ok_or_else(|| Error::BadKeys("no key given".into()))?;
        Ok(Self { current, keys })
    }

    /// A new random key in the configuration's format, for `id`.
    pub fn generate_spec(id: &str) -> String {
        let key: [u8; 32] = rand::rng().random();
        format!("{id}:{}", B64.encode(key))
    }

    pub fn seal(&self, plaintext: &str, context: &str) -> Sealed {
        let cipher = &self.keys[&self.current];
        let nonce: [u8; 24] = rand::rng().random();
        let ciphertext = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext.as_bytes(), aad: context.as_bytes() })
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        Sealed { key_id: self.current.clone(), nonce: B64.encode(nonce), ciphertext: B64.encode(ciphertext) }
    }

    /// Opens a value sealed for the same `context` (e.g. the service id and variable name), so a
    /// sealed value copied elsewhere does not open.
    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<String, Error> {
        let cipher = self.keys.get(&sealed.key_id).ok_or_else(|| Error::UnknownKey(sealed.key_id.clone()))?;
        let nonce = B64.decode(&sealed.nonce).map_err(|_| Error::Corrupt)?;
        let ciphertext = B64.decode(&sealed.ciphertext).map_err(|_| Error::Corrupt)?;
        if nonce.len() != 24 {
            return Err(Error::Corrupt);
        }
        let clear = cipher
            .decrypt(XNonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: context.as_bytes() })
            .map_err(|_| Error::Corrupt)?;
        String::from_utf8(clear).map_err(|_| Error::Corrupt)
    }
}

/// The context a service's environment variable is sealed in: the value opens only for that
/// service and that name.
pub fn env_context(service_id: &str, name: &str) -> String {
    format!("env/{service_id}/{name}")
}

/// The context a resource's credentials are sealed in: they open only for that resource.
pub fn resource_context(resource_id: &str) -> String {
    format!("resource/{resource_id}")
}

/// The context a zone's certificate key is sealed in.
pub fn zone_context(zone_id: &str) -> String {
    format!("zone/{zone_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_context_and_after_rotation() {
        let k1 = Keyring::generate_spec("k1");
        let old = Keyring::parse(&k1).unwrap();
        let sealed = old.seal("s3cret", "svc/A");
        assert!(!sealed.ciphertext.contains("s3cret"));
        assert_eq!(old.open(&sealed, "svc/A").unwrap(), "s3cret");
        assert_eq!(old.open(&sealed, "svc/B"), Err(Error::Corrupt));

        let rotated = Keyring::parse(&format!("{},{k1}", Keyring::generate_spec("k2"))).unwrap();
        assert_eq!(rotated.open(&sealed, "svc/A").unwrap(), "s3cret");
        assert_eq!(rotated.seal("x", "c").key_id, "k2");
        let without = Keyring::parse(&Keyring::generate_spec("k3")).unwrap();
        assert_eq!(without.open(&sealed, "svc/A"), Err(Error::UnknownKey("k1".into())));
    }

    #[test]
    fn bad_key_specs_say_what_is_wrong() {
        assert!(matches!(Keyring::parse(""), Err(Error::BadKeys(_))));
        assert!(matches!(Keyring::parse("k1"), Err(Error::BadKeys(_))));
        assert!(matches!(Keyring::parse("k1:AAAA"), Err(Error::BadKeys(m)) if m.contains("not 32")));
        assert!(matches!(Keyring::parse("k 1:AAAA"), Err(Error::BadKeys(_))));
    }
}
