//! Bearer API-key authentication with a verified-key cache.
//!
//! bcrypt costs ~100 ms, so it runs once per key: afterwards a request costs a SHA-256 and a
//! hash-map lookup. Revocation still bites within a second: a cached key is re-checked against
//! the read model (a cheap indexed read, no bcrypt) when its last check is older than
//! `recheck`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use events::Limits;
use sha2::{Digest, Sha256};
use store::Store;

use crate::keys;

/// Who is calling: put in the request's extensions by the auth middleware.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub user_id: String,
    pub email: String,
    pub key_id: String,
    pub key_prefix: String,
    pub limits: Limits,
    /// The linked GitHub App installation and its account, if any.
    pub github: Option<(u64, String)>,
}

/// Why a request is not authenticated. Every variant is a 401 except `Unavailable` (503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no API key: send `Authorization: Bearer dk_live_…` (create one with `deploy-mcp api-key create --email <you>`)"
    )]
    Missing,
    #[error("{0}")]
    Malformed(&'static str),
    #[error("this API key is not valid: check you copied it whole, or create a new one")]
    Unknown,
    #[error("this API key was revoked: create a new one")]
    Revoked,
    #[error("this token was issued for another resource: authorize again for this MCP URL")]
    WrongResource,
    #[error("authentication is temporarily unavailable; retry in a few seconds")]
    Unavailable,
}

type Digest32 = [u8; 32];

fn github_of(installation: Option<i64>, account: Option<String>) -> Option<(u64, String)> {
    Some((u64::try_from(installation?).ok()?, account?))
}

struct Entry {
    principal: Arc<Principal>,
    checked: Instant,
}

/// Caps the caches so that a flood of distinct keys cannot grow memory without bound.
const MAX_ENTRIES: usize = 100_000;
/// How long a key that failed verification is refused without another bcrypt.
const NEGATIVE_TTL: Duration = Duration::from_secs(10);

pub struct KeyAuth {
    store: Store,
    /// The protected resource served here: keys bound to another one are refused.
    resource: Option<String>,
    recheck: Duration,
    verified: RwLock<HashMap<Digest32, Entry>>,
    refused: RwLock<HashMap<Digest32, Instant>>,
}

impl std::fmt::Debug for KeyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAuth").field("recheck", &self.recheck).finish_non_exhaustive()
    }
}

impl KeyAuth {
    pub fn new(store: Store, recheck: Duration) -> Self {
        Self { store, resource: None, recheck, verified: RwLock::default(), refused: RwLock::default() }
    }

    /// Refuses keys bound (by OAuth) to a resource other than `resource`.
    pub fn for_resource(mut self, resource: String) -> Self {
        self.resource = Some(resource);
        self
    }

    /// Authenticates an `Authorization` header value.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Arc<Principal>, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let key = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Malformed("use the Bearer scheme: `Authorization: Bearer dk_live_…`"))?
            .trim();
        let prefix = keys::parse(key).map_err(AuthError::Malformed)?;
        let digest: Digest32 = Sha256::digest(key.as_bytes()).into();

        if let Some(principal) = self.fresh(&digest) {
            return Ok(principal);
        }
        if let Some(principal) = self.stale(&digest) {
            return self.recheck(digest, principal).await;
        }
        if self.refused.read().expect("lock").get(&digest).is_some_and(|t| t.elapsed() < NEGATIVE_TTL) {
            return Err(AuthError::Unknown);
        }
        self.verify(key, prefix, digest).await
    }

    /// The cached principal when checked recently: the hot path, no I/O.
    fn fresh(&self, digest: &Digest32) -> Option<Arc<Principal>> {
        let map = self.verified.read().expect("lock");
        map.get(digest).filter(|e| e.checked.elapsed() < self.recheck).map(|e| e.principal.clone())
    }

    fn stale(&self, digest: &Digest32) -> Option<Arc<Principal>> {
        self.verified.read().expect("lock").get(digest).map(|e| e.principal.clone())
    }

    /// Re-reads the key and its user: a revoked key is dropped, and what whoami shows (limits,
    /// the GitHub link) stays as fresh as the key check.
    async fn recheck(&self, digest: Digest32, principal: Arc<Principal>) -> Result<Arc<Principal>, AuthError> {
        let unavailable = |e: store::Error| {
            tracing::warn!(error = %e, "auth: cannot re-check a key");
            AuthError::Unavailable
        };
        let active = self.store.api_key_active(&principal.key_id).await.map_err(unavailable)?;
        let user = if active { self.store.user(&principal.user_id).await.map_err(unavailable)? } else { None };
        if active {
            self.touch(&principal.key_id);
        }
        let mut map = self.verified.write().expect("lock");
        match user {
            Some(user) => {
                let fresh = Arc::new(Principal {
                    limits: user.limits,
                    github: github_of(user.github_installation, user.github_account),
                    ..(*principal).clone()
                });
                if let Some(e) = map.get_mut(&digest) {
                    e.checked = Instant::now();
                    e.principal = fresh.clone();
                }
                Ok(fresh)
            }
            None => {
                map.remove(&digest);
                Err(AuthError::Revoked)
            }
        }
    }

    async fn verify(&self, key: &str, prefix: &str, digest: Digest32) -> Result<Arc<Principal>, AuthError> {
        let unavailable = |e: store::Error| {
            tracing::warn!(error = %e, "auth: cannot look up a key");
            AuthError::Unavailable
        };
        let Some(row) = self.store.api_key_by_prefix(prefix).await.map_err(unavailable)? else {
            self.refuse(digest);
            return Err(AuthError::Unknown);
        };
        let (presented, hash) = (key.to_owned(), row.hash.clone());
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(presented, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if !matches {
            self.refuse(digest);
            return Err(AuthError::Unknown);
        }
        if row.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if let (Some(resource), Some(bound)) = (&self.resource, &row.resource)
            && bound != resource
        {
            return Err(AuthError::WrongResource);
        }
        let user = self.store.user(&row.user_id).await.map_err(unavailable)?.ok_or(AuthError::Unknown)?;
        let principal = Arc::new(Principal {
            user_id: user.user_id,
            email: user.email,
            key_id: row.key_id,
            key_prefix: row.prefix,
            limits: user.limits,
            github: github_of(user.github_installation, user.github_account),
        });
        self.touch(&principal.key_id);
        let mut map = self.verified.write().expect("lock");
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(digest, Entry { principal: principal.clone(), checked: Instant::now() });
        Ok(principal)
    }

    /// Records the key's last use (at most once per re-check), off the request's path.
    fn touch(&self, key_id: &str) {
        let (store, key_id) = (self.store.clone(), key_id.to_owned());
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_key(&key_id).await {
                tracing::debug!(error = %e, "auth: cannot record a key's last use");
            }
        });
    }

    fn refuse(&self, digest: Digest32) {
        let mut map = self.refused.write().expect("lock");
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, t| t.elapsed() < NEGATIVE_TTL);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(digest, Instant::now());
    }
}
