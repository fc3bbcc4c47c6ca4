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
//! In memory for now (one gateway replica): registered clients, pending codes, consent tickets
//! and refresh families.

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
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use events::UserId;

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

/// A signed-in user's pending consent: who, their e-mail, the request, and when it expires.
type PendingConsent = (UserId, String, ValidRequest, Instant);

/// The authorization server's state.
pub struct OAuth {
    pub config: OAuthConfig,
    pub grants: Grants,
    clients: RwLock<HashMap<String, ValidClient>>,
    attempts: Mutex<HashMap<String, Vec<Instant>>>,
    consents: Mutex<HashMap<[u8; 32], PendingConsent>>,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth").field("config", &self.config).finish_non_exhaustive()
    }
}

impl OAuth {
    pub fn new(config: OAuthConfig) -> Self {
        Self {
            grants: Grants::new(config.code_ttl),
            config,
            clients: RwLock::default(),
            attempts: Mutex::default(),
            consents: Mutex::default(),
        }
    }

    pub fn client(&self, client_id: &str) -> Option<ValidClient> {
        self.clients.read().expect("lock").get(client_id).cloned()
    }

    pub fn add_client(&self, client_id: String, client: ValidClient) {
        let mut map = self.clients.write().expect("lock");
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(client_id, client);
    }

    /// Counts a sign-in attempt for `key`; false when `limit` attempts were made in the window.
    pub fn allow_attempt(&self, key: &str, limit: usize, now: Instant) -> bool {
        let mut map = self.attempts.lock().expect("lock");
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

    /// Remembers a signed-in user's pending consent; the ticket goes in the consent form.
    pub fn start_consent(&self, user: UserId, email: String, request: ValidRequest, now: Instant) -> Secret {
        let ticket = Secret::generate();
        let mut map = self.consents.lock().expect("lock");
        map.retain(|_, (.., t)| *t > now);
        map.insert(ticket.digest(), (user, email, request, now + CONSENT_TTL));
        ticket
    }

    /// Takes a pending consent (once).
    pub fn take_consent(&self, ticket: &str, now: Instant) -> Option<(UserId, String, ValidRequest)> {
        let (user, email, request, expires) = self.consents.lock().expect("lock").remove(&secret::digest(ticket))?;
        (now < expires).then_some((user, email, request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_attempts_are_limited_per_key_within_the_window() {
        let o = OAuth::new(OAuthConfig::default());
        let now = Instant::now();
        for _ in 0..SIGN_IN_ATTEMPTS {
            assert!(o.allow_attempt("a@x.test", SIGN_IN_ATTEMPTS, now));
        }
        assert!(!o.allow_attempt("a@x.test", SIGN_IN_ATTEMPTS, now));
        assert!(o.allow_attempt("b@x.test", SIGN_IN_ATTEMPTS, now), "per e-mail");
        assert!(o.allow_attempt("a@x.test", SIGN_IN_ATTEMPTS, now + SIGN_IN_WINDOW), "the window slides");
    }
}
