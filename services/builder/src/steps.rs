//! The steps of a plan build: each in a fresh sealed sandbox over the work directory, whose only
//! way out is an egress proxy listening for that sandbox alone on its host-side address.
//!
//! What the proxy lets through or refuses goes to the build log; a step that fails after a
//! refusal fails as `egress_refused` naming the destination, an install as
//! `dependency_install_failed` naming the package manager and its first error line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bus::LogSink;
use events::FailureReason;
use tokio::net::TcpListener;

use crate::build::{Outcome, retry};
use crate::environment::{self, StepContext, ToolchainEnv};
use crate::plan::Plan;
use crate::{Config, diagnose};

/// What a step is, for the log and for how its failure is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Installing a package-manager CLI (pnpm, yarn, uv, …) into the owner's cache.
    Tool,
    Install,
    Build,
    Prune,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Install => "install",
            Kind::Build => "build",
            Kind::Prune => "prune",
        }
    }
}

/// Everything the steps of one build share.
pub(crate) struct Steps<'a> {
    pub config: &'a Config,
    pub id: String,
    pub work: PathBuf,
    pub plan: &'a Plan,
    pub toolchains: Vec<ToolchainEnv>,
    pub binds: Vec<sandbox::Bind>,
    pub tool_bins: Vec<String>,
    pub cargo_target: String,
    /// The build's disk and its size: a step that fails with it full failed on the size.
    pub disk: Option<(&'a crate::build::DiskGuard, u32)>,
}

impl Steps<'_> {
    /// The sandbox every step of this build runs in: sealed, the build's limits, its binds.
    pub(crate) fn sandbox_spec(&self) -> sandbox::Spec {
        sandbox::Spec {
            id: self.id.clone(),
            app_dir: self.work.clone(),
            memory_mb: self.config.build_memory_mb,
            cpu_millis: self.config.build_cpu_millis,
            pids_max: 1024,
            tmp_mb: 512,
            volumes: vec![],
            binds: self.binds.clone(),
            network: sandbox::Network::Sealed,
        }
    }

    /// Runs `command` in /app; `package_manager` names who is to blame for an install's failure.
    pub(crate) async fn run(
        &self,
        kind: Kind,
        command: &str,
        package_manager: Option<&str>,
        log: &mut LogSink,
    ) -> Result<(), Outcome> {
        log.platform(format!("{}: $ {command}", kind.as_str())).await;
        let sb = self.config.sandbox.create(self.sandbox_spec()).await.map_err(retry)?;
        let result = self.run_in(&sb, kind, command, package_manager, log).await;
        let _ = sb.destroy(Duration::from_secs(1)).await;
        result
    }

    async fn run_in(
        &self,
        sb: &sandbox::Sandbox,
        kind: Kind,
        command: &str,
        package_manager: Option<&str>,
        log: &mut LogSink,
    ) -> Result<(), Outcome> {
        let mut egress = self.egress(sb).await?;
        let cx = StepContext {
            proxy: Some(egress.addr),
            mirrors: &egress.mirrors,
            tool_bins: &self.tool_bins,
            cargo_target: self.cargo_target.clone(),
            ca_bundle: Path::new(environment::CA_BUNDLE).is_file(),
        };
        let env = environment::step_env(self.plan, &self.toolchains, &cx);
        let mut process = sb.spawn(command, &env).map_err(retry)?;
        let mut lines = process.lines();

        let mut first_error = None;
        let wait = async {
            loop {
                tokio::select! {
                    line = lines.recv() => match line {
                        Some(line) => {
                            if first_error.is_none() && diagnose::is_error_line(&line.text) {
                                first_error = diagnose::first_error([line.text.as_str()]);
                            }
                            log.line(line.stream.as_str(), line.text).await;
                        }
                        None => break,
                    },
                    Some(event) = egress.events.recv() => {
                        if let Some(text) = egress.log.note(&event) {
                            log.platform(text).await;
                        }
                    }
                }
            }
            egress.drain(log).await;
            process.wait().await
        };
        let status = match tokio::time::timeout(self.config.build_timeout, wait).await {
            Ok(status) => status.map_err(retry)?,
            Err(_) => return Err(too_long(self.config, command, log)),
        };
        if status.success() {
            return Ok(());
        }
        let mut tail = log.tail();
        if sb.oom_kills() > 0 {
            tail.push(format!("the build ran out of memory ({} MiB)", self.config.build_memory_mb));
        }
        let exit_code = match status {
            sandbox::ExitStatus::Code(c) => Some(c),
            sandbox::ExitStatus::Signal(_) => None,
        };
        if let Some((disk, limit_mb)) = self.disk
            && crate::build::DiskGuardExt::is_full(disk)
        {
            return Err(Outcome::Failed(FailureReason::DiskQuotaExceeded {
                disk: "build".into(),
                limit_mb,
                command: Some(command.to_owned()),
                log_tail: tail,
            }));
        }
        if let Some((host, reason)) = egress.log.refused.into_iter().next() {
            return Err(Outcome::Failed(FailureReason::EgressRefused {
                host,
                reason,
                command: command.to_owned(),
                log_tail: tail,
            }));
        }
        if let (Kind::Install | Kind::Tool, Some(pm)) = (kind, package_manager) {
            return Err(Outcome::Failed(FailureReason::DependencyInstallFailed {
                package_manager: pm.to_owned(),
                command: command.to_owned(),
                exit_code,
                first_error,
                log_tail: tail,
            }));
        }
        Err(Outcome::Failed(FailureReason::BuildFailed { command: command.to_owned(), exit_code, log_tail: tail }))
    }
}

impl Steps<'_> {
    /// Starts this sandbox's egress proxy: a listener on the sandbox's own gateway address,
    /// opened in the firewall for this sandbox's veth only.
    pub(crate) async fn egress(&self, sb: &sandbox::Sandbox) -> Result<Egress, Outcome> {
        let listener = TcpListener::bind((sb.host_address(), 0)).await.map_err(retry)?;
        let addr = listener.local_addr().map_err(retry)?;
        sb.open_host_port(addr.port()).await.map_err(retry)?;
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        let proxy = &self.config.egress;
        let mut serving = vec![proxy.serve(listener, sb.address().into(), events_tx.clone())];
        // Each mirror on a port of its own, at its root: indexes link files from their server's root.
        let mut mirrors = BTreeMap::new();
        for name in environment::MIRRORS.iter().filter(|name| proxy.policy().mirror(name).is_some()) {
            let listener = TcpListener::bind((sb.host_address(), 0)).await.map_err(retry)?;
            let at = listener.local_addr().map_err(retry)?;
            sb.open_host_port(at.port()).await.map_err(retry)?;
            if let (Some(s), Some(url)) = (
                proxy.serve_mirror(name, listener, sb.address().into(), events_tx.clone()),
                proxy.mirror_root_url(name, at),
            ) {
                serving.push(s);
                mirrors.insert((*name).to_owned(), url);
            }
        }
        Ok(Egress { _serving: serving, addr, mirrors, events, log: EgressLog::default() })
    }
}

/// A running egress proxy of one sandbox; dropping it stops the proxy.
pub(crate) struct Egress {
    _serving: Vec<egress::Serving>,
    pub addr: std::net::SocketAddr,
    /// Mirror name → the URL the sandbox reaches it at.
    pub mirrors: BTreeMap<String, String>,
    events: tokio::sync::mpsc::UnboundedReceiver<egress::Event>,
    log: EgressLog,
}

impl Egress {
    /// Writes what the proxy did so far to the build log.
    pub(crate) async fn drain(&mut self, log: &mut LogSink) {
        while let Ok(event) = self.events.try_recv() {
            if let Some(text) = self.log.note(&event) {
                log.platform(text).await;
            }
        }
    }

    /// The first destination the policy refused, `(host:port, why)`.
    pub(crate) fn first_refusal(&self) -> Option<&(String, String)> {
        self.log.refused.first()
    }
}

/// A build step stopped at the build timeout (dropping its process kills it).
pub(crate) fn too_long(config: &Config, command: &str, log: &LogSink) -> Outcome {
    let mut tail = log.tail();
    tail.push(format!("stopped after {} s: the build took too long", config.build_timeout.as_secs()));
    Outcome::Failed(FailureReason::BuildFailed { command: command.to_owned(), exit_code: None, log_tail: tail })
}

/// The proxy's events as build-log lines: each destination once, every refusal.
#[derive(Default)]
struct EgressLog {
    seen: BTreeSet<String>,
    /// Policy refusals of this step, in order: `(host:port, why)`.
    refused: Vec<(String, String)>,
}

impl EgressLog {
    fn note(&mut self, event: &egress::Event) -> Option<String> {
        match event {
            egress::Event::Refused { host, port, reason } => {
                let target = format!("{host}:{port}");
                if reason.is_policy() && !self.refused.iter().any(|(t, _)| *t == target) {
                    self.refused.push((target, reason.to_string()));
                }
                Some(format!("egress: {event}"))
            }
            egress::Event::Allowed { host, port, .. } | egress::Event::Unreachable { host, port, .. } => {
                let first = self.seen.insert(format!("{host}:{port}"));
                (first || matches!(event, egress::Event::Unreachable { .. })).then(|| format!("egress: {event}"))
            }
            _ => Some(format!("egress: {event}")),
        }
    }
}
