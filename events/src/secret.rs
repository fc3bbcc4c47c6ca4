use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A secret sealed with an AEAD key held by the platform: events and read models carry only this,
/// never the clear text. `key_id` names the key so that keys can rotate.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Sealed {
    /// Which platform key sealed it.
    pub key_id: String,
    /// Base64 nonce.
    pub nonce: String,
    /// Base64 ciphertext with its tag.
    pub ciphertext: String,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed(key {}, {} bytes)", self.key_id, self.ciphertext.len())
    }
}
