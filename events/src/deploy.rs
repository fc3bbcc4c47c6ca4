use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{DeploymentId, RepoId, Sealed, ServiceId, UserId, event_enum};

/// How a service is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuildPack {
    /// Detect the language and plan the build (the default).
    #[default]
    Railpack,
    Dockerfile,
    Static,
}

/// Why a deployment failed, typed so that an agent can act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureReason {
    BuildFailed { command: String, exit_code: Option<i32>, log_tail: Vec<String> },
    StartCommandExited { command: String, exit_code: Option<i32>, log_tail: Vec<String> },
    PortNotListened { expected: u16, listened: Vec<u16> },
    HealthCheckTimedOut { seconds: u32 },
    OutOfMemory { limit_mb: u32 },
    ImagePullFailed { image: String, message: String },
    Superseded { by: DeploymentId },
    Internal { message: String },
}

/// Events of the `service` aggregate: a service and its deployments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceEvent {
    ServiceRequested {
        service_id: ServiceId,
        owner: UserId,
        project: String,
        name: String,
        repo: RepoId,
        branch: String,
        build_pack: BuildPack,
        port: Option<u16>,
        /// Variables by name; values are sealed because any of them may be a secret.
        env: BTreeMap<String, Sealed>,
        memory_mb: u32,
        cpu_millis: u32,
        install_command: Option<String>,
        build_command: Option<String>,
        start_command: Option<String>,
        requested_at: DateTime<Utc>,
    },
    DeploymentRequested {
        deployment_id: DeploymentId,
        /// The commit to deploy: with the service, the natural key that makes handlers idempotent.
        commit_sha: String,
        reason: String,
        requested_at: DateTime<Utc>,
    },
    BuildStarted {
        deployment_id: DeploymentId,
        started_at: DateTime<Utc>,
    },
    BuildSucceeded {
        deployment_id: DeploymentId,
        /// Content address of the build output (or an image digest).
        artifact: String,
        finished_at: DateTime<Utc>,
    },
    DeploymentLive {
        deployment_id: DeploymentId,
        live_at: DateTime<Utc>,
    },
    DeploymentFailed {
        deployment_id: DeploymentId,
        reason: FailureReason,
        failed_at: DateTime<Utc>,
    },
    ServiceDeleted {
        deleted_at: DateTime<Utc>,
    },
}

event_enum!(ServiceEvent, "service", {
    ServiceRequested, DeploymentRequested, BuildStarted, BuildSucceeded,
    DeploymentLive, DeploymentFailed, ServiceDeleted,
});
