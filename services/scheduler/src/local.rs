//! The local driver: each deployment runs as a sandboxed process (its own network namespace,
//! bubblewrap, cgroup limits) on this machine; static sites are served by the router itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus::{Bus, LogSink};
use events::{FailureReason, ImageRun, LogKind};
use router::Upstream;
use sandbox::{ExitStatus, Sandbox};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::driver::{Driver, Launch, Report, Running, StartError};
use crate::health;

#[derive(Clone)]
pub struct LocalDriver {
    pub bus: Bus,
    pub sandbox: sandbox::Host,
    /// Where each deployment gets its writable copy of the build output.
    pub run_dir: PathBuf,
    pub health_timeout: Duration,
    /// The shared toolchain cache: a plan build's toolchains are bound from here, read-only, at
    /// the place its build saw them.
    pub toolchain_dir: PathBuf,
    /// What apps reach outside their sandbox.
    pub egress: AppEgress,
    /// Size of each deployment's disk (its `/app`), enforced by the kernel.
    pub disk_mb: u32,
    /// Size of each local volume's disk.
    pub volume_disk_mb: u32,
    /// The volumes mounted now, shared by the deployments using them.
    pub volumes: crate::volumes::Volumes,
}

/// Apps' outbound network (never the host's services, private ranges or other apps).
#[derive(Clone, Default)]
pub enum AppEgress {
    /// Public destinations through the host, where the operator lets the host forward.
    #[default]
    Direct,
    /// Only through an egress proxy with its own allowlist (`HTTP(S)_PROXY` set in the app).
    Proxy(egress::Proxy),
    /// Nothing at all.
    None,
}

impl std::fmt::Debug for LocalDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDriver").field("run_dir", &self.run_dir).finish_non_exhaustive()
    }
}

/// Back-off between restarts of a crashed app: 1 s, doubling, at most 30 s.
fn backoff(restarts: u32) -> Duration {
    Duration::from_secs(1u64 << restarts.min(5)).min(Duration::from_secs(30))
}

#[async_trait]
impl Driver for LocalDriver {
    async fn start(&self, launch: Launch, reports: mpsc::Sender<Report>) -> Result<Box<dyn Running>, StartError> {
        let dir = self.run_dir.join(launch.deployment_id.short());
        let unavailable = |e: &dyn std::fmt::Display| StartError::Unavailable(e.to_string());
        let command = match (&launch.manifest.image, &launch.manifest.start) {
            (Some(image), _) => Command::Image(image.clone()),
            (None, Some(start)) => Command::Shell(start.clone()),
            (None, None) => {
                // A static site: the router serves the (immutable) build output, opening every file beneath it.
                let root = launch.manifest.static_root.clone().unwrap_or_else(|| ".".to_owned());
                let upstream = Upstream::Static { dir: launch.artifact_dir.clone(), root: root.into() };
                return Ok(Box::new(Static(upstream)));
            }
        };
        // The deployment's disk: its copy of the build output and all it writes, within the app's size.
        let disk = self.disk(&dir).await.map_err(|e| unavailable(&e))?;
        if let Err(e) = self.volumes.acquire(&self.sandbox, &launch.volumes, self.volume_disk_mb).await {
            let _ = disk.delete().await;
            return Err(unavailable(&e));
        }
        let copied = match &command {
            // The image's filesystem is the app's root: a private copy per deployment, beside an
            // empty /app the sandbox requires.
            Command::Image(_) => {
                async {
                    copy_tree(&launch.artifact_dir.join("rootfs"), &dir.join("rootfs")).await?;
                    tokio::fs::create_dir(dir.join("app")).await?;
                    std::os::unix::fs::chown(dir.join("app"), Some(sandbox::APP_UID), Some(sandbox::APP_UID))
                }
                .await
            }
            Command::Shell(_) => copy_tree(&launch.artifact_dir, &dir).await,
        };
        if let Err(e) = copied {
            let full = disk.is_full();
            let _ = disk.delete().await;
            self.volumes.release(&launch.volumes).await;
            if full {
                return Err(StartError::Failed(FailureReason::DiskQuotaExceeded {
                    disk: "app".into(),
                    limit_mb: self.disk_mb,
                    command: None,
                    log_tail: vec![format!("the build output does not fit the app's disk: {e}")],
                }));
            }
            return Err(unavailable(&e));
        }
        let (first_tx, first_rx) = oneshot::channel();
        let stop = CancellationToken::new();
        let upstream = Arc::new(std::sync::Mutex::new(None));
        let supervisor = Supervisor {
            driver: self.clone(),
            launch,
            command,
            dir,
            disk: Mutex::new(Some(disk)),
            stop: stop.clone(),
            upstream: upstream.clone(),
            log: Arc::new(Mutex::new(None)),
        };
        let task = tokio::spawn(supervisor.run(first_tx, reports));
        match first_rx.await {
            Ok(Ok(())) => Ok(Box::new(Process { stop, task: Mutex::new(Some(task)), upstream })),
            Ok(Err(e)) => {
                let _ = task.await;
                Err(e)
            }
            Err(_) => Err(StartError::Unavailable("the deployment's supervisor stopped".into())),
        }
    }

    async fn clean_up(&self) {
        // Sandboxes of a crashed process are removed by `sandbox::Host::new`; their run
        // directories are removed here (a restored deployment gets a fresh copy).
        let _ = tokio::fs::remove_dir_all(&self.run_dir).await;
        let _ = tokio::fs::create_dir_all(&self.run_dir).await;
    }
}

struct Static(Upstream);

#[async_trait]
impl Running for Static {
    fn upstream(&self) -> Option<Upstream> {
        Some(self.0.clone())
    }
    async fn stop(self: Box<Self>) {}
}

struct Process {
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    upstream: Arc<std::sync::Mutex<Option<Upstream>>>,
}

#[async_trait]
impl Running for Process {
    fn upstream(&self) -> Option<Upstream> {
        self.upstream.lock().expect("not poisoned").clone()
    }

    async fn stop(self: Box<Self>) {
        self.stop.cancel();
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

/// Owns one deployment's process: starts it, watches it, restarts it after a crash.
struct Supervisor {
    driver: LocalDriver,
    launch: Launch,
    command: Command,
    dir: PathBuf,
    /// The disk mounted at `dir`, deleted with the deployment.
    disk: Mutex<Option<sandbox::Disk>>,
    stop: CancellationToken,
    upstream: Arc<std::sync::Mutex<Option<Upstream>>>,
    log: Arc<Mutex<Option<LogSink>>>,
}

/// What a deployment runs: a shell command over its build output at /app, or an image's
/// entrypoint with the image's filesystem as root.
#[derive(Debug, Clone)]
enum Command {
    Shell(String),
    Image(ImageRun),
}

impl Command {
    fn describe(&self) -> String {
        match self {
            Self::Shell(c) => c.clone(),
            Self::Image(i) => i.argv.join(" "),
        }
    }
}

enum Attempt {
    /// Running and answering; the app's egress proxy, if it has one, lives as long as it.
    Healthy(Box<(Sandbox, sandbox::Process, Option<egress::Serving>)>),
    Failed(FailureReason),
    Stopped,
}

impl Supervisor {
    async fn run(self, first: oneshot::Sender<Result<(), StartError>>, reports: mpsc::Sender<Report>) {
        let mut first = Some(first);
        let mut restarts = 0u32;
        let (service_id, deployment_id) = (self.launch.service_id, self.launch.deployment_id);
        *self.log.lock().await = Some(LogSink::new(self.driver.bus.clone(), deployment_id, LogKind::Run));
        loop {
            let attempt = match self.attempt().await {
                Ok(a) => a,
                Err(e) => {
                    if let Some(tx) = first.take() {
                        let _ = tx.send(Err(StartError::Unavailable(e)));
                        break;
                    }
                    tracing::warn!(%deployment_id, error = %e, "could not restart");
                    Attempt::Failed(FailureReason::Internal { message: "the sandbox could not be created".into() })
                }
            };
            let (sb, mut process, _proxy) = match attempt {
                Attempt::Stopped => break,
                Attempt::Healthy(started) => {
                    let (sb, process, proxy) = *started;
                    let upstream = Upstream::Http(SocketAddr::new(sb.address().into(), self.launch.port));
                    *self.upstream.lock().expect("not poisoned") = Some(upstream.clone());
                    match first.take() {
                        Some(tx) => {
                            if tx.send(Ok(())).is_err() {
                                // Nobody waits for this start any more (the scheduler stopped).
                                let _ = sb.destroy(Duration::ZERO).await;
                                break;
                            }
                        }
                        None => {
                            let _ = reports
                                .send(Report::Recovered { service_id, deployment_id, upstream: Some(upstream) })
                                .await;
                        }
                    }
                    (sb, process, proxy)
                }
                Attempt::Failed(reason) => {
                    if let Some(tx) = first.take() {
                        let _ = tx.send(Err(StartError::Failed(reason)));
                        break;
                    }
                    // A restart that fails is another crash: back off and try again.
                    restarts += 1;
                    if self.pause(restarts).await {
                        break;
                    }
                    continue;
                }
            };
            // Running: until it exits or is stopped.
            let oom_before = sb.oom_kills();
            tokio::select! {
                status = process.wait() => {
                    let exit_code = match status { Ok(ExitStatus::Code(c)) => Some(c), _ => None };
                    let out_of_memory = sb.oom_kills() > oom_before;
                    let cause = if out_of_memory {
                        ", out of memory".to_owned()
                    } else if self.disk_full().await {
                        format!(", its disk is full ({} MiB)", self.driver.disk_mb)
                    } else {
                        String::new()
                    };
                    self.note(format!("the app exited (code {exit_code:?}{cause}); restarting")).await;
                    let _ = sb.destroy(Duration::from_millis(200)).await;
                    let _ = reports.send(Report::Crashed { service_id, deployment_id, exit_code, out_of_memory }).await;
                    restarts += 1;
                    if self.pause(restarts).await {
                        break;
                    }
                }
                _ = self.stop.cancelled() => {
                    let _ = sb.destroy(Duration::from_secs(5)).await;
                    break;
                }
            }
        }
        if let Some(log) = self.log.lock().await.as_ref() {
            log.flush().await;
        }
        if let Some(disk) = self.disk.lock().await.take() {
            let _ = disk.delete().await;
        }
        self.driver.volumes.release(&self.launch.volumes).await;
    }

    /// Waits out the back-off; true when stopped meanwhile.
    async fn pause(&self, restarts: u32) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(backoff(restarts - 1)) => false,
            _ = self.stop.cancelled() => true,
        }
    }

    async fn note(&self, text: String) {
        if let Some(log) = self.log.lock().await.as_mut() {
            log.platform(text).await;
        }
    }

    /// One start in a fresh sandbox, up to healthy or a typed failure.
    async fn attempt(&self) -> Result<Attempt, String> {
        let l = &self.launch;
        let app_dir = match &self.command {
            Command::Shell(_) => self.dir.clone(),
            Command::Image(_) => self.dir.join("app"),
        };
        let spec = sandbox::Spec {
            id: l.deployment_id.short(),
            app_dir,
            memory_mb: l.memory_mb,
            cpu_millis: l.cpu_millis,
            pids_max: 256,
            tmp_mb: 64,
            volumes: self.launch.volumes.clone(),
            binds: toolchain_binds(&self.driver.toolchain_dir, &l.manifest.toolchains)?,
            network: match self.driver.egress {
                AppEgress::Direct => sandbox::Network::Forward,
                AppEgress::Proxy(_) | AppEgress::None => sandbox::Network::Sealed,
            },
        };
        let sb = self.driver.sandbox.create(spec).await.map_err(|e| e.to_string())?;
        let mut env = match &self.command {
            // The image's variables first: the service's override them.
            Command::Image(image) => image
                .env
                .iter()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            // The build's (PATH with the toolchains, VIRTUAL_ENV, ...) first, likewise.
            Command::Shell(_) => l.manifest.env.clone(),
        };
        let proxy = match &self.driver.egress {
            AppEgress::Proxy(proxy) => match self.app_proxy(&sb, proxy).await {
                Ok((serving, vars)) => {
                    env.extend(vars);
                    Some(serving)
                }
                Err(e) => {
                    let _ = sb.destroy(Duration::ZERO).await;
                    return Err(e);
                }
            },
            _ => None,
        };
        env.extend(l.env.iter().cloned());
        env.push(("PORT".into(), l.port.to_string()));
        self.note(format!("starting: $ {} (PORT={})", self.command.describe(), l.port)).await;
        let spawned = match &self.command {
            Command::Shell(command) => sb.spawn(command, &env),
            Command::Image(image) => sb.spawn_in_root(&self.dir.join("rootfs"), &image.argv, &image.working_dir, &env),
        };
        let mut process = match spawned {
            Ok(p) => p,
            Err(e) => {
                let _ = sb.destroy(Duration::ZERO).await;
                return Err(e.to_string());
            }
        };
        let mut lines = process.lines();
        let log = self.log.clone();
        tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                if let Some(log) = log.lock().await.as_mut() {
                    log.line(line.stream.as_str(), line.text).await;
                }
            }
        });
        let addr = SocketAddr::new(sb.address().into(), l.port);
        let oom_before = sb.oom_kills();
        let outcome = tokio::select! {
            healthy = health::wait_healthy(addr, &l.host, self.driver.health_timeout) => Ok(healthy),
            status = process.wait() => Err(status),
            _ = self.stop.cancelled() => {
                let _ = sb.destroy(Duration::ZERO).await;
                return Ok(Attempt::Stopped);
            }
        };
        let reason = match outcome {
            Ok(true) => return Ok(Attempt::Healthy(Box::new((sb, process, proxy)))),
            Ok(false) => {
                let listened: Vec<u16> = sb.listening_ports().await.into_iter().filter(|p| *p != l.port).collect();
                if listened.is_empty() {
                    FailureReason::HealthCheckTimedOut { seconds: self.driver.health_timeout.as_secs().max(1) as u32 }
                } else {
                    FailureReason::PortNotListened { expected: l.port, listened }
                }
            }
            Err(status) => {
                // Let the last lines of output reach the log before quoting it.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if sb.oom_kills() > oom_before {
                    FailureReason::OutOfMemory { limit_mb: l.memory_mb }
                } else {
                    let exit_code = match status {
                        Ok(ExitStatus::Code(c)) => Some(c),
                        _ => None,
                    };
                    let log_tail = self.log.lock().await.as_ref().map(|l| l.tail()).unwrap_or_default();
                    if self.disk_full().await {
                        FailureReason::DiskQuotaExceeded {
                            disk: "app".into(),
                            limit_mb: self.driver.disk_mb,
                            command: Some(self.command.describe()),
                            log_tail,
                        }
                    } else {
                        FailureReason::StartCommandExited { command: self.command.describe(), exit_code, log_tail }
                    }
                }
            }
        };
        self.note(format!("start failed: {reason:?}")).await;
        let _ = sb.destroy(Duration::ZERO).await;
        Ok(Attempt::Failed(reason))
    }
}

impl LocalDriver {
    /// A fresh disk mounted at `dir` (a leftover of a crashed run was unmounted by `Host::new`).
    async fn disk(&self, dir: &Path) -> Result<sandbox::Disk, sandbox::Error> {
        let image = dir.with_extension("img");
        let _ = tokio::fs::remove_file(&image).await;
        let _ = tokio::fs::remove_dir_all(dir).await;
        self.sandbox.create_disk(&image, dir, self.disk_mb).await
    }
}

impl Supervisor {
    /// Whether the deployment's disk is full (what a crash or failed start is then reported as).
    async fn disk_full(&self) -> bool {
        self.disk.lock().await.as_ref().is_some_and(sandbox::Disk::is_full)
    }

    /// An egress proxy for this app alone, on its gateway address; its what the app's HTTP
    /// clients are pointed at.
    async fn app_proxy(
        &self,
        sb: &Sandbox,
        proxy: &egress::Proxy,
    ) -> Result<(egress::Serving, Vec<(String, String)>), String> {
        let listener = tokio::net::TcpListener::bind((sb.host_address(), 0)).await.map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        sb.open_host_port(addr.port()).await.map_err(|e| e.to_string())?;
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let serving = proxy.serve(listener, sb.address().into(), events_tx);
        // Refusals go to the app's log, so its owner sees why a call failed.
        let log = self.log.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let egress::Event::Refused { .. } = event
                    && let Some(log) = log.lock().await.as_mut()
                {
                    log.platform(format!("egress: {event}")).await;
                }
            }
        });
        let url = format!("http://{addr}");
        let vars = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]
            .into_iter()
            .map(|k| (k.to_owned(), url.clone()))
            .chain(["NO_PROXY", "no_proxy"].into_iter().map(|k| (k.to_owned(), "localhost,127.0.0.1".to_owned())))
            .collect();
        Ok((serving, vars))
    }
}

/// The toolchains a plan build ran with, read-only where the build saw them.
fn toolchain_binds(root: &Path, toolchains: &[events::ToolchainMount]) -> Result<Vec<sandbox::Bind>, String> {
    let mut binds = Vec::new();
    for t in toolchains {
        let Some(key) = &t.key else { continue };
        if key.is_empty() || key.contains('/') || key.starts_with('.') {
            return Err(format!("the build names an odd toolchain directory {key:?}"));
        }
        let host = root.join(key);
        if !host.is_dir() {
            return Err(format!(
                "the {} {} toolchain this deployment was built with is no longer in the toolchain cache ({}): redeploy to build again",
                t.tool,
                t.version,
                host.display()
            ));
        }
        binds.push(sandbox::Bind { host, guest: t.guest_dir.clone(), writable: false });
    }
    Ok(binds)
}

impl std::fmt::Debug for AppEgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AppEgress::Direct => "Direct",
            AppEgress::Proxy(_) => "Proxy",
            AppEgress::None => "None",
        })
    }
}

/// Copies the build output to the deployment's own writable directory.
async fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    tokio::fs::create_dir_all(to).await?;
    let out = tokio::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .kill_on_drop(true)
        .output()
        .await?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!("cp: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}
