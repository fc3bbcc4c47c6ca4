//! Authorization codes and refresh-token families.
//!
//! Codes are single-use and short-lived; a refresh token rotates on every use, and presenting a
//! rotated one again (a sign that it leaked) revokes its whole family. Secrets are kept only as
//! SHA-256 digests (in Postgres, so any gateway replica redeems them and a restart loses none)
//! and matched in constant time. The decisions are pure functions of the stored state and the
//! time, tested without a database or sleeping.

use chrono::{DateTime, Duration, Utc};
use events::UserId;
use serde::{Deserialize, Serialize};
use store::Store;
use store::credentials::Family;

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
    /// The store failed: retry (503, never a 500).
    #[error("the authorization server is temporarily unavailable; retry in a few seconds")]
    Unavailable,
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient(_) => "invalid_client",
            TokenError::InvalidGrant(_) => "invalid_grant",
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
            TokenError::Unavailable => "temporarily_unavailable",
        }
    }
}

fn unavailable(e: store::Error) -> TokenError {
    tracing::error!(error = %e, "oauth: the grant store failed");
    TokenError::Unavailable
}

/// What the user approved, carried by a code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    /// The protected resource the token will be bound to.
    pub resource: String,
    pub user_id: UserId,
}

/// What a refresh token family stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshGrant {
    pub client_id: String,
    pub resource: String,
    pub user_id: UserId,
}

/// A successful refresh: the grant and the next refresh token.
#[derive(Debug)]
pub struct Rotated {
    pub family: String,
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

/// Checks a taken code against the token request. The code is already consumed, whatever
/// this answers.
pub fn check_code(
    grant: CodeGrant,
    expires: DateTime<Utc>,
    now: DateTime<Utc>,
    client_id: &str,
    redirect_uri: Option<&str>,
    verifier: &str,
) -> Result<CodeGrant, TokenError> {
    let invalid = |m: &str| TokenError::InvalidGrant(m.to_owned());
    if now >= expires {
        return Err(invalid("the authorization code expired; authorize again"));
    }
    if grant.client_id != client_id {
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

/// Rotates `family` for the presented refresh token; returns the outcome and the digest of
/// the new token to record. A rotated token presented again revokes the family.
pub fn rotate_family(
    family: &mut Family,
    presented: &str,
    client_id: &str,
) -> (Result<Rotated, Refused>, Option<Vec<u8>>) {
    let refused = |m: &str| Refused { error: TokenError::InvalidGrant(m.to_owned()), revoke: vec![] };
    if family.revoked {
        return (Err(refused("the refresh token was revoked; authorize again")), None);
    }
    let current: Option<[u8; 32]> = family.current.as_slice().try_into().ok();
    if !current.is_some_and(|c| secret::matches(presented, &c)) {
        family.revoked = true;
        let replay = Refused {
            error: TokenError::InvalidGrant(
                "the refresh token was already used; every token of this grant is now revoked, authorize again".into(),
            ),
            revoke: std::mem::take(&mut family.keys),
        };
        return (Err(replay), None);
    }
    let grant: RefreshGrant = match serde_json::from_value(family.grant.clone()) {
        Ok(g) => g,
        Err(_) => return (Err(refused("the refresh token's grant cannot be read; authorize again")), None),
    };
    if grant.client_id != client_id {
        return (Err(refused("the refresh token was issued to another client")), None);
    }
    let next = Secret::generate();
    family.current = next.digest().to_vec();
    let superseded = std::mem::take(&mut family.keys);
    let digest = family.current.clone();
    (Ok(Rotated { family: family.id.clone(), grant, refresh_token: next, superseded }), Some(digest))
}

/// The grants, kept in Postgres.
#[derive(Debug, Clone)]
pub struct Grants {
    code_ttl: std::time::Duration,
    store: Store,
}

impl Grants {
    pub fn new(store: Store, code_ttl: std::time::Duration) -> Self {
        Self { code_ttl, store }
    }

    /// Issues a code for an approved request.
    pub async fn issue_code(&self, grant: &CodeGrant) -> Result<Secret, TokenError> {
        let code = Secret::generate();
        let ttl = Duration::from_std(self.code_ttl).unwrap_or(Duration::seconds(60));
        let data = serde_json::to_value(grant).expect("a grant serialises");
        self.store.put_oauth_code(&code.digest(), &data, Utc::now() + ttl).await.map_err(unavailable)?;
        Ok(code)
    }

    /// Redeems a code: it is consumed whatever the outcome, then checked for expiry, client,
    /// redirect URI and PKCE verifier.
    pub async fn redeem_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
    ) -> Result<CodeGrant, TokenError> {
        let verifier = verifier.ok_or_else(|| TokenError::InvalidRequest("code_verifier is required".into()))?;
        let unknown = || {
            TokenError::InvalidGrant("the authorization code is unknown or was already used; authorize again".into())
        };
        let (data, expires) =
            self.store.take_oauth_code(&secret::digest(code)).await.map_err(unavailable)?.ok_or_else(unknown)?;
        let grant: CodeGrant = serde_json::from_value(data).map_err(|_| unknown())?;
        check_code(grant, expires, Utc::now(), client_id, redirect_uri, verifier)
    }

    /// Starts a refresh family for a freshly issued access token (`key_prefix`).
    pub async fn start_family(&self, grant: &RefreshGrant, key_prefix: &str) -> Result<Secret, TokenError> {
        let token = Secret::generate();
        let id = ulid::Ulid::generate().to_string();
        let data = serde_json::to_value(grant).expect("a grant serialises");
        self.store.start_family(&id, &data, &token.digest(), key_prefix).await.map_err(unavailable)?;
        Ok(token)
    }

    /// Rotates a refresh token. A rotated token presented again revokes the family.
    pub async fn rotate(&self, presented: &str, client_id: &str) -> Result<Rotated, Refused> {
        let outcome = self
            .store
            .update_family(&secret::digest(presented), |family| rotate_family(family, presented, client_id))
            .await
            .map_err(|e| Refused { error: unavailable(e), revoke: vec![] })?;
        outcome.unwrap_or_else(|| {
            Err(Refused { error: TokenError::InvalidGrant("the refresh token is unknown".into()), revoke: vec![] })
        })
    }

    /// Records the access token issued by a rotation, so that a later revocation covers it.
    pub async fn add_key(&self, family: &str, key_prefix: &str) -> Result<(), TokenError> {
        self.store.add_family_key(family, key_prefix).await.map_err(unavailable)
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
    fn a_code_checks_expiry_client_redirect_and_verifier() {
        let now = Utc::now();
        let expires = now + Duration::seconds(60);
        assert_eq!(check_code(grant(), expires, now, "c1", Some(CB), VERIFIER).unwrap().client_id, "c1");
        let wrong_verifier = format!("{}A", &VERIFIER[..42]);
        let cases: [(&str, Option<&str>, &str, DateTime<Utc>); 5] = [
            ("c1", Some(CB), wrong_verifier.as_str(), now),
            ("c2", Some(CB), VERIFIER, now),
            ("c1", Some("http://127.0.0.1:4567/other"), VERIFIER, now),
            ("c1", None, VERIFIER, now),
            ("c1", Some(CB), VERIFIER, expires),
        ];
        for (client, redirect, verifier, at) in cases {
            let e = check_code(grant(), expires, at, client, redirect, verifier).unwrap_err();
            assert_eq!(e.code(), "invalid_grant", "{client} {redirect:?} {e}");
        }
        assert_eq!(check_code(grant(), expires, now, "c1", Some(CB), "short").unwrap_err().code(), "invalid_request");
    }

    fn family(token: &Secret) -> Family {
        let rg = RefreshGrant { client_id: "c1".into(), resource: "r".into(), user_id: UserId::new() };
        Family {
            id: "f1".into(),
            grant: serde_json::to_value(rg).unwrap(),
            current: token.digest().to_vec(),
            revoked: false,
            keys: vec!["dk_live_aaaaaaaa".into()],
        }
    }

    #[test]
    fn refresh_tokens_rotate_and_a_replayed_one_revokes_the_family() {
        let first = Secret::generate();
        let mut f = family(&first);
        let (r, next) = rotate_family(&mut f, first.expose(), "c1");
        let r = r.unwrap();
        assert_eq!(r.superseded, vec!["dk_live_aaaaaaaa".to_owned()]);
        assert_eq!(next.as_deref(), Some(r.refresh_token.digest().as_slice()));
        assert_eq!(f.current, r.refresh_token.digest().to_vec());
        f.keys.push("dk_live_bbbbbbbb".into());
        let (other, next) = rotate_family(&mut f, r.refresh_token.expose(), "c2");
        assert!(other.is_err() && next.is_none() && !f.revoked, "another client is refused, nothing revoked");
        // The old token again: refused, and the family's keys are to be revoked.
        let (replay, next) = rotate_family(&mut f, first.expose(), "c1");
        let replay = replay.unwrap_err();
        assert_eq!(replay.error.code(), "invalid_grant");
        assert_eq!(replay.revoke, vec!["dk_live_bbbbbbbb".to_owned()]);
        assert!(f.revoked && next.is_none());
        // The newest token of the family is dead too.
        assert!(rotate_family(&mut f, r.refresh_token.expose(), "c1").0.is_err());
    }
}
