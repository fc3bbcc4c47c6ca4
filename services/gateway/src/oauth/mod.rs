//! The OAuth 2.1 authorization server of the MCP authorization specification (issue 7).
//!
//! MCP clients discover it from the 401 on `/mcp` (RFC 9728 → RFC 8414), register (RFC 7591),
//! send the user to `/oauth/authorize` (sign-in or sign-up, then consent) and exchange the code
//! at `/oauth/token`. The access token is a real API key (`dk_live_…`), so OAuth and pasted
//! keys share one authentication path.
//!
//! Safety rules live in the pure modules: `pkce` (S256 only), `secret` (codes and refresh tokens
//! random, stored as SHA-256, matched in constant time), `register` (redirect URIs of public
//! clients), `authorize` (an error page before the redirect URI is trusted, never a redirect),
//! `grants` (single-use expiring codes, rotating refresh families). No handler logs a secret.
//!
//! Clients, codes, refresh families and consent tickets are kept in Postgres (`store::credentials`):
//! any gateway replica continues a flow another one started, and a restart loses none. Only the
//! sign-in throttle is per process.

pub mod authorize;
pub mod client_document;
pub mod flow;
pub mod grants;
pub mod metadata;
pub mod pages;
pub mod pkce;
pub mod register;
pub mod secret;
pub mod token;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use events::UserId;
use store::Store;

use self::authorize::ValidRequest;
use self::grants::Grants;
use self::register::ValidClient;
use self::secret::Secret;

/// What the authorization server is configured with.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// How long an authorization code stays redeemable (60 s; tests shorten it).
    pub code_ttl: Duration,
    /// bcrypt cost of the API keys issued as access tokens.
    pub bcrypt_cost: u32,
    /// bcrypt cost of sign-in passwords.
    pub password_bcrypt_cost: u32,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self { code_ttl: Duration::from_secs(60), bcrypt_cost: 10, password_bcrypt_cost: 12 }
    }
}

/// Sign-in attempts allowed per e-mail address in `SIGN_IN_WINDOW`.
pub const SIGN_IN_ATTEMPTS: usize = 5;
/// Sign-in attempts allowed per client IP address in `SIGN_IN_WINDOW` (several people may
/// share one address).
pub const SIGN_IN_ATTEMPTS_PER_IP: usize = 20;
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(60);
/// How long a signed-in user has to answer the consent screen.
const CONSENT_TTL: Duration = Duration::from_secs(600);
const MAX_ENTRIES: usize = 100_000;

/// Sliding-window counts of sign-in attempts (in memory: per gateway process).
#[derive(Debug, Default)]
pub struct Throttle(Mutex<HashMap<String, Vec<Instant>>>);

impl Throttle {
    /// Counts a sign-in attempt for `key`; false when `limit` attempts were made in the window.
    pub fn allow_attempt(&self, key: &str, limit: usize, now: Instant) -> bool {
        let mut map = self.0.lock().expect("lock");
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, v| v.iter().any(|t| now.duration_since(*t) < SIGN_IN_WINDOW));
        }
        let v = map.entry(key.to_owned()).or_default();
        v.retain(|t| now.duration_since(*t) < SIGN_IN_WINDOW);
        if v.len() >= limit {
            return false;
        }
        v.push(now);
        true
    }
}

/// The authorization server's state.
pub struct OAuth {
    pub config: OAuthConfig,
    pub grants: Grants,
    store: Store,
    /// Sign-in attempts, per e-mail and per IP address.
    pub throttle: Throttle,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth").field("config", &self.config).finish_non_exhaustive()
    }
}

impl OAuth {
    pub fn new(config: OAuthConfig, store: Store) -> Self {
        Self { grants: Grants::new(store.clone(), config.code_ttl), config, store, throttle: Throttle::default() }
    }

    /// The registered client `client_id`, if any.
    pub async fn client(&self, client_id: &str) -> Result<Option<ValidClient>, store::Error> {
        let Some(v) = self.store.oauth_client(client_id).await? else { return Ok(None) };
        serde_json::from_value(v).map(Some).map_err(|e| store::Error::Decode(e.to_string()))
    }

    pub async fn add_client(&self, client_id: &str, client: &ValidClient) -> Result<(), store::Error> {
        self.store.put_oauth_client(client_id, &serde_json::to_value(client).expect("a client serialises")).await
    }

    /// Remembers a signed-in user's pending consent; the ticket goes in the consent form.
    pub async fn start_consent(&self, user: UserId, request: &ValidRequest) -> Result<Secret, store::Error> {
        let ticket = Secret::generate();
        let expires = chrono::Utc::now() + chrono::Duration::from_std(CONSENT_TTL).expect("small");
        let request = serde_json::to_value(request).expect("a request serialises");
        self.store.put_consent(&ticket.digest(), &user.to_string(), &request, expires).await?;
        Ok(ticket)
    }

    /// Takes a pending consent (once); `None` when unknown, used or expired.
    pub async fn take_consent(&self, ticket: &str) -> Result<Option<(UserId, ValidRequest)>, store::Error> {
        let Some((user, request)) = self.store.take_consent(&secret::digest(ticket)).await? else {
            return Ok(None);
        };
        let decode = |e: String| store::Error::Decode(e);
        let user = user.parse::<UserId>().map_err(|e| decode(e.to_string()))?;
        let request = serde_json::from_value(request).map_err(|e| decode(e.to_string()))?;
        Ok(Some((user, request)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_attempts_are_limited_per_key_within_the_window() {
        let o = Throttle::default();
        let now = Instant::now();
        for _ in 0..SIGN_IN_ATTEMPTS {
            assert!(o.allow_attempt("a@x.test", SIGN_IN_ATTEMPTS, now));
        }
        assert!(!o.allow_attempt("a@x.test", SIGN_IN_ATTEMPTS, now));
        assert!(o.allow_attempt("b@x.test", SIGN_IN_ATTEMPTS, now), "per e-mail");
        assert!(o.allow_attempt("a@x.test", SIGN_IN_ATTEMPTS, now + SIGN_IN_WINDOW), "the window slides");
    }
}
