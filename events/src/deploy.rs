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
    BuildFailed {
        command: String,
        exit_code: Option<i32>,
        log_tail: Vec<String>,
    },
    StartCommandExited {
        command: String,
        exit_code: Option<i32>,
        log_tail: Vec<String>,
    },
    PortNotListened {
        expected: u16,
        listened: Vec<u16>,
    },
    HealthCheckTimedOut {
        seconds: u32,
    },
    OutOfMemory {
        limit_mb: u32,
    },
    ImagePullFailed {
        image: String,
        message: String,
    },
    /// The app asks for a toolchain version the platform cannot provide.
    ToolchainUnavailable {
        /// `node`, `python`, `go`, `rust`.
        tool: String,
        /// The constraint as the app states it (`3.13`, `>=22`, `1.23.4`); empty when none.
        requested: String,
        /// Where it was stated (`.python-version`, `package.json engines.node`, `go.mod toolchain`).
        from: Option<String>,
        /// Versions that can be used instead, newest first.
        available: Vec<String>,
    },
    /// The package manager failed to install the dependencies.
    DependencyInstallFailed {
        /// `pip`, `uv`, `poetry`, `pipenv`, `npm`, `yarn`, `pnpm`, `go`, `cargo`.
        package_manager: String,
        command: String,
        exit_code: Option<i32>,
        /// The first line of its output that reads as the error, the best single hint.
        first_error: Option<String>,
        log_tail: Vec<String>,
    },
    /// A build step tried to reach a destination the build egress does not allow, and failed.
    EgressRefused {
        /// `host:port` as the step asked for it.
        host: String,
        /// Why it was refused (not in the allowlist, a private address, ...).
        reason: String,
        command: String,
        log_tail: Vec<String>,
    },
    /// A build or the app filled the disk the platform gives it.
    DiskQuotaExceeded {
        /// `build`, `app` or `volume <name>`.
        disk: String,
        limit_mb: u32,
        /// The step that was writing, for a build.
        command: Option<String>,
        log_tail: Vec<String>,
    },
    /// A resource the variables reference is missing or not ready.
    ResourceNotReady {
        name: String,
        status: String,
    },
    Superseded {
        by: DeploymentId,
    },
    Internal {
        message: String,
    },
}

/// What asked for a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeployTrigger {
    /// `create_service` deployed the branch's head.
    Create,
    /// A push to the service's branch (deployed once per commit, however often delivered).
    Push,
    /// `redeploy_service`.
    Redeploy,
}

/// Events of the `service` aggregate: a service and its deployments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceEvent {
    ServiceRequested {
        service_id: ServiceId,
        owner: UserId,
        project: String,
        name: String,
        /// The label of the service's URL: `<hostname>.<base-domain>`.
        hostname: String,
        repo: RepoId,
        branch: String,
        build_pack: BuildPack,
        port: Option<u16>,
        /// Variables by name; values are sealed because any of them may be a secret.
        env: BTreeMap<String, Sealed>,
        /// Resources the variables reference (`${{ resources.<name>.<field> }}`), resolved at
        /// each deployment's start.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        resources: Vec<String>,
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
        trigger: DeployTrigger,
        requested_at: DateTime<Utc>,
    },
    BuildStarted {
        deployment_id: DeploymentId,
        started_at: DateTime<Utc>,
    },
    BuildSucceeded {
        deployment_id: DeploymentId,
        /// Content address of the build output (commit SHA + plan key), or an image digest.
        artifact: String,
        /// The build plan, in one line (`python: start \`python3 main.py\``).
        plan: String,
        /// True when the same commit and plan had been built before and the output was reused.
        cached: bool,
        /// The pushed image, `<reference>@sha256:…`, when the build produced one for a registry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<String>,
        finished_at: DateTime<Utc>,
    },
    /// The runtime launched the deployment and is waiting for its health check.
    DeploymentStarting {
        deployment_id: DeploymentId,
        started_at: DateTime<Utc>,
    },
    /// The live deployment's process died; the runtime restarts it after a back-off.
    DeploymentCrashed {
        deployment_id: DeploymentId,
        exit_code: Option<i32>,
        out_of_memory: bool,
        /// Restarts so far, this one included.
        restarts: u32,
        crashed_at: DateTime<Utc>,
    },
    /// Healthy and taking the traffic of the service's URL (again, after a crash).
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
    DeploymentStarting, DeploymentCrashed, DeploymentLive, DeploymentFailed, ServiceDeleted,
});
