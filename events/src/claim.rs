use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{UserId, event_enum};

/// What a claimed name names. The claim aggregate's id is `<kind>:<name>`, so the event store's
/// primary key makes a name unique: two concurrent claims cannot both commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClaimKind {
    /// An account's e-mail address.
    Email,
    /// An API key's lookup prefix.
    ApiKeyPrefix,
    /// A repository name within its owner (`<user>/<name>`).
    Repo,
    /// A service name within its owner and project (`<user>/<project>/<name>`).
    Service,
    /// The host label of a service's URL (`<label>.<base-domain>`), platform-wide.
    Hostname,
    /// A resource name within its owner (`<user>/<name>`).
    Resource,
    /// A DNS zone, platform-wide.
    Zone,
    /// A custom domain, platform-wide.
    Domain,
    /// A GitHub App installation id, platform-wide: one account per installation.
    GithubInstallation,
    /// A GitHub repository id, platform-wide: which repo it is here.
    GithubRepo,
    /// A GitHub user id, platform-wide: the account that user signs in to with GitHub.
    GithubUser,
}

impl ClaimKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::ApiKeyPrefix => "api_key_prefix",
            Self::Repo => "repo",
            Self::Service => "service",
            Self::Hostname => "hostname",
            Self::Resource => "resource",
            Self::Zone => "zone",
            Self::Domain => "domain",
            Self::GithubInstallation => "github_installation",
            Self::GithubRepo => "github_repo",
            Self::GithubUser => "github_user",
        }
    }

    /// The aggregate id of the claim on `name` of this kind.
    pub fn claim_id(self, name: &str) -> String {
        format!("{}:{name}", self.as_str())
    }
}

/// Events of the `claim` aggregate: who holds a unique name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum ClaimEvent {
    NameClaimed {
        kind: ClaimKind,
        name: String,
        owner: UserId,
        /// The id of what the name points at (`usr_…`, `key_…`, `repo_…`, …).
        target: String,
        claimed_at: DateTime<Utc>,
    },
    NameReleased {
        released_at: DateTime<Utc>,
    },
}

event_enum!(ClaimEvent, "claim", { NameClaimed, NameReleased });
