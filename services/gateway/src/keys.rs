//! API keys: `dk_live_` + an 8-character lookup prefix + a 32-character secret.
//!
//! Only the prefix and a bcrypt hash of the whole key are stored; the key is shown once.

use rand::RngExt as _;

pub const KEY_SCHEME: &str = "dk_live_";
const PREFIX_LEN: usize = 8;
const SECRET_LEN: usize = 32;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A freshly generated key.
pub struct NewKey {
    /// The whole key: give it to the user once, never log or store it.
    pub plaintext: String,
    /// `dk_live_` + the lookup prefix: public, unique.
    pub prefix: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewKey({}…)", self.prefix)
    }
}

/// `len` random lowercase letters and digits.
pub(crate) fn random(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

pub fn generate() -> NewKey {
    let prefix = format!("{KEY_SCHEME}{}", random(PREFIX_LEN));
    let plaintext = format!("{prefix}{}", random(SECRET_LEN));
    NewKey { plaintext, prefix }
}

/// Splits a presented key into its lookup prefix, or says why it cannot be a key.
pub fn parse(key: &str) -> Result<&str, &'static str> {
    let rest = key.strip_prefix(KEY_SCHEME).ok_or("API keys start with `dk_live_`")?;
    if rest.len() != PREFIX_LEN + SECRET_LEN || !rest.bytes().all(|b| ALPHABET.contains(&b)) {
        return Err("the API key is malformed (wrong length or characters); copy it again whole");
    }
    Ok(&key[..KEY_SCHEME.len() + PREFIX_LEN])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_to_their_prefix() {
        let k = generate();
        assert_eq!(k.plaintext.len(), KEY_SCHEME.len() + PREFIX_LEN + SECRET_LEN);
        assert_eq!(parse(&k.plaintext).unwrap(), k.prefix);
        assert_ne!(generate().plaintext, k.plaintext);
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "dk_live_",
            "sk_live_abcdefgh0123456789012345678901234567",
            "dk_live_ABCDEFGH01234567890123456789012345678901",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let k = generate();
        assert!(parse(&k.plaintext[..k.plaintext.len() - 1]).is_err());
        assert!(parse(&format!("{}é", &k.plaintext[..k.plaintext.len() - 1])).is_err());
    }
}
