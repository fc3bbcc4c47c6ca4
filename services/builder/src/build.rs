//! One build: checkout, plan, sandboxed install and build, content-addressed output.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bus::LogSink;
use chrono::Utc;
use cqrs_es::AggregateError;
use domain::{Rejection, Service, ServiceCommand, Status};
use events::{AnyEvent, ArtifactManifest, Decoded, DeploymentId, FailureReason, LogKind, ServiceEvent};
use futures::StreamExt;
use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::plan::{self, Overrides, Plan};
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
        let work = self.config.work_dir.join(self.deployment_id.short());
        let _ = tokio::fs::remove_dir_all(&work).await;
        tokio::fs::create_dir_all(&work).await.map_err(retry)?;
        let result = async {
            let repo_dir = data.join("git").join(spec.repo.dir_name());
            checkout(&self.config.git, &repo_dir, &self.commit_sha, &work).await?;
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
                image: None,
                pushed: None,
            };
            let _ = tokio::fs::remove_dir_all(&out).await;
            if plan.provider == plan::Provider::Dockerfile {
                let staging = work.with_extension("image");
                let _ = tokio::fs::remove_dir_all(&staging).await;
                tokio::fs::create_dir_all(&staging).await.map_err(retry)?;
                let sb = self.config.sandbox.create(self.sandbox_spec(&work)).await.map_err(retry)?;
                let tag = format!("localhost/dmcp-build:{}", self.deployment_id.short());
                let push = self.config.registry.as_ref().map(|r| {
                    let name = format!("svc/{}", spec.service_id.to_string().to_lowercase());
                    (r, name, crate::registry::build_tag(&self.commit_sha, &plan.key()))
                });
                let built = tokio::time::timeout(
                    self.config.build_timeout,
                    crate::image::build(&sb, &work, &staging, &tag, plan.start.as_deref(), push, log),
                )
                .await;
                let _ = sb.destroy(Duration::from_secs(1)).await;
                manifest.image = Some(built.map_err(|_| self.too_long("buildah bud (the Dockerfile)", log))??);
                manifest.start = None;
                move_tree(&staging, &out).await.map_err(retry)?;
            } else {
                for (what, command) in [("install", &plan.install), ("build", &plan.build)] {
                    if let Some(command) = command {
                        self.run_step(what, command, &work, log).await?;
                    }
                }
                // Output first, manifest last: a manifest means a complete output.
                move_tree(&work, &out).await.map_err(retry)?;
                if let Some(registry) = &self.config.registry {
                    manifest.pushed = Some(self.package(registry, spec, &plan, &out, log).await?);
                }
            }
            let json = serde_json::to_vec_pretty(&manifest).map_err(retry)?;
            write_atomic(&manifest_path(data, &key), &json).await.map_err(retry)?;
            let image = manifest.image.as_ref().and_then(|i| i.pushed.clone()).or(manifest.pushed.clone());
            Ok(Built { artifact: key, plan, cached: false, image })
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&work).await;
        let _ = tokio::fs::remove_dir_all(work.with_extension("image")).await;
        result
    }

    /// Packages a plan's build output as an image on the provider's base image (for the
    /// cluster runtime) and pushes it.
    async fn package(
        &self,
        registry: &crate::registry::Registry,
        spec: &domain::Spec,
        plan: &Plan,
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
        let sb = self.config.sandbox.create(self.sandbox_spec(out)).await.map_err(retry)?;
        let name = format!("svc/{}", spec.service_id.to_string().to_lowercase());
        let tag = crate::registry::build_tag(&self.commit_sha, &plan.key());
        let local = format!("localhost/dmcp-package:{}", self.deployment_id.short());
        let pushed = tokio::time::timeout(
            self.config.build_timeout,
            crate::image::package(&sb, out, base, plan, &local, (registry, name, tag), log),
        )
        .await;
        let _ = sb.destroy(Duration::from_secs(1)).await;
        pushed.map_err(|_| self.too_long("package the build as an image", log))?
    }

    /// A build step stopped at the build timeout (dropping its process kills it).
    fn too_long(&self, command: &str, log: &LogSink) -> Outcome {
        Outcome::Failed(FailureReason::BuildFailed {
            command: command.to_owned(),
            exit_code: None,
            log_tail: with_note(
                log.tail(),
                format!("stopped after {} s: the build took too long", self.config.build_timeout.as_secs()),
            ),
        })
    }

    /// A build's sandbox over its work directory.
    fn sandbox_spec(&self, work: &Path) -> sandbox::Spec {
        sandbox::Spec {
            id: self.deployment_id.short(),
            app_dir: work.to_path_buf(),
            memory_mb: self.config.build_memory_mb,
            cpu_millis: 0,
            pids_max: 512,
            tmp_mb: 512,
            volumes: vec![],
            binds: vec![],
            network: sandbox::Network::Forward,
        }
    }

    /// Runs one install or build command in a fresh sandbox over the work directory.
    async fn run_step(&self, what: &str, command: &str, work: &Path, log: &mut LogSink) -> Result<(), Outcome> {
        log.platform(format!("{what}: $ {command}")).await;
        let sb = self.config.sandbox.create(self.sandbox_spec(work)).await.map_err(retry)?;
        let env = vec![("CI".to_owned(), "true".to_owned()), ("NODE_ENV".to_owned(), "production".to_owned())];
        let result = async {
            let mut process = sb.spawn(command, &env).map_err(retry)?;
            let mut lines = process.lines();
            let wait = async {
                while let Some(line) = lines.recv().await {
                    log.line(line.stream.as_str(), line.text).await;
                }
                process.wait().await
            };
            let status = match tokio::time::timeout(self.config.build_timeout, wait).await {
                Ok(status) => status.map_err(retry)?,
                Err(_) => return Err(self.too_long(command, log)),
            };
            if status.success() {
                return Ok(());
            }
            let mut tail = log.tail();
            if sb.oom_kills() > 0 {
                tail = with_note(tail, format!("the build ran out of memory ({} MiB)", self.config.build_memory_mb));
            }
            Err(Outcome::Failed(FailureReason::BuildFailed {
                command: command.to_owned(),
                exit_code: exit_code(status),
                log_tail: tail,
            }))
        }
        .await;
        let _ = sb.destroy(Duration::from_secs(1)).await;
        result
    }
}

fn exit_code(status: sandbox::ExitStatus) -> Option<i32> {
    match status {
        sandbox::ExitStatus::Code(c) => Some(c),
        sandbox::ExitStatus::Signal(_) => None,
    }
}

fn with_note(mut tail: Vec<String>, note: String) -> Vec<String> {
    tail.push(note);
    tail
}

fn summary(reason: &FailureReason) -> String {
    match reason {
        FailureReason::BuildFailed { command, exit_code: Some(code), .. } => format!("`{command}` exited with {code}"),
        FailureReason::BuildFailed { command, .. } => format!("`{command}` failed"),
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

/// Writes the commit's tree (no `.git`) into `dest` with `git archive | tar -x`.
async fn checkout(git: &Path, repo_dir: &Path, sha: &str, dest: &Path) -> Result<(), Outcome> {
    if !tokio::fs::try_exists(repo_dir).await.unwrap_or(false) {
        return Err(Outcome::Failed(FailureReason::Internal {
            message: "the repository has no copy on this platform's git server".into(),
        }));
    }
    let mut archive = Command::new(git)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "safe.directory")
        .env("GIT_CONFIG_VALUE_0", "*")
        .arg("--git-dir")
        .arg(repo_dir)
        .args(["archive", "--format=tar", sha])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(retry)?;
    let stdout: Stdio = archive.stdout.take().expect("piped").try_into().map_err(retry)?;
    let tar = Command::new("tar")
        .args(["-x", "--no-same-owner", "-C"])
        .arg(dest)
        .stdin(stdout)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let (archived, extracted) = tokio::join!(archive.wait_with_output(), tar);
    let archived = archived.map_err(retry)?;
    let extracted = extracted.map_err(retry)?;
    if !archived.status.success() {
        let message = String::from_utf8_lossy(&archived.stderr).trim().to_owned();
        return Err(Outcome::Failed(FailureReason::Internal {
            message: format!("commit {sha} could not be checked out: {message}"),
        }));
    }
    if !extracted.status.success() {
        return Err(Outcome::Retry(format!("tar: {}", String::from_utf8_lossy(&extracted.stderr).trim())));
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
