//! The builder service: turns requested deployments into runnable artifacts, and pushes into
//! deployments.
//!
//! Two durable consumers, both idempotent:
//! - `builder` (EVENTS, `service.*`): on `DeploymentRequested` it checks the commit out, picks a
//!   build plan ([`plan`]), provides the toolchains it asks for, runs install, build and prune in
//!   sealed sandboxes whose only way out is an egress proxy to package registries, and records
//!   `BuildSucceeded` or a typed `DeploymentFailed`. Output is content-addressed by commit SHA +
//!   plan, so the same commit is built once; an install whose inputs did not change is restored
//!   from the owner's dependency layers. A crash mid-build is redelivered and built again.
//! - `deployer` (INTENTS, `push.*`): a `PushReceived` deploys that commit on every service
//!   attached to the branch; the service aggregate drops a commit it has seen.

mod build;
mod cache;
mod deployer;
mod diagnose;
mod environment;
mod image;
mod layers;
mod output;
pub mod plan;
pub mod registry;
mod steps;
mod tools;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bus::Bus;
use store::Commands;
use tokio_util::sync::CancellationToken;

pub use build::{artifact_dir, manifest_path};

#[derive(Clone)]
pub struct Config {
    pub bus: Bus,
    pub commands: Arc<Commands>,
    /// The platform's data directory: repositories in `git/`, work in `builds/`, output in
    /// `artifacts/`.
    pub data_dir: PathBuf,
    /// Where builds run (searchable by the sandbox's uid): `<work_dir>/<deployment>`.
    pub work_dir: PathBuf,
    /// The `git` binary.
    pub git: PathBuf,
    pub sandbox: sandbox::Host,
    /// Longest an install or build command may run.
    pub build_timeout: Duration,
    /// Memory of a build's sandbox.
    pub build_memory_mb: u32,
    /// CPU of a build's sandbox (1000 = one core): builds never take every core from live apps.
    pub build_cpu_millis: u32,
    /// Size of a build's disk (checkout, dependencies, output), enforced by the kernel.
    pub build_disk_mb: u32,
    /// Builds running at once.
    pub concurrency: usize,
    /// Where images are pushed (for the cluster runtime), if anywhere: Dockerfile builds, and
    /// plan builds packaged onto `base_images`.
    pub registry: Option<registry::Registry>,
    /// Base image per provider (`static`, `python`, `node`, …) that plan builds are packaged on.
    pub base_images: std::collections::BTreeMap<String, String>,
    /// The builds' only way out: the package registries it allows and the mirrors it serves.
    pub egress: egress::Proxy,
    /// The shared toolchain cache and where missing toolchains come from.
    pub toolchains: toolchains::Toolchains,
    /// Per owner: package caches (bound into their builds) and dependency layers. Must be
    /// searchable by the sandbox user.
    pub cache_dir: PathBuf,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config").field("data_dir", &self.data_dir).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] bus::Error),
    #[error("builder: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs both consumers until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    config.bus.ping().await?;
    tokio::fs::create_dir_all(config.data_dir.join("artifacts")).await?;
    // Work dirs of builds that died with a previous process: their deployments are redelivered.
    let _ = tokio::fs::remove_dir_all(&config.work_dir).await;
    tokio::fs::create_dir_all(&config.work_dir).await?;
    let builder = tokio::spawn(build::consume(config.clone(), shutdown.clone()));
    let deployer = tokio::spawn(deployer::consume(config.clone(), shutdown.clone()));
    tracing::info!("builder ready");
    let (b, d) = tokio::join!(builder, deployer);
    for r in [b, d] {
        match r {
            Ok(r) => r?,
            Err(e) if e.is_cancelled() => {}
            Err(e) => return Err(std::io::Error::other(format!("builder task panicked: {e}")).into()),
        }
    }
    Ok(())
}
