//! What a runtime must do, whichever runs the apps: start a deployment until healthy, keep it
//! running, stop it. The local sandbox driver is the default; a cluster driver plugs in here.

use std::path::PathBuf;

use async_trait::async_trait;
use events::{ArtifactManifest, DeploymentId, FailureReason, ServiceId, ZoneId};
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
    /// The service's custom domains and the certificates of its hosts.
    pub edge: Edge,
}

/// Where a service answers besides its own host, and the certificates that cover its names:
/// what a runtime with its own ingress needs (the built-in router learns the same through
/// `Routes` and `Certs`, and ignores this).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edge {
    /// The service's custom domains (each inside an active zone of its owner), sorted.
    pub domains: Vec<String>,
    /// The certificates covering the service's host or one of its domains, sorted by zone.
    pub certs: Vec<ZoneCert>,
}

/// A zone's certificate as the dns service issued it: the zone's apex and its one-label
/// wildcard, with the private key opened.
#[derive(Clone, PartialEq, Eq)]
pub struct ZoneCert {
    pub zone_id: ZoneId,
    /// The zone's name (`apps.example.com`).
    pub zone: String,
    pub chain_pem: String,
    pub key_pem: String,
}

impl ZoneCert {
    /// Whether the certificate is valid for `host`: the apex, or one label below it (a
    /// wildcard matches exactly one label, so `a.b.<zone>` is not covered).
    pub fn covers(&self, host: &str) -> bool {
        host == self.zone
            || host
                .strip_suffix(self.zone.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.'))
    }
}

/// Never prints the key.
impl std::fmt::Debug for ZoneCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneCert").field("zone_id", &self.zone_id).field("zone", &self.zone).finish_non_exhaustive()
    }
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
/// A runtime could not apply a change to a running deployment (worth retrying).
#[derive(Debug, thiserror::Error)]
#[error("the runtime did not take the change: {0}")]
pub struct Unavailable(pub String);

#[async_trait]
pub trait Running: Send + Sync {
    fn upstream(&self) -> Option<Upstream>;
    async fn stop(self: Box<Self>);

    /// The service's custom domains or their certificates changed while this deployment is the
    /// live one. Runtimes behind the built-in router have nothing to do: the scheduler updates
    /// the router's table itself.
    async fn update_edge(&self, _edge: &Edge) -> Result<(), Unavailable> {
        Ok(())
    }
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

    /// Removes whatever a previous process of this driver left running (after a crash), and
    /// what it still keeps of services deleted meanwhile.
    async fn clean_up(&self);

    /// Removes what the runtime keeps of a deleted service beyond its running deployment (its
    /// volumes, its owner's namespace once empty). Called after the deployment was stopped.
    async fn forget(&self, _service: ServiceId) {}

    /// Whether deployments outlive this process: a cluster keeps running them when the
    /// scheduler stops, so stopping the scheduler must not stop them.
    fn outlives_scheduler(&self) -> bool {
        false
    }
}
