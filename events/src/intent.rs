use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::RepoId;

/// A ref update pushed to a repository (from the git server or a GitHub webhook).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PushReceived {
    pub repo: RepoId,
    /// Full ref name, e.g. `refs/heads/main`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Commit before the push (forty zeros when the ref is new).
    pub before: String,
    /// Commit after the push: the natural key of everything a push triggers.
    pub after: String,
    pub pusher: String,
    pub received_at: DateTime<Utc>,
}

/// Intents from outside the command side, appended to JetStream directly with a dedup id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Intent {
    PushReceived(PushReceived),
}

impl Intent {
    /// The `Nats-Msg-Id` of this intent: equal for equal intents, so redelivery is dropped.
    pub fn dedup_id(&self) -> String {
        match self {
            Self::PushReceived(p) => format!("push:{}:{}:{}", p.repo, p.git_ref, p.after),
        }
    }

    /// The subject suffix (after the intents prefix); tokens contain no `.`, `*` or `>`.
    pub fn subject_suffix(&self) -> String {
        match self {
            Self::PushReceived(p) => format!("push.{}", p.repo),
        }
    }
}
