//! PKCE (RFC 7636), S256 only.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// Why a PKCE parameter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_challenge is required (PKCE with S256)")]
    MissingChallenge,
    #[error("code_challenge_method must be S256; `plain` and others are not supported")]
    UnsupportedMethod,
    #[error("code_challenge must be 43 base64url characters (the SHA-256 of the verifier)")]
    MalformedChallenge,
    #[error("code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~]")]
    MalformedVerifier,
}

/// Checks the challenge of an authorization request. A missing method means `plain` by RFC 7636,
/// so it is refused too.
pub fn check_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<String, PkceError> {
    let challenge = challenge.filter(|c| !c.is_empty()).ok_or(PkceError::MissingChallenge)?;
    if method != Some("S256") {
        return Err(PkceError::UnsupportedMethod);
    }
    let ok = challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(challenge.to_owned()) } else { Err(PkceError::MalformedChallenge) }
}

/// The S256 challenge of a verifier.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` answers `challenge`, compared in constant time.
pub fn verify(verifier: &str, challenge: &str) -> Result<bool, PkceError> {
    let ok_chars = verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !(43..=128).contains(&verifier.len()) || !ok_chars {
        return Err(PkceError::MalformedVerifier);
    }
    Ok(bool::from(s256(verifier).as_bytes().ct_eq(challenge.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn the_rfc_vector_verifies_and_a_wrong_verifier_does_not() {
        assert_eq!(s256(VERIFIER), CHALLENGE);
        assert_eq!(verify(VERIFIER, CHALLENGE), Ok(true));
        let wrong = format!("{}A", &VERIFIER[..VERIFIER.len() - 1]);
        assert_eq!(verify(&wrong, CHALLENGE), Ok(false));
        assert_eq!(verify("short", CHALLENGE), Err(PkceError::MalformedVerifier));
        assert_eq!(verify(&format!("{VERIFIER} "), CHALLENGE), Err(PkceError::MalformedVerifier));
    }

    #[test]
    fn only_s256_challenges_are_accepted() {
        assert_eq!(check_challenge(Some(CHALLENGE), Some("S256")), Ok(CHALLENGE.to_owned()));
        assert_eq!(check_challenge(None, Some("S256")), Err(PkceError::MissingChallenge));
        assert_eq!(check_challenge(Some(""), Some("S256")), Err(PkceError::MissingChallenge));
        assert_eq!(check_challenge(Some(CHALLENGE), Some("plain")), Err(PkceError::UnsupportedMethod));
        assert_eq!(check_challenge(Some(CHALLENGE), None), Err(PkceError::UnsupportedMethod));
        assert_eq!(check_challenge(Some("abc"), Some("S256")), Err(PkceError::MalformedChallenge));
    }
}
