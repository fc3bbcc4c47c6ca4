//! Authorization codes and refresh-token families.
//!
//! Codes are single-use and short-lived; a refresh token rotates on every use, and presenting a
//! rotated one again (a sign that it leaked) revokes its whole family. Secrets are kept only as
//! SHA-256 digests and matched in constant time. Time is passed in, so expiry is tested without
//! sleeping.
//!
//! State is in memory for now: codes live 60 s, but refresh families are lost on restart (the
//! client then signs in again). Durable families are future work.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use events::UserId;

use super::pkce;
use super::secret::{self, Secret};

/// RFC 6749 §5.2 token endpoint errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidClient(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("grant_type must be `authorization_code` or `refresh_token`")]
    UnsupportedGrantType,
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient(_) => "invalid_client",
            TokenError::InvalidGrant(_) => "invalid_grant",
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
        }
    }
}

/// What the user approved, carried by a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    /// The protected resource the token will be bound to.
    pub resource: String,
    pub user_id: UserId,
}

/// What a refresh token family stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshGrant {
    pub client_id: String,
    pub resource: String,
    pub user_id: UserId,
}

/// Caps the maps so that a flood cannot grow memory without bound.
const MAX_ENTRIES: usize = 100_000;

struct Family {
    grant: RefreshGrant,
    /// Digest of the one refresh token that is valid now.
    current: [u8; 32],
    revoked: bool,
    /// The access tokens (API key prefixes) issued in this family, revoked with it.
    keys: Vec<String>,
}

#[derive(Default)]
struct Inner {
    codes: HashMap<[u8; 32], (CodeGrant, Instant)>,
    /// Every refresh token digest ever issued (current or rotated) → its family.
    refresh: HashMap<[u8; 32], usize>,
    families: Vec<Family>,
}

/// A successful refresh: the grant and the next refresh token.
#[derive(Debug)]
pub struct Rotated {
    pub family: usize,
    pub grant: RefreshGrant,
    pub refresh_token: Secret,
    /// The access tokens issued before in this family: the caller revokes them.
    pub superseded: Vec<String>,
}

/// A refused refresh; when a rotated token was replayed, `revoke` lists the family's keys.
#[derive(Debug)]
pub struct Refused {
    pub error: TokenError,
    pub revoke: Vec<String>,
}

pub struct Grants {
    code_ttl: Duration,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants").field("code_ttl", &self.code_ttl).finish_non_exhaustive()
    }
}

impl Grants {
    pub fn new(code_ttl: Duration) -> Self {
        Self { code_ttl, inner: Mutex::default() }
    }

    /// Issues a code for an approved request.
    pub fn issue_code(&self, grant: CodeGrant, now: Instant) -> Secret {
        let code = Secret::generate();
        let mut inner = self.inner.lock().expect("lock");
        if inner.codes.len() >= MAX_ENTRIES {
            inner.codes.retain(|_, (_, expires)| *expires > now);
        }
        inner.codes.insert(code.digest(), (grant, now + self.code_ttl));
        code
    }

    /// Redeems a code: it is consumed whatever the outcome, then checked for expiry, client,
    /// redirect URI and PKCE verifier.
    pub fn redeem_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        now: Instant,
    ) -> Result<CodeGrant, TokenError> {
        let invalid = |m: &str| TokenError::InvalidGrant(m.to_owned());
        let verifier = verifier.ok_or_else(|| TokenError::InvalidRequest("code_verifier is required".into()))?;
        let digest = secret::digest(code);
        let (grant, expires) = self
            .inner
            .lock()
            .expect("lock")
            .codes
            .remove(&digest)
            .ok_or_else(|| invalid("the authorization code is unknown or was already used; authorize again"))?;
        if now >= expires {
            return Err(invalid("the authorization code expired; authorize again"));
        }
        if !secret::matches(client_id, &secret::digest(&grant.client_id)) {
            return Err(invalid("the authorization code was issued to another client"));
        }
        if redirect_uri != Some(grant.redirect_uri.as_str()) {
            return Err(invalid("redirect_uri must be the one sent to the authorization endpoint"));
        }
        match pkce::verify(verifier, &grant.code_challenge) {
            Ok(true) => Ok(grant),
            Ok(false) => Err(invalid("code_verifier does not match the code_challenge")),
            Err(e) => Err(TokenError::InvalidRequest(e.to_string())),
        }
    }

    /// Starts a refresh family for a freshly issued access token (`key_prefix`).
    pub fn start_family(&self, grant: RefreshGrant, key_prefix: String) -> (usize, Secret) {
        let token = Secret::generate();
        let mut inner = self.inner.lock().expect("lock");
        let family = inner.families.len();
        inner.families.push(Family { grant, current: token.digest(), revoked: false, keys: vec![key_prefix] });
        inner.refresh.insert(token.digest(), family);
        (family, token)
    }

    /// Rotates a refresh token. A rotated token presented again revokes the family.
    pub fn rotate(&self, presented: &str, client_id: &str) -> Result<Rotated, Refused> {
        let refused = |m: &str| Refused { error: TokenError::InvalidGrant(m.to_owned()), revoke: vec![] };
        let digest = secret::digest(presented);
        let mut inner = self.inner.lock().expect("lock");
        let id = *inner.refresh.get(&digest).ok_or_else(|| refused("the refresh token is unknown"))?;
        let family = &mut inner.families[id];
        if family.revoked {
            return Err(refused("the refresh token was revoked; authorize again"));
        }
        if !secret::matches(presented, &family.current) {
            family.revoked = true;
            return Err(Refused {
                error: TokenError::InvalidGrant(
                    "the refresh token was already used; every token of this grant is now revoked, authorize again"
                        .into(),
                ),
                revoke: std::mem::take(&mut family.keys),
            });
        }
        if family.grant.client_id != client_id {
            return Err(refused("the refresh token was issued to another client"));
        }
        let next = Secret::generate();
        family.current = next.digest();
        let superseded = std::mem::take(&mut family.keys);
        let grant = family.grant.clone();
        inner.refresh.insert(next.digest(), id);
        Ok(Rotated { family: id, grant, refresh_token: next, superseded })
    }

    /// Records the access token issued by a rotation, so that a later revocation covers it.
    pub fn add_key(&self, family: usize, key_prefix: String) {
        if let Some(f) = self.inner.lock().expect("lock").families.get_mut(family) {
            f.keys.push(key_prefix);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const CB: &str = "http://127.0.0.1:4567/cb";

    fn grant() -> CodeGrant {
        CodeGrant {
            client_id: "c1".into(),
            redirect_uri: CB.into(),
            code_challenge: CHALLENGE.into(),
            resource: "https://d.example/mcp".into(),
            user_id: UserId::new(),
        }
    }

    #[test]
    fn a_code_redeems_once() {
        let g = Grants::new(Duration::from_secs(60));
        let now = Instant::now();
        let code = g.issue_code(grant(), now);
        assert_eq!(g.redeem_code(code.expose(), "c1", Some(CB), Some(VERIFIER), now).unwrap().client_id, "c1");
        let again = g.redeem_code(code.expose(), "c1", Some(CB), Some(VERIFIER), now).unwrap_err();
        assert_eq!(again.code(), "invalid_grant");
    }

    #[test]
    fn expired_codes_wrong_verifier_client_or_redirect_are_invalid_grants_and_burn_the_code() {
        let g = Grants::new(Duration::from_secs(60));
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let wrong_verifier = format!("{}A", &VERIFIER[..42]);
        let cases: [(&str, Option<&str>, &str, Instant); 4] = [
            ("c1", Some(CB), wrong_verifier.as_str(), now),
            ("c2", Some(CB), VERIFIER, now),
            ("c1", Some("http://127.0.0.1:4567/other"), VERIFIER, now),
            ("c1", Some(CB), VERIFIER, later),
        ];
        for (client, redirect, verifier, at) in cases {
            let code = g.issue_code(grant(), now);
            let e = g.redeem_code(code.expose(), client, redirect, Some(verifier), at).unwrap_err();
            assert_eq!(e.code(), "invalid_grant", "{client} {redirect:?} {e}");
            // Burnt: even the right request fails now.
            assert!(g.redeem_code(code.expose(), "c1", Some(CB), Some(VERIFIER), now).is_err());
        }
        let code = g.issue_code(grant(), now);
        assert_eq!(g.redeem_code(code.expose(), "c1", Some(CB), None, now).unwrap_err().code(), "invalid_request");
    }

    #[test]
    fn refresh_tokens_rotate_and_a_replayed_one_revokes_the_family() {
        let g = Grants::new(Duration::from_secs(60));
        let rg = RefreshGrant { client_id: "c1".into(), resource: "r".into(), user_id: UserId::new() };
        let (family, first) = g.start_family(rg.clone(), "dk_live_aaaaaaaa".into());
        let r = g.rotate(first.expose(), "c1").unwrap();
        assert_eq!(r.grant, rg);
        assert_eq!(r.superseded, vec!["dk_live_aaaaaaaa".to_owned()]);
        g.add_key(family, "dk_live_bbbbbbbb".into());
        assert!(g.rotate(r.refresh_token.expose(), "c2").is_err(), "another client");
        // The old token again: refused, and the family's keys are to be revoked.
        let replay = g.rotate(first.expose(), "c1").unwrap_err();
        assert_eq!(replay.error.code(), "invalid_grant");
        assert_eq!(replay.revoke, vec!["dk_live_bbbbbbbb".to_owned()]);
        // The newest token of the family is dead too.
        assert!(g.rotate(r.refresh_token.expose(), "c1").is_err());
        assert!(g.rotate("never-issued", "c1").is_err());
    }
}
