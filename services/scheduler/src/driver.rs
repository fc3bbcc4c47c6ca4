//! What a runtime must do, whichever runs the apps: start a deployment until healthy, keep it
//! running, stop it. The local sandbox driver is the default; a cluster driver plugs in here.

use std::path::PathBuf;

use async_trait::async_trait;
use events::{ArtifactManifest, DeploymentId, FailureReason, ServiceId};
use router::Upstream;

/// Everything a driver needs to run one deployment.
#[derive(Debug, Clone)]
pub struct Launch {
    pub service_id: ServiceId,
    pub deployment_id: DeploymentId,
    /// The full host name the service answers on.
    pub host: String,
    /// The build output (read-only: drivers copy what the app may write to).
    pub artifact_dir: PathBuf,
    pub manifest: ArtifactManifest,
    pub port: u16,
    /// Clear-text environment (opened from the sealed values just before launch).
    pub env: Vec<(String, String)>,
    pub memory_mb: u32,
    pub cpu_millis: u32,
    /// Persistent directories (local SQLite resources) the app sees under `/data`.
    pub volumes: Vec<sandbox::Volume>,
}

/// Why a start did not end healthy.
#[derive(Debug)]
pub enum StartError {
    /// The app's fault, typed for the agent.
    Failed(FailureReason),
    /// The platform's: worth retrying.
    Unavailable(String),
}

/// What a running deployment reports after it went live.
#[derive(Debug, Clone)]
pub enum Report {
    Crashed {
        service_id: ServiceId,
        deployment_id: DeploymentId,
        exit_code: Option<i32>,
        out_of_memory: bool,
    },
    /// Healthy again after a crash, now at `upstream`.
    Recovered {
        service_id: ServiceId,
        deployment_id: DeploymentId,
        upstream: Option<Upstream>,
    },
}

/// A started deployment: where the router sends its traffic, and how to stop it.
#[async_trait]
pub trait Running: Send + Sync {
    fn upstream(&self) -> Option<Upstream>;
    async fn stop(self: Box<Self>);
}

#[async_trait]
pub trait Driver: Send + Sync {
    /// Starts the deployment and returns once it answers its health check. The driver keeps it
    /// running (restarting it with back-off) and sends [`Report`]s until it is stopped.
    async fn start(
        &self,
        launch: Launch,
        reports: tokio::sync::mpsc::Sender<Report>,
    ) -> Result<Box<dyn Running>, StartError>;

    /// Removes whatever a previous process of this driver left running (after a crash).
    async fn clean_up(&self);

    /// Whether deployments outlive this process: a cluster keeps running them when the
    /// scheduler stops, so stopping the scheduler must not stop them.
    fn outlives_scheduler(&self) -> bool {
        false
    }
}
