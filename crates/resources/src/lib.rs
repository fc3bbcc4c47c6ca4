//! Database providers: each one creates and deletes the database behind a resource and hands back the credentials
//! an app needs to connect.
//!
//! Architecture invariant: providers know nothing of events, the store or NATS. They are keyed by the resource's
//! stable id only, so the resource service can retry `create` after a crash and find what an earlier attempt made.
//! They return credentials in the clear; sealing them is the caller's job.

mod postgres;
mod sqlite;
mod turso;

#[cfg(feature = "fake")]
pub mod fake;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use events::ResourceKind;
pub use postgres::{FailPoint, PostgresProvider, protect_database};
pub use sqlite::LocalSqliteProvider;
pub use turso::TursoProvider;

pub type Result<T, E = ProviderError> = std::result::Result<T, E>;

/// What a provider hands back: everything an app needs to connect. Secret fields are the caller's to seal.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// `postgres://user:password@host:port/db` | `libsql://db-org.turso.io` | `file:/data/<id>/db.sqlite`.
    pub url: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// The database name (Postgres, Turso) or the absolute file path (local SQLite).
    pub database: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Turso auth token (a JWT).
    pub token: Option<String>,
}

/// Secrets stay out of logs: the password (also inside the URL) and the token are redacted.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = match &self.password {
            Some(p) if !p.is_empty() => self.url.replace(p.as_str(), "***"),
            _ => self.url.clone(),
        };
        let redact = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("Credentials")
            .field("url", &url)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &redact(&self.password))
            .field("token", &redact(&self.token))
            .finish()
    }
}

/// Why a provider could not do its job, sorted by what the caller must do. Messages are written for the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The request was wrong (bad size, bad id): the agent must change it.
    #[error("{0}")]
    Invalid(String),
    /// The provider could not be reached or was busy: retry later, nothing is left behind.
    #[error("{0}")]
    Unavailable(String),
    /// The provider refused (bad platform credentials, quota, unexpected answer): retrying will not help.
    #[error("{0}")]
    Failed(String),
}

/// A provider of databases, one per [`ResourceKind`] backend.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ResourceKind;

    /// Creates the database for resource `id` (a stable key, e.g. `res_01j…`; names are derived from it so a retry
    /// after a crash finds what a previous attempt made). Idempotent: creating again returns working credentials
    /// (the password or token may be new) and keeps the data. On failure it removes what it made.
    async fn create(&self, id: &str, size: &str) -> Result<Credentials>;

    /// Deletes the database and its data for real. Idempotent: deleting a missing database is `Ok`.
    async fn delete(&self, id: &str) -> Result<()>;
}

/// The sizes an agent may ask for; what each means is up to the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Size {
    #[default]
    Small,
    Medium,
    Large,
}

impl Size {
    pub const CHOICES: &[&str] = &["small", "medium", "large"];

    /// Parses a size; the empty string means the default (`small`).
    pub fn parse(size: &str) -> Result<Self> {
        match size {
            "" | "small" => Ok(Self::Small),
            "medium" => Ok(Self::Medium),
            "large" => Ok(Self::Large),
            other => Err(ProviderError::Invalid(format!(
                "unknown database size `{other}`; choose one of: {}",
                Self::CHOICES.join(", ")
            ))),
        }
    }
}

/// Longest id accepted: `r_` + id must fit PostgreSQL's 63-byte identifiers.
pub const MAX_ID_LEN: usize = 61;

/// Checks that `id` can name a database everywhere: 1 to 61 characters of `a-z`, `0-9` and `_`.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ProviderError::Invalid(format!(
            "resource id `{}` is not usable as a database name: use 1 to {MAX_ID_LEN} characters of a-z, 0-9 and _",
            id.escape_debug()
        )))
    }
}
