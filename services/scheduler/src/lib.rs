//! The scheduler service: runs built deployments and points the router at them.
//!
//! It consumes `service.*` events (durable consumer `scheduler`). On `BuildSucceeded` of the
//! newest deployment it starts it through the [`Driver`], waits for its health check, switches the
//! service's host to it, lets the previous deployment drain and stops it: zero-downtime redeploys.
//! On `ServiceDeleted` it stops everything of the service and frees its host. After a restart it
//! brings back every live deployment before consuming again. Handlers are idempotent: the
//! service aggregate decides, so a redelivered event changes nothing.

mod driver;
mod edges;
mod health;
pub mod k8s;
mod local;
mod placement;
mod provision;
mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, Delivery};
use chrono::Utc;
use cqrs_es::AggregateError;
use domain::{Rejection, Service, ServiceCommand, Status};
use events::{AnyEvent, ArtifactManifest, Decoded, DeploymentId, FailureReason, ServiceEvent, ServiceId};
use futures::StreamExt;
use router::Routes;
use store::{Commands, Store};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

pub use driver::{Driver, Edge, Launch, Report, Running, StartError, Unavailable, ZoneCert};
pub use local::{AppEgress, LocalDriver};
pub use placement::{CommandPlacement, kubernetes_driver};
pub use provision::{Providers, Provisioner, provider_key};
pub use volumes::Volumes;

#[derive(Clone)]
pub struct Config {
    pub bus: Bus,
    pub store: Store,
    pub commands: Arc<Commands>,
    pub keyring: vault::Keyring,
    /// The platform's data directory (build outputs in `artifacts/`).
    pub data_dir: PathBuf,
    pub driver: Arc<dyn Driver>,
    /// The router's table: `<hostname>.<base_domain>` (and custom domains) → the live deployment.
    pub routes: Routes,
    /// The router's certificates: each active zone's wildcard.
    pub certs: router::Certs,
    pub base_domain: String,
    /// How long the previous deployment may finish its requests after a switch.
    pub drain_timeout: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config").field("base_domain", &self.base_domain).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] bus::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Deliveries of a built deployment the runtime may fail to start (its own failures, not the
/// app's) before the deployment is failed.
const MAX_START_ATTEMPTS: i64 = 5;

/// The port an app listens on when the service does not say.
pub const DEFAULT_PORT: u16 = 8080;

struct Current {
    deployment_id: DeploymentId,
    host: String,
    running: Box<dyn Running>,
}

/// What runs for one service; its lock serialises the service's handlers.
type Slot = Arc<Mutex<Option<Current>>>;

/// What this scheduler runs, by service.
#[derive(Clone)]
struct Scheduler {
    config: Config,
    services: Arc<Mutex<HashMap<ServiceId, Slot>>>,
    /// Custom domains by service (routed like the service's own host) and zone certificates.
    edges: Arc<std::sync::Mutex<edges::Edges>>,
    reports: mpsc::Sender<Report>,
    /// Handlers stop with the scheduler; their unacknowledged events are redelivered.
    shutdown: CancellationToken,
}

/// Runs until `shutdown`; then stops every deployment it runs.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    config.bus.ping().await?;
    config.driver.clean_up().await;
    let (reports, mut report_rx) = mpsc::channel(256);
    let scheduler = Scheduler {
        config: config.clone(),
        services: Arc::default(),
        edges: Arc::default(),
        reports,
        shutdown: shutdown.clone(),
    };
    scheduler.restore_edges().await?;
    scheduler.restore().await?;
    tracing::info!("scheduler ready");

    let mut batches = config.bus.batches("EVENTS", "scheduler", 64).await?;
    let result = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            Some(report) = report_rx.recv() => scheduler.report(report).await,
            batch = batches.next() => match batch {
                Some(Ok(batch)) => for delivery in batch {
                    let s = scheduler.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = s.handle(delivery) => {}
                            _ = s.shutdown.cancelled() => {}
                        }
                    });
                },
                Some(Err(e)) => break Err(e.into()),
                None => break Ok(()),
            },
        }
    };
    scheduler.stop_all().await;
    result
}

impl Scheduler {
    fn host(&self, hostname: &str) -> String {
        format!("{hostname}.{}", self.config.base_domain)
    }

    async fn slot(&self, service: ServiceId) -> Slot {
        self.services.lock().await.entry(service).or_default().clone()
    }

    async fn handle(&self, delivery: Delivery) {
        let decoded = match Decoded::from_slice(delivery.payload()) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: skipping an event that does not decode");
                let _ = delivery.ack().await;
                return;
            }
        };
        let aggregate = decoded.id.aggregate_id.clone();
        let event = match decoded.event {
            AnyEvent::Service(e) => e,
            AnyEvent::Zone(events::ZoneEvent::CertificateIssued { .. }) => {
                let result = self.install_certificate(&aggregate).await;
                self.settle(delivery, result).await;
                return;
            }
            AnyEvent::Domain(_) => {
                let result = self.refresh_domain(&aggregate).await;
                self.settle(delivery, result).await;
                return;
            }
            _ => {
                let _ = delivery.ack().await;
                return;
            }
        };
        let Ok(service) = aggregate.parse::<ServiceId>() else {
            let _ = delivery.ack().await;
            return;
        };
        let mut failing = None;
        let result = match event {
            ServiceEvent::BuildSucceeded { deployment_id, .. } => {
                failing = Some(deployment_id);
                delivery.in_progress(self.deploy(service, deployment_id)).await
            }
            ServiceEvent::ServiceDeleted { .. } => {
                self.remove(service).await;
                Ok(())
            }
            _ => Ok(()),
        };
        match result {
            Ok(()) => {
                let _ = delivery.ack().await;
            }
            // The platform keeps failing to start it: say so on the deployment rather than retry forever.
            Err(e) if delivery.delivered() >= MAX_START_ATTEMPTS && failing.is_some() => {
                tracing::warn!(%service, error = %e, "scheduler: giving up on a deployment");
                let deployment_id = failing.expect("checked");
                let reason = internal(&format!("the runtime could not start it: {e}"));
                let fail = ServiceCommand::Fail { deployment_id, reason, now: Utc::now() };
                if self.execute(service, fail).await.is_ok() {
                    let _ = delivery.ack().await;
                }
            }
            Err(e) => {
                tracing::warn!(%service, error = %e, "scheduler: will retry");
                let _ = delivery.retry_after(Duration::from_secs(2)).await;
            }
        }
    }

    /// Acks an edge event, or has it redelivered when the runtime did not take the change.
    async fn settle(&self, delivery: Delivery, result: Result<(), Unavailable>) {
        match result {
            Ok(()) => {
                let _ = delivery.ack().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: will retry");
                let _ = delivery.retry_after(Duration::from_secs(2)).await;
            }
        }
    }

    async fn execute(&self, service: ServiceId, command: ServiceCommand) -> Result<(), String> {
        match self.config.commands.services.execute(&service.to_string(), command).await {
            Ok(()) | Err(AggregateError::UserError(Rejection::NotFound { .. })) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn load(&self, service: ServiceId) -> Result<Service, String> {
        self.config.commands.load(&service.to_string()).await.map_err(|e| e.to_string())
    }

    /// Starts a built deployment and, once healthy, makes it the live one.
    async fn deploy(&self, service: ServiceId, deployment_id: DeploymentId) -> Result<(), String> {
        let slot = self.slot(service).await;
        let mut current = slot.lock().await;
        let state = self.load(service).await?;
        let Some(d) = state.deployments.get(&deployment_id) else { return Ok(()) };
        if state.deleted || !state.is_newest(deployment_id) || !matches!(d.status, Status::Built | Status::Starting) {
            return Ok(()); // superseded, failed, or handled by an earlier delivery
        }
        self.execute(service, ServiceCommand::Launch { deployment_id, now: Utc::now() }).await?;
        let launch = match self.launch(&state, deployment_id).await {
            Ok(l) => l,
            Err(reason) => {
                return self.execute(service, ServiceCommand::Fail { deployment_id, reason, now: Utc::now() }).await;
            }
        };
        let host = launch.host.clone();
        let running = match self.config.driver.start(launch, self.reports.clone()).await {
            Ok(r) => r,
            Err(StartError::Failed(reason)) => {
                return self.execute(service, ServiceCommand::Fail { deployment_id, reason, now: Utc::now() }).await;
            }
            Err(StartError::Unavailable(e)) => return Err(e),
        };
        // Recorded before traffic moves: if this fails the old deployment keeps serving.
        if let Err(e) = self.execute(service, ServiceCommand::MarkLive { deployment_id, now: Utc::now() }).await {
            running.stop().await;
            return Err(e);
        }
        let state = self.load(service).await?;
        if state.should_run() != Some(deployment_id) {
            running.stop().await; // a newer deployment went live meanwhile, or the service is gone
            return Ok(());
        }
        if let Some(upstream) = running.upstream() {
            self.route(service, &host, upstream);
        }
        let previous = current.replace(Current { deployment_id, host, running });
        if let Some(previous) = previous {
            self.retire(previous).await;
        }
        tracing::info!(%service, %deployment_id, "deployment live");
        Ok(())
    }

    /// Lets a replaced deployment finish its requests, then stops it.
    async fn retire(&self, previous: Current) {
        if let Some(upstream) = previous.running.upstream() {
            let routes = self.config.routes.clone();
            let timeout = self.config.drain_timeout;
            tokio::spawn(async move {
                routes.drain(&upstream, timeout).await;
                previous.running.stop().await;
            });
        } else {
            previous.running.stop().await;
        }
    }

    /// What the driver needs, from the service's spec and the build's manifest.
    async fn launch(&self, state: &Service, deployment_id: DeploymentId) -> Result<Launch, FailureReason> {
        let spec = state.spec.as_ref().ok_or_else(|| internal("the service has no spec"))?;
        let artifact = state.deployments[&deployment_id].artifact.clone().ok_or_else(|| internal("no build output"))?;
        let manifest_path = self.config.data_dir.join("artifacts").join(format!("{artifact}.json"));
        let manifest: ArtifactManifest = tokio::fs::read(&manifest_path)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| internal("the build output is gone; redeploy the service to build it again"))?;
        let (resources, volumes) = self.resource_credentials(spec).await?;
        let host = self.host(&spec.hostname);
        let mut env = Vec::with_capacity(spec.env.len());
        for (name, sealed) in &spec.env {
            let value = self
                .config
                .keyring
                .open(sealed, &vault::env_context(&spec.service_id.to_string(), name))
                .map_err(|e| internal(&format!("variable {name}: {e}")))?;
            let value = domain::refs::resolve(&value, |resource, field| {
                resources.get(resource).and_then(|c| credential_field(c, field))
            })
            .map_err(|r| FailureReason::ResourceNotReady { name: r.resource, status: "missing that field".into() })?;
            env.push((name.clone(), value));
        }
        Ok(Launch {
            service_id: spec.service_id,
            deployment_id,
            edge: self.edge(spec.service_id, &host),
            host,
            artifact_dir: self.config.data_dir.join("artifacts").join(&artifact),
            manifest,
            port: spec.port.unwrap_or(DEFAULT_PORT),
            env,
            memory_mb: spec.memory_mb,
            cpu_millis: spec.cpu_millis,
            volumes,
        })
    }

    /// The credentials of every resource the service's variables reference, opened; a resource
    /// missing or not ready fails the deployment with its name and status.
    async fn resource_credentials(
        &self,
        spec: &domain::Spec,
    ) -> Result<(HashMap<String, resources::Credentials>, Vec<sandbox::Volume>), FailureReason> {
        let mut out = HashMap::new();
        let mut volumes = Vec::new();
        for name in &spec.resources {
            let not_ready =
                |status: &str| FailureReason::ResourceNotReady { name: name.clone(), status: status.into() };
            let claim_id = events::ClaimKind::Resource.claim_id(&format!("{}/{name}", spec.owner));
            let claim: domain::Claim =
                self.config.commands.load(&claim_id).await.map_err(|e| internal(&e.to_string()))?;
            let Some(holder) = claim.holder.filter(|h| h.owner == spec.owner) else { return Err(not_ready("missing")) };
            let resource: domain::Resource =
                self.config.commands.load(&holder.target).await.map_err(|e| internal(&e.to_string()))?;
            let sealed = match (resource.status, &resource.credentials) {
                (domain::ResourceStatus::Ready, Some(sealed)) => sealed,
                (domain::ResourceStatus::Failed, _) => return Err(not_ready("failed")),
                (domain::ResourceStatus::Provisioning, _) => return Err(not_ready("still provisioning")),
                _ => return Err(not_ready("missing")),
            };
            let clear = self
                .config
                .keyring
                .open(sealed, &vault::resource_context(&holder.target))
                .map_err(|e| internal(&format!("resource {name}: {e}")))?;
            let mut credentials: resources::Credentials =
                serde_json::from_str(&clear).map_err(|e| internal(&format!("resource {name}: {e}")))?;
            // A local SQLite file: its directory is bound into the sandbox, and the app gets the
            // path it sees there.
            if let Some(host_path) = credentials.url.strip_prefix("file:").map(std::path::PathBuf::from)
                && let (Some(dir), Some(file)) = (host_path.parent(), host_path.file_name())
            {
                let guest = format!("/data/{name}");
                let inside = format!("{guest}/{}", file.to_string_lossy());
                volumes.push(sandbox::Volume { host: dir.to_path_buf(), guest });
                credentials.url = format!("file:{inside}");
                credentials.database = Some(inside);
            }
            out.insert(name.clone(), credentials);
        }
        Ok((out, volumes))
    }

    /// Points the service's host and its custom domains at `upstream`.
    fn route(&self, service: ServiceId, host: &str, upstream: router::Upstream) {
        let aliases = self.edges.lock().expect("not poisoned").domains(service);
        for alias in &aliases {
            self.config.routes.set(alias, upstream.clone());
        }
        self.config.routes.set(host, upstream);
    }

    /// The service's custom domains and the certificates covering them or `host`.
    fn edge(&self, service: ServiceId, host: &str) -> Edge {
        self.edges.lock().expect("not poisoned").edge(service, host)
    }

    /// Hands the service's current edge to its running deployment, if any.
    async fn update_edge(&self, service: ServiceId) -> Result<(), Unavailable> {
        let slot = self.slot(service).await;
        let current = slot.lock().await;
        match current.as_ref() {
            Some(c) => c.running.update_edge(&self.edge(service, &c.host)).await,
            None => Ok(()),
        }
    }

    /// Installs a zone's certificate (its wildcard and apex) in the router, and hands it to
    /// the running deployments whose names it covers.
    async fn install_certificate(&self, zone_id: &str) -> Result<(), Unavailable> {
        let Ok(zone) = self.config.commands.load::<domain::Zone>(zone_id).await else { return Ok(()) };
        let (Some(spec), Some(cert)) = (&zone.spec, &zone.certificate) else { return Ok(()) };
        let key = match self.config.keyring.open(&cert.key, &vault::zone_context(zone_id)) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(zone = %spec.zone, error = %e, "a certificate key does not open");
                return Ok(());
            }
        };
        for name in [format!("*.{}", spec.zone), spec.zone.clone()] {
            if let Err(e) = self.config.certs.set(&name, &cert.chain_pem, &key) {
                tracing::warn!(%name, error = %e, "a certificate was not installed");
            }
        }
        let cert = ZoneCert {
            zone_id: spec.zone_id,
            zone: spec.zone.clone(),
            chain_pem: cert.chain_pem.clone(),
            key_pem: key,
        };
        self.edges.lock().expect("not poisoned").set_cert(cert.clone());
        let slots: Vec<(ServiceId, Slot)> =
            self.services.lock().await.iter().map(|(s, slot)| (*s, slot.clone())).collect();
        let mut covered = Vec::new();
        for (service, slot) in slots {
            let host = match slot.try_lock() {
                Ok(current) => match current.as_ref() {
                    Some(c) => Some(c.host.clone()),
                    None => continue, // nothing runs
                },
                // Busy deploying: its launch may predate the certificate, so it hears of it
                // after (one idempotent apply at worst).
                Err(_) => None,
            };
            let edges = self.edges.lock().expect("not poisoned");
            if host.is_none_or(|h| edges.concerns(service, &h, &cert)) {
                covered.push(service);
            }
        }
        for service in covered {
            self.update_edge(service).await?;
        }
        Ok(())
    }

    /// Adds or removes a custom domain's route after its event.
    async fn refresh_domain(&self, domain_id: &str) -> Result<(), Unavailable> {
        let Ok(d) = self.config.commands.load::<domain::CustomDomain>(domain_id).await else { return Ok(()) };
        let Some(spec) = d.spec else { return Ok(()) };
        if d.removed {
            self.edges.lock().expect("not poisoned").remove_domain(spec.service, &spec.domain);
            self.config.routes.remove(&spec.domain);
            return self.update_edge(spec.service).await;
        }
        self.edges.lock().expect("not poisoned").add_domain(spec.service, spec.domain.clone());
        {
            let slot = self.slot(spec.service).await;
            let current = slot.lock().await;
            if let Some(upstream) = current.as_ref().and_then(|c| c.running.upstream()) {
                self.config.routes.set(&spec.domain, upstream);
            }
        }
        self.update_edge(spec.service).await
    }

    /// Certificates and custom domains as recorded (after a restart).
    async fn restore_edges(&self) -> Result<(), Error> {
        for d in self.config.store.all_domains().await? {
            if let Ok(service) = d.service_id.parse::<ServiceId>() {
                self.edges.lock().expect("not poisoned").add_domain(service, d.domain);
            }
        }
        // Nothing runs yet: installing only fills the router and the certificate table.
        for zone in self.config.store.active_zones().await? {
            let _ = self.install_certificate(&zone.zone_id).await;
        }
        Ok(())
    }

    /// Stops a deleted service and frees its host.
    async fn remove(&self, service: ServiceId) {
        let slot = self.slot(service).await;
        let current = slot.lock().await.take();
        if let Some(current) = current {
            self.config.routes.remove(&current.host);
            current.running.stop().await;
        }
        let aliases = self.edges.lock().expect("not poisoned").forget(service);
        for alias in aliases {
            self.config.routes.remove(&alias);
        }
        self.config.driver.forget(service).await;
        self.services.lock().await.remove(&service);
    }

    async fn report(&self, report: Report) {
        let result = match report {
            Report::Crashed { service_id, deployment_id, exit_code, out_of_memory } => {
                let command = ServiceCommand::Crash { deployment_id, exit_code, out_of_memory, now: Utc::now() };
                self.execute(service_id, command).await
            }
            Report::Recovered { service_id, deployment_id, upstream } => {
                let slot = self.slot(service_id).await;
                let current = slot.lock().await;
                if let (Some(c), Some(upstream)) = (current.as_ref(), upstream)
                    && c.deployment_id == deployment_id
                {
                    self.route(service_id, &c.host, upstream);
                }
                self.execute(service_id, ServiceCommand::MarkLive { deployment_id, now: Utc::now() }).await
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "scheduler: a runtime report was not recorded");
        }
    }

    /// Brings back every live deployment (after a restart of this process).
    async fn restore(&self) -> Result<(), Error> {
        for service in self.config.store.services_with_live_deployment().await? {
            let Ok(service) = service.parse::<ServiceId>() else { continue };
            let Ok(state) = self.load(service).await else { continue };
            let Some(deployment_id) = state.should_run() else { continue };
            let launch = match self.launch(&state, deployment_id).await {
                Ok(l) => l,
                Err(reason) => {
                    tracing::warn!(%service, ?reason, "a live deployment cannot be restored");
                    continue;
                }
            };
            let host = launch.host.clone();
            match self.config.driver.start(launch, self.reports.clone()).await {
                Ok(running) => {
                    if let Some(upstream) = running.upstream() {
                        self.route(service, &host, upstream);
                    }
                    *self.slot(service).await.lock().await = Some(Current { deployment_id, host, running });
                }
                Err(e) => {
                    tracing::warn!(%service, ?e, "a live deployment did not come back");
                    let crash =
                        ServiceCommand::Crash { deployment_id, exit_code: None, out_of_memory: false, now: Utc::now() };
                    let _ = self.execute(service, crash).await;
                }
            }
        }
        Ok(())
    }

    async fn stop_all(&self) {
        if self.config.driver.outlives_scheduler() {
            return;
        }
        let slots: Vec<_> = self.services.lock().await.drain().map(|(_, s)| s).collect();
        for slot in slots {
            if let Some(current) = slot.lock().await.take() {
                self.config.routes.remove(&current.host);
                current.running.stop().await;
            }
        }
    }
}

/// One field of a resource's credentials, as `${{ resources.<name>.<field> }}` names it.
fn credential_field(c: &resources::Credentials, field: &str) -> Option<String> {
    match field {
        "url" => Some(c.url.clone()),
        "token" => c.token.clone(),
        "user" => c.user.clone(),
        "password" => c.password.clone(),
        "host" => c.host.clone(),
        "port" => c.port.map(|p| p.to_string()),
        "database" => c.database.clone(),
        _ => None,
    }
}

fn internal(message: &str) -> FailureReason {
    FailureReason::Internal { message: message.to_owned() }
}
