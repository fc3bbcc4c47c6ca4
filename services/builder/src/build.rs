//! One build: checkout, plan, sandboxed install and build, content-addressed output.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bus::LogSink;
use chrono::Utc;
use cqrs_es::AggregateError;
use domain::{Rejection, Service, ServiceCommand, Status};
use events::{AnyEvent, ArtifactManifest, Decoded, DeploymentId, FailureReason, LogKind, ServiceEvent, ToolchainMount};
use futures::StreamExt;
use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::cache::OwnerCache;
use crate::environment;
use crate::layers::{self, Layers};
use crate::plan::{self, Overrides, Plan};
use crate::steps::{self, Steps};
use crate::{Config, Error};

/// The directory of a build's output under the data directory.
pub fn artifact_dir(data_dir: &Path, artifact: &str) -> PathBuf {
    data_dir.join("artifacts").join(artifact)
}

/// The manifest the runtime reads beside the output.
pub fn manifest_path(data_dir: &Path, artifact: &str) -> PathBuf {
    data_dir.join("artifacts").join(format!("{artifact}.json"))
}

pub(crate) async fn consume(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let mut batches = config.bus.batches_until("EVENTS", "builder", 64, shutdown.clone()).await?;
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    // Deployments being built here: a redelivery of one (its ack wait ran out under load) is
    // left to the task that holds it, never built a second time at once.
    let in_flight: Arc<std::sync::Mutex<std::collections::HashSet<DeploymentId>>> = Arc::default();
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        for delivery in batch {
            let Ok(decoded) = Decoded::from_slice(delivery.payload()) else {
                tracing::warn!(seq = delivery.stream_sequence, "builder: skipping an event that does not decode");
                delivery.ack().await?;
                continue;
            };
            let AnyEvent::Service(event) = decoded.event else {
                delivery.ack().await?;
                continue;
            };
            let service = decoded.id.aggregate_id;
            match event {
                ServiceEvent::DeploymentRequested { deployment_id, commit_sha, .. } => {
                    if !in_flight.lock().expect("lock").insert(deployment_id) {
                        continue;
                    }
                    let (config, shutdown, slots) = (config.clone(), shutdown.clone(), slots.clone());
                    let in_flight = in_flight.clone();
                    tokio::spawn(async move {
                        let job = Job { config: &config, service: &service, deployment_id, commit_sha };
                        // Keeps the message ours while it waits for a slot and while it builds.
                        let work = async {
                            let _permit = slots.acquire().await.expect("the semaphore is never closed");
                            job.run().await
                        };
                        let outcome = tokio::select! {
                            o = delivery.in_progress(work) => Some(o),
                            _ = shutdown.cancelled() => None,
                        };
                        in_flight.lock().expect("lock").remove(&deployment_id);
                        let Some(outcome) = outcome else { return };
                        match outcome {
                            Ok(()) => {
                                let _ = delivery.ack().await;
                            }
                            Err(e) => {
                                tracing::warn!(%deployment_id, error = %e, "build will be retried");
                                let _ = delivery.retry_after(Duration::from_secs(2)).await;
                            }
                        }
                    });
                }
                ServiceEvent::ServiceDeleted { .. } => {
                    remove_artifacts(&config, &service).await;
                    delivery.ack().await?;
                }
                _ => delivery.ack().await?,
            }
        }
    }
    Ok(())
}

/// The outputs of a deleted service's deployments go with it (outputs are keyed by service, so
/// no other service is serving from them).
async fn remove_artifacts(config: &Config, service: &str) {
    let Ok(state) = config.commands.load::<Service>(service).await else { return };
    for artifact in state.deployments.values().filter_map(|d| d.artifact.as_deref()) {
        let _ = tokio::fs::remove_dir_all(artifact_dir(&config.data_dir, artifact)).await;
        let _ = tokio::fs::remove_file(manifest_path(&config.data_dir, artifact)).await;
    }
}

/// Errors that make the build worth retrying (infrastructure), as opposed to a failed build,
/// which is recorded on the deployment.
type Retry = String;

struct Job<'a> {
    config: &'a Config,
    service: &'a str,
    deployment_id: DeploymentId,
    commit_sha: String,
}

impl Job<'_> {
    async fn run(self) -> Result<(), Retry> {
        let state: Service = self.config.commands.load(self.service).await.map_err(|e| e.to_string())?;
        let Some(spec) = state.spec.clone().filter(|_| !state.deleted) else { return Ok(()) };
        let Some(dep) = state.deployments.get(&self.deployment_id) else { return Ok(()) };
        if !matches!(dep.status, Status::Queued | Status::Building) {
            return Ok(()); // done before this delivery, or superseded
        }
        self.execute(ServiceCommand::StartBuild { deployment_id: self.deployment_id, now: Utc::now() }).await?;

        let mut log = LogSink::new(self.config.bus.clone(), self.deployment_id, LogKind::Build);
        let short = &self.commit_sha[..12.min(self.commit_sha.len())];
        log.platform(format!("building commit {short} of branch `{}`", spec.branch)).await;
        let overrides = Overrides {
            build_pack: spec.build_pack,
            install_command: spec.install_command.clone(),
            build_command: spec.build_command.clone(),
            start_command: spec.start_command.clone(),
        };
        let result = self.build(&spec, &overrides, &mut log).await;
        log.flush().await;
        match result {
            Ok(Built { artifact, plan, cached, image }) => {
                log.platform(if cached { "build output reused (same commit and plan)" } else { "build succeeded" })
                    .await;
                log.flush().await;
                self.execute(ServiceCommand::FinishBuild {
                    deployment_id: self.deployment_id,
                    artifact,
                    plan: plan.describe(),
                    cached,
                    image,
                    now: Utc::now(),
                })
                .await
            }
            Err(Outcome::Failed(reason)) => {
                log.platform(format!("build failed: {}", summary(&reason))).await;
                log.flush().await;
                self.execute(ServiceCommand::Fail { deployment_id: self.deployment_id, reason, now: Utc::now() }).await
            }
            Err(Outcome::Retry(e)) => Err(e),
        }
    }

    async fn execute(&self, command: ServiceCommand) -> Result<(), Retry> {
        match self.config.commands.services.execute(self.service, command).await {
            Ok(()) => Ok(()),
            // The service was deleted meanwhile: nothing left to record.
            Err(AggregateError::UserError(Rejection::NotFound { .. })) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn build(&self, spec: &domain::Spec, overrides: &Overrides, log: &mut LogSink) -> Result<Built, Outcome> {
        let data = &self.config.data_dir;
        // The build's disk: its checkout, caches it unpacks, dependencies, image store and output,
        // all within the build's size (a crashed run's disk was unmounted by `sandbox::Host::new`).
        // Its root is root's: the sandbox user owns only `app/` (and an image build its store).
        let short = self.deployment_id.short();
        let (mount, image) =
            (self.config.work_dir.join(format!("{short}.disk")), self.config.work_dir.join(format!("{short}.img")));
        let _ = tokio::fs::remove_file(&image).await;
        let _ = tokio::fs::remove_dir_all(&mount).await;
        let disk = self.config.sandbox.create_disk(&image, &mount, self.config.build_disk_mb).await.map_err(retry)?;
        let work = mount.join("app");
        let made = async {
            std::os::unix::fs::chown(&mount, Some(0), Some(0))?;
            tokio::fs::set_permissions(&mount, std::os::unix::fs::PermissionsExt::from_mode(0o755)).await?;
            tokio::fs::create_dir(&work).await
        }
        .await;
        if let Err(e) = made {
            let _ = disk.delete().await;
            return Err(retry(e));
        }
        let disk = &disk_guard(disk);
        let result = async {
            let repo_dir = data.join("git").join(spec.repo.dir_name());
            self.checkout(&repo_dir, &work, log).await.map_err(|e| self.when_full(disk, e))?;
            let plan = plan::detect(&work, overrides).map_err(|e| {
                Outcome::Failed(FailureReason::BuildFailed {
                    command: "detect a build plan".into(),
                    exit_code: None,
                    log_tail: vec![e.to_string()],
                })
            })?;
            log.platform(format!("plan: {}", plan.describe())).await;
            // Per service: deleting a service removes its outputs, which another service's
            // deployment of the same commit must not be serving from.
            let key =
                format!("{}-{}-{}", spec.service_id.to_string().to_lowercase(), self.commit_sha, &plan.key()[..16]);
            let out = artifact_dir(data, &key);
            let cached: Option<ArtifactManifest> =
                tokio::fs::read(manifest_path(data, &key)).await.ok().and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(m) = cached {
                let image = m.image.and_then(|i| i.pushed).or(m.pushed);
                // Output built before a registry was configured has no image to pull: build again.
                if self.config.registry.is_none() || image.is_some() {
                    return Ok(Built { artifact: key, plan, cached: true, image });
                }
            }
            let mut manifest = ArtifactManifest {
                provider: plan.provider.as_str().to_owned(),
                start: plan.start.clone(),
                static_root: plan.static_root.clone(),
                ..ArtifactManifest::default()
            };
            let _ = tokio::fs::remove_dir_all(&out).await;
            if plan.provider == plan::Provider::Dockerfile {
                let staging = mount.join("image");
                let _ = tokio::fs::remove_dir_all(&staging).await;
                tokio::fs::create_dir_all(&staging).await.map_err(retry)?;
                let steps = self.steps(spec, &plan, &work, vec![], vec![]).await?;
                let sb = self.config.sandbox.create(steps.sandbox_spec()).await.map_err(retry)?;
                let tag = format!("localhost/dmcp-build:{}", self.deployment_id.short());
                let push = self.config.registry.as_ref().map(|r| {
                    let name = format!("svc/{}", spec.service_id.to_string().to_lowercase());
                    (r, name, crate::registry::build_tag(&self.commit_sha, &plan.key()))
                });
                // RUN steps get the same way out as plan steps: the proxy, through buildah's env.
                let mut egress = steps.egress(&sb).await?;
                let env = environment::proxy_env(Some(egress.addr), Path::new(environment::CA_BUNDLE).is_file());
                let built = tokio::time::timeout(
                    self.config.build_timeout,
                    crate::image::build(&sb, &work, &staging, &tag, plan.start.as_deref(), &env, push, log),
                )
                .await;
                egress.drain(log).await;
                let refused = egress.first_refusal().cloned();
                drop(egress);
                let _ = sb.destroy(Duration::from_secs(1)).await;
                let built = built.map_err(|_| steps::too_long(self.config, "buildah bud (the Dockerfile)", log))?;
                manifest.image = Some(match (built, refused) {
                    (
                        Err(Outcome::Failed(FailureReason::BuildFailed { command, log_tail, .. })),
                        Some((host, reason)),
                    ) => {
                        return Err(Outcome::Failed(FailureReason::EgressRefused { host, reason, command, log_tail }));
                    }
                    (built, _) => built?,
                });
                manifest.start = None;
                move_tree(&staging, &out).await.map_err(retry)?;
            } else {
                let toolchains = self.toolchains(&plan, log).await?;
                let owner = OwnerCache::open(&self.config.cache_dir, &spec.owner.to_string()).await.map_err(retry)?;
                let mut binds: Vec<sandbox::Bind> = toolchains
                    .iter()
                    .filter_map(|t| {
                        t.host_dir.as_ref().map(|host| sandbox::Bind {
                            host: host.clone(),
                            guest: t.guest_dir.clone(),
                            writable: false,
                        })
                    })
                    .collect();
                binds.push(sandbox::Bind {
                    host: owner.packages.clone(),
                    guest: environment::CACHE_GUEST.into(),
                    writable: true,
                });
                if let Some(mirror) = self.config.egress.policy().mirror("cargo") {
                    owner
                        .write_cargo_config(&environment::cargo_config(mirror.base().as_str()))
                        .await
                        .map_err(retry)?;
                }
                let mut steps =
                    self.steps(spec, &plan, &work, binds, toolchains.iter().map(Into::into).collect()).await?;
                steps.disk = Some((disk, self.config.build_disk_mb));
                steps.tool_bins = self.tools(&steps, &owner, log).await?;

                let layer = plan.deps.as_ref().and_then(|deps| {
                    let keys: Vec<String> = toolchains.iter().map(|t| t.key.clone()).collect();
                    layers::key(&plan, &keys, &work).map(|key| (key, deps.outputs.clone()))
                });
                let layers = Layers { root: owner.layers.clone() };
                let restored = match &layer {
                    Some((key, outputs)) => layers.restore(key, outputs, &work).await.unwrap_or(false),
                    None => false,
                };
                // Yarn 1 fetches from its lockfile's URLs: through the mirror when there is one.
                let yarn_lock = work.join("yarn.lock");
                let yarn_original = match self.config.egress.policy().mirror("npm") {
                    Some(mirror) if plan.tools.iter().any(|t| t.name == "yarn" && t.version.starts_with("1.")) => {
                        match tokio::fs::symlink_metadata(&yarn_lock).await {
                            Ok(meta) if meta.is_file() => {
                                let original = tokio::fs::read_to_string(&yarn_lock).await.map_err(retry)?;
                                let rewritten = environment::yarn_lock_for_mirror(&original, mirror.base().as_str());
                                tokio::fs::write(&yarn_lock, rewritten).await.map_err(retry)?;
                                Some(original)
                            }
                            _ => None,
                        }
                    }
                    _ => None,
                };
                if restored {
                    log.platform("install: dependencies restored from an earlier build (their inputs are unchanged)")
                        .await;
                } else if let Some(install) = &plan.install {
                    steps.run(steps::Kind::Install, install, plan.package_manager.as_deref(), log).await?;
                    if let Some((key, outputs)) = &layer
                        && let Err(e) = layers.save(key, outputs, &work).await
                    {
                        tracing::warn!(error = %e, "keeping the dependency layer failed");
                    }
                }
                for (kind, command) in [(steps::Kind::Build, &plan.build), (steps::Kind::Prune, &plan.prune)] {
                    if let Some(command) = command {
                        steps.run(kind, command, None, log).await?;
                    }
                }
                if let Some(original) = yarn_original {
                    tokio::fs::write(&yarn_lock, original).await.map_err(retry)?;
                }
                if let Some(root) = &plan.static_root {
                    crate::output::check_static_root(&work, root).map_err(|e| {
                        Outcome::Failed(FailureReason::BuildFailed {
                            command: format!("serve `{root}` (the static output)"),
                            exit_code: None,
                            log_tail: vec![e.to_string()],
                        })
                    })?;
                    let leaving = crate::output::links_out_of(&work.join(root), 5);
                    if !leaving.is_empty() {
                        let list: Vec<String> = leaving.iter().map(ToString::to_string).collect();
                        log.platform(format!(
                            "warning: links in the static output lead outside it and answer 404: {}",
                            list.join(", ")
                        ))
                        .await;
                    }
                }
                manifest.toolchains = toolchains
                    .iter()
                    .map(|t| ToolchainMount {
                        tool: t.tool.as_str().to_owned(),
                        version: t.version.clone(),
                        key: t.host_dir.as_ref().map(|_| t.key.clone()),
                        guest_dir: t.guest_dir.clone(),
                    })
                    .collect();
                manifest.env = environment::run_env(&plan, &steps.toolchains);
                // Output first, manifest last: a manifest means a complete output.
                copy_out(&work, &out).await.map_err(retry)?;
                if let Some(registry) = &self.config.registry {
                    manifest.pushed = Some(self.package(registry, spec, &plan, &manifest, &out, log).await?);
                }
            }
            let json = serde_json::to_vec_pretty(&manifest).map_err(retry)?;
            write_atomic(&manifest_path(data, &key), &json).await.map_err(retry)?;
            let image = manifest.image.as_ref().and_then(|i| i.pushed.clone()).or(manifest.pushed.clone());
            Ok(Built { artifact: key, plan, cached: false, image })
        }
        .await;
        if let Some(disk) = disk.take() {
            let _ = disk.delete().await;
        }
        result
    }

    /// A failure on a full disk is the build's size, whatever the step made of it.
    fn when_full(&self, disk: &DiskGuard, outcome: Outcome) -> Outcome {
        match outcome {
            Outcome::Failed(FailureReason::BuildFailed { command, log_tail, .. }) if disk.is_full() => {
                Outcome::Failed(FailureReason::DiskQuotaExceeded {
                    disk: "build".into(),
                    limit_mb: self.config.build_disk_mb,
                    command: Some(command),
                    log_tail,
                })
            }
            other => other,
        }
    }

    async fn steps<'p>(
        &'p self,
        spec: &domain::Spec,
        plan: &'p Plan,
        work: &Path,
        binds: Vec<sandbox::Bind>,
        toolchains: Vec<environment::ToolchainEnv>,
    ) -> Result<Steps<'p>, Outcome> {
        let service = spec.service_id.to_string().to_lowercase();
        Ok(Steps {
            config: self.config,
            id: self.deployment_id.short(),
            work: work.to_path_buf(),
            plan,
            toolchains,
            binds,
            tool_bins: vec![],
            cargo_target: format!("{}/cargo-target/{service}", environment::CACHE_GUEST),
            disk: None,
        })
    }

    /// Provides the plan's toolchains, downloading what the cache lacks.
    async fn toolchains(&self, plan: &Plan, log: &mut LogSink) -> Result<Vec<toolchains::Toolchain>, Outcome> {
        let mut provided = Vec::new();
        for request in &plan.toolchains {
            match self.config.toolchains.provide(request).await {
                Ok(t) => {
                    let from = request.from.as_deref().map(|f| format!(", asked for in {f}")).unwrap_or_default();
                    log.platform(format!("toolchain: {} {} from {}{from}", t.tool, t.version, t.source)).await;
                    for note in &t.notes {
                        log.platform(format!("toolchain: {note}")).await;
                    }
                    provided.push(t);
                }
                Err(toolchains::Error::Unavailable { tool, requested, from, available }) => {
                    return Err(Outcome::Failed(FailureReason::ToolchainUnavailable {
                        tool: tool.as_str().to_owned(),
                        requested,
                        from,
                        available,
                    }));
                }
                Err(e) if e.is_transient() => return Err(retry(format!("toolchain {}: {e}", request.tool))),
                Err(e) => {
                    return Err(Outcome::Failed(FailureReason::BuildFailed {
                        command: format!("provide the {} toolchain", request.tool),
                        exit_code: None,
                        log_tail: vec![e.to_string()],
                    }));
                }
            }
        }
        Ok(provided)
    }

    /// Installs the plan's package-manager CLIs into the owner's cache (once per version) and
    /// returns their bin directories as the sandbox sees them.
    async fn tools(&self, steps: &Steps<'_>, owner: &OwnerCache, log: &mut LogSink) -> Result<Vec<String>, Outcome> {
        let mut bins = Vec::new();
        for tool in &steps.plan.tools {
            let dir = format!("{}-{}", tool.name, tool.version);
            if !tool
                .name
                .bytes()
                .chain(tool.version.bytes())
                .all(|b| b.is_ascii_alphanumeric() || b"@/._-+".contains(&b))
                || dir.contains("..")
            {
                return Err(retry(format!("the plan names an odd tool {dir:?}")));
            }
            let guest = format!("{}/{}", environment::TOOLS_GUEST, dir.replace('/', "_"));
            let lock = owner.tool_lock(&guest).await;
            let _held = lock.lock().await;
            let ready = owner.packages.join("tools").join(dir.replace('/', "_")).join(".complete");
            if !tokio::fs::try_exists(&ready).await.unwrap_or(false) {
                let (command, pm) = crate::tools::install_command(tool, &guest);
                steps.run(steps::Kind::Tool, &command, Some(pm), log).await?;
                tokio::fs::write(&ready, b"").await.map_err(retry)?;
            }
            bins.push(format!("{guest}/bin"));
        }
        Ok(bins)
    }

    /// Packages a plan's build output as an image on the provider's base image (for the
    /// cluster runtime) and pushes it.
    async fn package(
        &self,
        registry: &crate::registry::Registry,
        spec: &domain::Spec,
        plan: &Plan,
        manifest: &ArtifactManifest,
        out: &Path,
        log: &mut LogSink,
    ) -> Result<String, Outcome> {
        let provider = plan.provider.as_str();
        let Some(base) = self.config.base_images.get(provider) else {
            return Err(Outcome::Failed(FailureReason::BuildFailed {
                command: "package the build as an image".into(),
                exit_code: None,
                log_tail: vec![format!(
                    "this platform has no base image for `{provider}` apps (DEPLOY_MCP_BASE_IMAGES): use build_pack dockerfile with a Dockerfile, or ask the operator to configure one"
                )],
            }));
        };
        // Only for buildah's network namespace: packaging reaches nothing.
        let spec_sb = sandbox::Spec {
            id: self.deployment_id.short(),
            app_dir: out.to_path_buf(),
            memory_mb: self.config.build_memory_mb,
            cpu_millis: 0,
            pids_max: 512,
            tmp_mb: 64,
            volumes: vec![],
            binds: vec![],
            network: sandbox::Network::Sealed,
        };
        let sb = self.config.sandbox.create(spec_sb).await.map_err(retry)?;
        let name = format!("svc/{}", spec.service_id.to_string().to_lowercase());
        let tag = crate::registry::build_tag(&self.commit_sha, &plan.key());
        let local = format!("localhost/dmcp-package:{}", self.deployment_id.short());
        let toolchains: Vec<(PathBuf, String)> = manifest
            .toolchains
            .iter()
            .filter_map(|t| t.key.as_ref().map(|k| (self.config.toolchains.root().join(k), t.guest_dir.clone())))
            .collect();
        let pushed = tokio::time::timeout(
            self.config.build_timeout,
            crate::image::package(
                &sb,
                out,
                base,
                plan,
                crate::image::Extras { toolchains: &toolchains, env: &manifest.env },
                &local,
                (registry, name, tag),
                log,
            ),
        )
        .await;
        let _ = sb.destroy(Duration::from_secs(1)).await;
        pushed.map_err(|_| steps::too_long(self.config, "package the build as an image", log))?
    }
}

fn summary(reason: &FailureReason) -> String {
    match reason {
        FailureReason::BuildFailed { command, exit_code: Some(code), .. } => format!("`{command}` exited with {code}"),
        FailureReason::BuildFailed { command, .. } => format!("`{command}` failed"),
        FailureReason::DependencyInstallFailed { package_manager, first_error, .. } => match first_error {
            Some(e) => format!("{package_manager} could not install the dependencies: {e}"),
            None => format!("{package_manager} could not install the dependencies"),
        },
        FailureReason::EgressRefused { host, .. } => format!("the build may not reach {host}"),
        FailureReason::DiskQuotaExceeded { limit_mb, .. } => format!("the build filled its {limit_mb} MiB disk"),
        FailureReason::ToolchainUnavailable { tool, requested, available, .. } => {
            format!("{tool} {requested} cannot be provided (usable: {})", available.join(", "))
        }
        other => format!("{other:?}"),
    }
}

struct Built {
    artifact: String,
    plan: Plan,
    cached: bool,
    /// The pushed image, `<reference>@<digest>`.
    image: Option<String>,
}

pub(crate) enum Outcome {
    /// The build failed for a reason the agent can fix: recorded on the deployment.
    Failed(FailureReason),
    /// The platform could not build right now: the delivery is retried.
    Retry(Retry),
}

pub(crate) fn retry(e: impl std::fmt::Display) -> Outcome {
    Outcome::Retry(e.to_string())
}

/// The commit's tree as a tar, written by git (from the platform's own repository) into the work
/// directory, extracted inside a sandbox: untrusted paths and links are unpacked by the sandbox
/// user, seeing nothing of the host but the work directory.
const CHECKOUT_TAR: &str = ".dmcp-checkout.tar";

impl Job<'_> {
    /// Writes the commit's tree (no `.git`) into `dest`.
    async fn checkout(&self, repo_dir: &Path, dest: &Path, log: &mut LogSink) -> Result<(), Outcome> {
        let sha = &self.commit_sha;
        if !tokio::fs::try_exists(repo_dir).await.unwrap_or(false) {
            return Err(Outcome::Failed(FailureReason::Internal {
                message: "the repository has no copy on this platform's git server".into(),
            }));
        }
        let archived = Command::new(&self.config.git)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "safe.directory")
            .env("GIT_CONFIG_VALUE_0", "*")
            .arg("--git-dir")
            .arg(repo_dir)
            .args(["archive", "--format=tar", "-o"])
            .arg(dest.join(CHECKOUT_TAR))
            .arg(sha)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(retry)?;
        if !archived.status.success() {
            let message = String::from_utf8_lossy(&archived.stderr).trim().to_owned();
            return Err(Outcome::Failed(FailureReason::Internal {
                message: format!("commit {sha} could not be checked out: {message}"),
            }));
        }
        let spec = sandbox::Spec {
            id: self.deployment_id.short(),
            app_dir: dest.to_path_buf(),
            memory_mb: self.config.build_memory_mb,
            cpu_millis: self.config.build_cpu_millis,
            pids_max: 64,
            tmp_mb: 16,
            volumes: vec![],
            binds: vec![],
            network: sandbox::Network::Sealed,
        };
        let sb = self.config.sandbox.create(spec).await.map_err(retry)?;
        let command = format!(
            "tar -x --no-same-owner --no-same-permissions --exclude={CHECKOUT_TAR} -f {CHECKOUT_TAR} && rm -f {CHECKOUT_TAR}"
        );
        let result = async {
            let mut process = sb.spawn(&command, &[]).map_err(retry)?;
            let mut lines = process.lines();
            let mut output = Vec::new();
            let status = tokio::time::timeout(self.config.build_timeout, async {
                while let Some(line) = lines.recv().await {
                    output.push(line.text);
                }
                process.wait().await
            })
            .await
            .map_err(|_| steps::too_long(self.config, "extract the commit's files", log))?
            .map_err(retry)?;
            if status.success() {
                return Ok(());
            }
            // A tree that does not unpack is the commit's doing, not the platform's: not retried.
            output.truncate(20);
            Err(Outcome::Failed(FailureReason::BuildFailed {
                command: "extract the commit's files".into(),
                exit_code: match status {
                    sandbox::ExitStatus::Code(c) => Some(c),
                    sandbox::ExitStatus::Signal(_) => None,
                },
                log_tail: output,
            }))
        }
        .await;
        let _ = sb.destroy(Duration::from_secs(1)).await;
        result
    }
}

/// The build's disk, taken once for its deletion.
pub(crate) type DiskGuard = std::sync::Mutex<Option<sandbox::Disk>>;

fn disk_guard(disk: sandbox::Disk) -> DiskGuard {
    std::sync::Mutex::new(Some(disk))
}

pub(crate) trait DiskGuardExt {
    fn take(&self) -> Option<sandbox::Disk>;
    fn is_full(&self) -> bool;
}

impl DiskGuardExt for DiskGuard {
    fn take(&self) -> Option<sandbox::Disk> {
        self.lock().expect("not poisoned").take()
    }

    fn is_full(&self) -> bool {
        self.lock().expect("not poisoned").as_ref().is_some_and(sandbox::Disk::is_full)
    }
}

/// Copies the build output off its disk into the artifacts root (`to` must not exist).
async fn copy_out(from: &Path, to: &Path) -> std::io::Result<()> {
    let out =
        Command::new("cp").arg("-a").arg("--no-target-directory").arg(from).arg(to).kill_on_drop(true).output().await?;
    if !out.status.success() {
        let _ = tokio::fs::remove_dir_all(to).await;
        return Err(std::io::Error::other(format!("cp: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

/// Moves the build output into the artifacts root (a copy when they are on different file
/// systems).
async fn move_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    if tokio::fs::rename(from, to).await.is_ok() {
        return Ok(());
    }
    let out = Command::new("cp").arg("-a").arg(from).arg(to).kill_on_drop(true).output().await?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!("cp: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    tokio::fs::remove_dir_all(from).await
}

async fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, path).await
}
