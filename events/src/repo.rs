use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{RepoId, ServiceId, TokenId, UserId, event_enum};

/// Where a repository lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RepoHost {
    /// The platform's own git server.
    Internal,
    /// A repository in the owner's GitHub App installation.
    #[serde(rename = "github.com")]
    Github,
}

/// Which GitHub repository a `github.com` repo is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GithubRepoRef {
    /// GitHub's numeric repository id (stable across renames).
    pub id: u64,
    /// `owner/name` on GitHub.
    pub full_name: String,
    pub installation_id: u64,
    pub clone_url: String,
}

/// Events of the `repo` aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum RepoEvent {
    RepoCreated {
        repo_id: RepoId,
        owner: UserId,
        name: String,
        host: RepoHost,
        description: Option<String>,
        /// The repository on GitHub, for `host = github.com`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        github: Option<GithubRepoRef>,
        created_at: DateTime<Utc>,
    },
    GitTokenIssued {
        token_id: TokenId,
        /// Public prefix of the `mlg_…` token (`mlg_` + the repository id + 4 characters).
        prefix: String,
        /// SHA-256 (hex) of the token, which is random enough not to need a slow hash; the
        /// token is shown once.
        hash: String,
        expires_at: DateTime<Utc>,
    },
    RepoDeleted {
        deleted_at: DateTime<Utc>,
    },
    /// A service now deploys pushes to `branch`: recorded on the repository before the service
    /// reads its first commit, so that a push is never missed in between.
    ServiceAttached {
        service_id: ServiceId,
        branch: String,
    },
    ServiceDetached {
        service_id: ServiceId,
    },
}

event_enum!(RepoEvent, "repo", { RepoCreated, GitTokenIssued, RepoDeleted, ServiceAttached, ServiceDetached });
