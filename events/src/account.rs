use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ApiKeyId, UserId, event_enum};

/// What one account may use. Set when the account opens; enforced by the command side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Limits {
    pub max_services: u32,
    pub max_repos: u32,
    pub max_resources: u32,
    pub max_api_keys: u32,
    /// Memory one service may ask for, in MiB.
    pub max_memory_mb: u32,
    /// CPU one service may ask for, in thousandths of a core.
    pub max_cpu_millis: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_services: 20,
            max_repos: 50,
            max_resources: 10,
            max_api_keys: 25,
            max_memory_mb: 1024,
            max_cpu_millis: 1000,
        }
    }
}

/// Events of the `account` aggregate: a user and the API keys it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum AccountEvent {
    AccountOpened {
        user_id: UserId,
        /// Lower-cased e-mail address; unique (claimed through the `claim` aggregate first).
        email: String,
        limits: Limits,
        opened_at: DateTime<Utc>,
    },
    ApiKeyCreated {
        key_id: ApiKeyId,
        /// The public lookup prefix, e.g. `dk_live_a1b2c3d4`: shown in listings, unique.
        prefix: String,
        /// bcrypt hash of the whole key; the key itself is shown once and never stored.
        hash: String,
        label: String,
        created_at: DateTime<Utc>,
        /// The protected resource (MCP URL) an OAuth-issued key is bound to; `None` for keys
        /// created directly, which are valid on every resource of the platform.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource: Option<String>,
    },
    ApiKeyRevoked {
        key_id: ApiKeyId,
        revoked_at: DateTime<Utc>,
    },
    /// The account's GitHub App installation: where its `github.com` repositories live.
    GithubInstallationLinked {
        installation_id: u64,
        /// The GitHub user or organization the App is installed on.
        account_login: String,
        linked_at: DateTime<Utc>,
    },
    GithubInstallationUnlinked {
        installation_id: u64,
        unlinked_at: DateTime<Utc>,
    },
    /// The account's sign-in password for the web pages, set or changed.
    PasswordSet {
        /// bcrypt hash of the password; the password itself is never stored or logged.
        hash: String,
        set_at: DateTime<Utc>,
    },
}

event_enum!(AccountEvent, "account", {
    AccountOpened, ApiKeyCreated, ApiKeyRevoked, GithubInstallationLinked, GithubInstallationUnlinked, PasswordSet,
});
