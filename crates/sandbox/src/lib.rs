//! Runs untrusted app processes (and build commands) isolated on one Linux machine.
//!
//! A sandbox is a network namespace with a veth pair (the app at 10.201.x.2, the host at 10.201.x.1 of a /30),
//! a cgroup v1 group in the memory, pids and cpu hierarchies, and processes started as uid/gid 65534 by
//! `setpriv` + `bwrap` with their own user, pid, ipc and uts namespaces, no capabilities, a read-only system,
//! generated /etc files, a private size-limited /tmp and the app directory at /app. In root filesystem mode
//! ([`Sandbox::spawn_in_root`]) an image's exported root filesystem is `/` instead of the host's system
//! directories, with the same isolation otherwise.
//! An nftables table per platform instance lets the sandboxes' veths answer connections but not open any to the
//! host, to private networks or to each other.
//!
//! Everything is named from the instance tag (`dmcp-<instance>-<id>` namespaces and cgroups, `vh<instance>-<n>`
//! veths, table `inet dmcp_<instance>`, lease files under /run/deploy-mcp/net naming their instance), so parallel
//! instances never collide and [`Host::new`] can remove what a crashed run of the same instance left behind.
//!
//! Disk space is limited by [`Disk`]s: directories that are size-limited ext4 images, loop-mounted, which callers
//! make with [`Host::create_disk`] / [`Host::open_disk`] and pass as app directories, volumes or build directories.
//!
//! Needs root, `ip` (iproute2), `nft` (nftables), `bwrap` (bubblewrap >= 0.8), `setpriv` (util-linux), `find` and
//! `chown` (findutils, coreutils; root filesystem mode), `mkfs.ext4`, `e2fsck`, `resize2fs` (e2fsprogs) and `mount`
//! with loop devices (disks), and the cgroup v1 memory, pids and cpu controllers. It never changes sysctls: outbound
//! traffic from sandboxes leaves the machine only if the operator enabled forwarding (net.ipv4.ip_forward=1), and
//! never from a [`Network::Sealed`] sandbox, which reaches only the host ports opened for its own veth (the builds'
//! egress proxy).

mod cgroup;
mod chown;
mod disk;
pub mod image_build;
mod names;
mod net;
mod process;
mod rootfs;
mod tools;

use std::ffi::OsString;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use disk::{Disk, MAX_DISK_MB, MIN_DISK_MB, Usage};
pub use net::{BLOCKED_V4, BLOCKED_V6};
pub use process::{ExitStatus, LogLine, MAX_LINE, Process, Stream, read_lines};

use cgroup::{Cgroup, Hierarchies, Limits};
use names::Leases;
use tools::Tools;

/// The uid and gid every sandboxed process runs as (nobody/nogroup).
pub const APP_UID: u32 = 65534;
const PATH_INSIDE: &str = "/usr/local/bin:/usr/bin:/bin";
/// The launcher joins the cgroups (its arguments up to `--`) before anything of the sandbox exists, then runs (not
/// execs) the rest: bwrap's --die-with-parent then ties the sandbox to this shell, not to whichever Tokio thread
/// forked it (a parent-death signal follows the forking thread, and blocking-pool threads come and go).
const LAUNCHER: &str = "while [ \"$1\" != -- ]; do echo $$ > \"$1\" || exit 125; shift; done; shift; \"$@\"; exit $?";

/// Appends each argument, converted to an OsString, to a Vec<OsString>.
macro_rules! push {
    ($args:expr; $($arg:expr),* $(,)?) => {{ $( $args.push(OsString::from($arg)); )* }};
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller passed something unusable; nothing was created.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("sandbox {0:?} already exists in this instance; destroy it first or pick another id")]
    Exists(String),
    #[error("this Host was torn down; make a new one")]
    TornDown,
    #[error("no free /30 left in 10.201.0.0/16 (16384 sandboxes on this machine); destroy some sandboxes")]
    AddressesExhausted,
    /// The machine lacks something the sandbox needs; the message says what and how to get it.
    #[error("this machine cannot run sandboxes: {0}")]
    Unsupported(String),
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("{0}")]
    Stuck(String),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

impl Error {
    fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }
}

#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Short instance tag, [a-z0-9]{1,6}: names every namespace, veth, cgroup, nft table of this platform
    /// instance so parallel instances (test runs) never collide and leftovers of a crashed run can be removed.
    pub instance: String,
    /// Directory for the small /etc files (hosts, passwd, group, resolv.conf, nsswitch.conf) bound into
    /// sandboxes. Created if missing; it and its parents must be searchable by uid 65534, since bwrap opens the
    /// files as that user.
    pub state_dir: PathBuf,
}

/// The sandboxes of one platform instance on this machine.
#[derive(Debug, Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

#[derive(Debug)]
struct HostInner {
    config: HostConfig,
    tools: Tools,
    cgroups: Hierarchies,
    leases: Leases,
    /// Set by `teardown`: the firewall is gone, so no sandbox may be created any more.
    torn_down: AtomicBool,
}

/// What a sandbox gets.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Unique within the instance, [a-z0-9]{1,12} (the caller passes e.g. the tail of a deployment ULID, lowercased).
    pub id: String,
    /// Host directory bound read-write at /app (chowned to 65534:65534 by `create`, never through a symlink). It
    /// and its parents must be searchable by uid 65534 (bwrap opens it as that user). A [`Disk`]'s mount point
    /// limits its size.
    pub app_dir: PathBuf,
    /// memory.limit_in_bytes, and memory.memsw.limit_in_bytes where swap accounting exists. /tmp counts against it.
    pub memory_mb: u32,
    /// cpu.cfs_quota_us = cpu_millis * 100 with a period of 100 ms (1000 = one core); 0 = unlimited.
    pub cpu_millis: u32,
    /// pids.max. Each running command also costs 3 pids of its own (launcher shell and two bwrap processes).
    pub pids_max: u32,
    /// Size of the private tmpfs /tmp.
    pub tmp_mb: u32,
    /// Host directories bound read-write at absolute paths under `/data` (persistent data such as a
    /// SQLite database that outlives deployments); chowned to 65534 like `app_dir`, safely also while another
    /// sandbox using the same volume renames its entries.
    pub volumes: Vec<Volume>,
    /// Further host directories under `/opt` or `/cache` (toolchains read-only, package caches writable). Never
    /// chowned: whoever prepares them decides their ownership.
    pub binds: Vec<Bind>,
    pub network: Network,
}

/// What a sandbox reaches beyond its own veth. Never the host's services, private ranges or other sandboxes,
/// whichever is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// Public destinations through the host, masqueraded, where the operator lets the host forward
    /// (net.ipv4.ip_forward); the sandbox crate never changes that sysctl.
    #[default]
    Forward,
    /// Nothing is forwarded: the sandbox reaches only host ports opened for it ([`Sandbox::open_host_port`]),
    /// e.g. an egress proxy that decides what may leave.
    Sealed,
}

/// A host directory the sandbox sees at `guest` (absolute, under `/opt` or `/cache`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    pub guest: String,
    pub writable: bool,
}

/// A host directory the app sees at `guest` (an absolute path under `/data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub host: PathBuf,
    pub guest: String,
}

impl Host {
    /// Checks the tools (ip, nft, bwrap, setpriv, mkfs.ext4, e2fsck, resize2fs, mount) and cgroup v1 controllers
    /// (memory, pids, cpu) with a clear error naming what is missing and how to install it; removes leftovers of
    /// this instance (namespaces, veths, cgroups, address leases, mounted disks); installs this instance's firewall
    /// table.
    pub async fn new(config: HostConfig) -> Result<Host> {
        names::validate_instance(&config.instance)?;
        tools::check_root()?;
        let tools = Tools::find().await?;
        let cgroups = Hierarchies::detect()?;
        write_etc_files(&config.state_dir)?;
        let leases = Leases::open(names::LEASE_DIR, std::process::id())?;
        let inner = HostInner { config, tools, cgroups, leases, torn_down: AtomicBool::new(false) };
        inner.remove_leftovers().await?;
        net::install_firewall(&inner.tools, &inner.config.instance).await?;
        Ok(Host { inner: Arc::new(inner) })
    }

    pub fn instance(&self) -> &str {
        &self.inner.config.instance
    }

    /// Makes the sandbox's namespace, veth and cgroups and chowns its app directory; no process runs yet.
    pub async fn create(&self, spec: Spec) -> Result<Sandbox> {
        let inner = &self.inner;
        if inner.torn_down.load(Ordering::SeqCst) {
            return Err(Error::TornDown);
        }
        validate_spec(&spec)?;
        let instance = &inner.config.instance;
        let name = names::sandbox_name(instance, &spec.id);
        if net::netns_exists(&name) || inner.cgroups.group(&name).exists() {
            return Err(Error::Exists(spec.id));
        }
        let index = inner.leases.acquire(instance, &spec.id)?;
        let (host_address, address) = names::addresses(index);
        let sandbox = Sandbox {
            host: self.clone(),
            veth: names::veth_name(instance, index),
            cgroup: inner.cgroups.group(&name),
            hosts_file: hosts_file(&inner.config, &spec.id),
            opened: Arc::default(),
            netns: name,
            index,
            host_address,
            address,
            spec,
        };
        match sandbox.build().await {
            Ok(()) => Ok(sandbox),
            Err(e) => {
                if matches!(e, Error::Exists(_)) {
                    // Another create of this id owns the cgroup and namespace: only the lease is ours.
                    let _ = inner.leases.release(index);
                } else if let Err(cleanup) = sandbox.remove(Duration::ZERO).await {
                    tracing::warn!(error = %cleanup, "removing a half-created sandbox failed");
                }
                Err(e)
            }
        }
    }

    /// Removes everything of this instance (used at shutdown and by tests): kills every process of its
    /// sandboxes, deletes namespaces, veths, cgroups, leases, generated files and the firewall table, and unmounts
    /// its disks (keeping their images).
    /// The Host refuses to create sandboxes afterwards.
    pub async fn teardown(&self) -> Result<()> {
        self.inner.torn_down.store(true, Ordering::SeqCst);
        self.inner.remove_leftovers().await?;
        net::remove_firewall(&self.inner.tools, &self.inner.config.instance).await
    }

    /// `nft list table inet dmcp_<instance>`: the rules keeping this instance's sandboxes in.
    pub async fn firewall_rules(&self) -> Result<String> {
        net::list_firewall(&self.inner.tools, &self.inner.config.instance).await
    }
}

impl HostInner {
    /// Everything named after this instance, whoever made it (this process earlier, or a crashed one), and
    /// leases of other instances that crashed long ago.
    async fn remove_leftovers(&self) -> Result<()> {
        let instance = &self.config.instance;
        let groups = self.cgroups.groups_with_prefix(&names::prefix(instance))?;
        for group in &groups {
            group.kill(Duration::ZERO).await?;
        }
        let netns = names::names_with_prefix(Path::new(net::NETNS_DIR), &names::prefix(instance))?;
        let veths = names::names_with_prefix(Path::new("/sys/class/net"), &names::veth_prefix(instance))?;
        net::remove(&self.tools, &netns, &veths).await?;
        for group in &groups {
            group.remove().await?;
        }
        // After the processes are gone, so no disk is busy.
        disk::remove_leftovers(&self.config).await?;
        for lease in self.leases.list()? {
            let stale = || {
                self.leases.is_old(lease.index)
                    && !net::netns_exists(&names::sandbox_name(&lease.instance, &lease.id))
                    && !net::link_exists(&names::veth_name(&lease.instance, lease.index))
            };
            if lease.instance == *instance || stale() {
                self.leases.release(lease.index)?;
            }
        }
        let hosts_prefix = format!("hosts-{instance}-");
        for file in names::names_with_prefix(&self.config.state_dir, &hosts_prefix)? {
            names::remove_if_present(&self.config.state_dir.join(file))?;
        }
        Ok(())
    }
}

fn validate_env(env: &[(String, String)]) -> Result<()> {
    for (key, value) in env {
        if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
            return Err(Error::Invalid { what: "env", reason: format!("{key:?} is not a valid variable name") });
        }
    }
    Ok(())
}

fn validate_spec(spec: &Spec) -> Result<()> {
    names::validate_id(&spec.id)?;
    let invalid = |what, reason: &str| Err(Error::Invalid { what, reason: reason.to_owned() });
    if spec.memory_mb < 16 {
        return invalid("memory_mb", "must be at least 16 (bwrap and a shell need a few MB)");
    }
    if spec.pids_max < 8 {
        return invalid("pids_max", "must be at least 8 (each command costs 3 pids of launcher and bwrap)");
    }
    if spec.tmp_mb == 0 {
        return invalid("tmp_mb", "must be at least 1 (a tmpfs of size 0 would be unlimited)");
    }
    if !spec.app_dir.is_absolute() || !spec.app_dir.is_dir() {
        return invalid(
            "app_dir",
            &format!("{} must be an existing directory, by absolute path", spec.app_dir.display()),
        );
    }
    for v in &spec.volumes {
        if !guest_path_under(&v.guest, &["/data"]) {
            return invalid("volumes", &format!("`{}` must be an absolute path under /data", v.guest));
        }
        if !v.host.is_absolute() || !v.host.is_dir() {
            return invalid(
                "volumes",
                &format!("{} must be an existing directory, by absolute path", v.host.display()),
            );
        }
        // The directory itself is chowned to the app at create; the way to it must let it through.
        if let Some(parent) = v.host.parent() {
            reachable_by_app_user(parent, "volumes")?;
        }
    }
    for b in &spec.binds {
        if b.guest != "/cache" && !guest_path_under(&b.guest, &["/opt", "/cache"]) {
            return invalid("binds", &format!("`{}` must be an absolute path under /opt or /cache", b.guest));
        }
        if !b.host.is_absolute() || !b.host.is_dir() {
            return invalid("binds", &format!("{} must be an existing directory, by absolute path", b.host.display()));
        }
        reachable_by_app_user(&b.host, "binds")?;
    }
    reachable_by_app_user(&spec.app_dir, "app_dir")
}

/// An absolute path strictly below one of `roots`, of plain components (no `.`, `..` or empty ones) and plain
/// characters, so that bwrap's mount points cannot land anywhere else.
fn guest_path_under(path: &str, roots: &[&str]) -> bool {
    let plain = path.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'@' | b'+'));
    let components =
        path.strip_prefix('/').is_some_and(|p| p.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
    plain
        && components
        && roots.iter().any(|root| path.strip_prefix(root).is_some_and(|rest| rest.len() > 1 && rest.starts_with('/')))
}

/// bwrap opens bind sources as uid 65534: every directory on the way must let that user through.
fn reachable_by_app_user(path: &Path, what: &'static str) -> Result<()> {
    for dir in path.ancestors() {
        let meta = fs::metadata(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let mode = meta.mode();
        let searchable = mode & 0o001 != 0
            || (meta.uid() == APP_UID && mode & 0o100 != 0)
            || (meta.gid() == APP_UID && mode & 0o010 != 0);
        if !searchable {
            return Err(Error::Invalid {
                what,
                reason: format!(
                    "{} is not searchable by uid {APP_UID} (mode {:o}), so bwrap cannot reach {}; \
                     chmod o+x it or use a directory elsewhere",
                    dir.display(),
                    mode & 0o7777,
                    path.display()
                ),
            });
        }
    }
    Ok(())
}

/// A sandbox: namespace, veth, cgroups, address. Clones share the same sandbox. Dropping it destroys nothing
/// (there is no async drop): call [`Sandbox::destroy`], or [`Host::teardown`] / the next [`Host::new`] of the
/// instance removes it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    host: Host,
    spec: Spec,
    /// Name of the network namespace and of the cgroups.
    netns: String,
    veth: String,
    /// The /30 leased under /run/deploy-mcp/net.
    index: u32,
    host_address: Ipv4Addr,
    address: Ipv4Addr,
    cgroup: Cgroup,
    hosts_file: PathBuf,
    /// Host ports opened for this sandbox, closed again when it is removed.
    opened: Arc<std::sync::Mutex<Vec<u16>>>,
}

impl Sandbox {
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// The app's IPv4 address inside its namespace; the host (router, health checks) reaches it there.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The host's end of the sandbox's veth (the app's default gateway). Apps cannot connect to it.
    pub fn host_address(&self) -> Ipv4Addr {
        self.host_address
    }

    /// Lets the sandbox open TCP connections to `host_address():port`, and nothing else of the host: for a
    /// listener the platform runs for this sandbox alone (an egress proxy). Closed when the sandbox is removed.
    pub async fn open_host_port(&self, port: u16) -> Result<()> {
        let host = &self.host.inner;
        net::open_host_port(&host.tools, &host.config.instance, &self.veth, self.host_address, port).await?;
        self.opened.lock().expect("not poisoned").push(port);
        Ok(())
    }

    /// The network namespace, for `ip netns exec <name> ...` (diagnostics, tests).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The host-side veth.
    pub fn veth(&self) -> &str {
        &self.veth
    }

    /// The cgroup directories (one per hierarchy), all named `dmcp-<instance>-<id>`.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        self.cgroup.procs_files().into_iter().filter_map(|f| f.parent().map(Path::to_path_buf)).collect()
    }

    /// Processes (host pids) in the sandbox's cgroups: launchers, bwrap and the app's.
    pub fn pids(&self) -> Vec<u32> {
        self.cgroup.pids()
    }

    async fn build(&self) -> Result<()> {
        let host = &self.host.inner;
        // The cgroup comes first: its mkdir is what claims the id against a concurrent create of the same one.
        self.cgroup.create(
            Limits { memory_mb: self.spec.memory_mb, cpu_millis: self.spec.cpu_millis, pids_max: self.spec.pids_max },
            &self.spec.id,
        )?;
        if self.spec.network == Network::Sealed {
            // Sealed before the veth exists, so not one packet of it is ever forwarded.
            net::seal(&host.tools, &host.config.instance, &self.veth).await?;
        }
        net::add(&host.tools, &self.netns, &self.veth, self.host_address, self.address).await?;
        write_file(
            &self.hosts_file,
            &format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n",
                self.address, self.spec.id
            ),
        )?;
        // Volumes may be in use by a running sandbox meanwhile (another deployment of the service): the walk
        // never follows a symlink, whatever that sandbox renames (see chown.rs).
        let dirs: Vec<(PathBuf, &'static str)> = std::iter::once((self.spec.app_dir.clone(), "app_dir"))
            .chain(self.spec.volumes.iter().map(|v| (v.host.clone(), "volumes")))
            .collect();
        tokio::task::spawn_blocking(move || {
            dirs.iter().try_for_each(|(dir, what)| chown::chown_tree(dir, APP_UID, APP_UID, what))
        })
        .await
        .map_err(|e| Error::io("chowning the app directory", io::Error::other(e)))?
    }

    /// Starts `/bin/sh -c <command>` inside the sandbox (cwd /app, HOME=/app, PATH=/usr/local/bin:/usr/bin:/bin,
    /// LANG=C.UTF-8, plus `env`; the host environment never leaks), as uid/gid 65534, in the sandbox's netns and
    /// cgroups. Must be called within a Tokio runtime. Several commands may run at once in one sandbox.
    pub fn spawn(&self, command: &str, env: &[(String, String)]) -> Result<Process> {
        validate_env(env)?;
        self.launch(LAUNCHER, Vec::new(), self.command_line(command, env))
    }

    /// Runs `argv` (no shell; argv[0] is looked up in PATH inside) with `rootfs`, a directory holding an image's
    /// exported root filesystem, as `/`, read-write for the app, instead of the host's system directories (which
    /// are not visible at all). Symlinks in the image resolve inside it. `cwd` is the image's working directory
    /// in that root ("/" if empty, relative ones are taken from "/").
    ///
    /// Isolation as for [`Sandbox::spawn`]: the sandbox's netns and cgroups, uid/gid 65534, no capabilities, a new
    /// session, PID/IPC/UTS namespaces, no nested user namespaces, a fresh /proc, a minimal /dev, a private tmpfs
    /// /tmp of `tmp_mb`, a cleared environment plus `env` (PATH defaults to
    /// /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin and HOME to /, as Docker's do), and the
    /// generated /etc/hosts, resolv.conf, passwd, group and nsswitch.conf bound over the image's.
    ///
    /// Ownership, on the host: the rootfs becomes uid/gid 65534's (changed by the launcher before the command
    /// starts, never following symlinks), except the directory itself, its /etc, /tmp, /proc and /dev and the
    /// generated files' mount points, which become root's with group 65534: the app writes in / and /etc (mode
    /// 1775) but cannot swap those entries for symlinks that bwrap would follow when it mounts over them.
    /// If that ownership change fails the command exits with 125 and the reason on stderr.
    pub fn spawn_in_root(
        &self,
        rootfs: &Path,
        argv: &[String],
        cwd: &str,
        env: &[(String, String)],
    ) -> Result<Process> {
        validate_env(env)?;
        let cwd = rootfs::validate(rootfs, argv, cwd)?;
        rootfs::prepare(rootfs)?;
        self.launch(&rootfs::launcher(), vec![rootfs.into()], self.root_command_line(rootfs, argv, &cwd, env))
    }

    /// Starts `/bin/sh -c <script> dmcp-launch <cgroup.procs files> -- <before> <command>`.
    fn launch(&self, script: &str, before: Vec<OsString>, command: Vec<OsString>) -> Result<Process> {
        let mut args: Vec<OsString> = vec!["-c".into(), script.into(), "dmcp-launch".into()];
        args.extend(self.cgroup.procs_files().into_iter().map(OsString::from));
        args.push("--".into());
        args.extend(before);
        args.extend(command);
        let child = tokio::process::Command::new("/bin/sh")
            .args(args)
            .env_clear()
            .env("PATH", tools::HOST_PATH)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C meant for the platform does not hit the apps.
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io("starting the sandbox launcher /bin/sh", e))?;
        Ok(Process::new(child))
    }

    /// `ip netns exec <ns> setpriv ... bwrap ... /bin/sh -c <command>`.
    fn command_line(&self, command: &str, env: &[(String, String)]) -> Vec<OsString> {
        let mut args = self.isolation();
        push!(args; "--ro-bind", "/usr", "/usr");
        // Merged-/usr systems have these as symlinks into /usr; older ones as directories.
        for dir in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
            match fs::read_link(dir) {
                Ok(target) => push!(args; "--symlink", &target, dir),
                Err(_) if Path::new(dir).is_dir() => push!(args; "--ro-bind", dir, dir),
                Err(_) => {}
            }
        }
        // Optional host files: alternatives for tools, CA certificates for outbound TLS, the linker cache for
        // libraries outside the default paths, the time zone.
        for file in ["/etc/alternatives", "/etc/ssl/certs", "/etc/ld.so.cache", "/etc/localtime"] {
            push!(args; "--ro-bind-try", file, file);
        }
        self.generated_mounts(&mut args);
        push!(args; "--bind", &self.spec.app_dir, "/app");
        for v in &self.spec.volumes {
            push!(args; "--bind", &v.host, &v.guest);
        }
        self.extra_binds(&mut args);
        // bwrap's root is a tmpfs owned by the app user: without this, it could write anywhere outside the mounts.
        push!(args; "--remount-ro", "/");
        push!(args; "--clearenv", "--setenv", "PATH", PATH_INSIDE, "--setenv", "HOME", "/app");
        push!(args; "--setenv", "LANG", "C.UTF-8");
        for (key, value) in env {
            push!(args; "--setenv", key, value);
        }
        push!(args; "--chdir", "/app", "/bin/sh", "-c", command);
        args
    }

    /// `ip netns exec <ns> setpriv ... bwrap --bind <rootfs> / ... -- <argv>`.
    fn root_command_line(&self, rootfs: &Path, argv: &[String], cwd: &str, env: &[(String, String)]) -> Vec<OsString> {
        let mut args = self.isolation();
        // bwrap mounts the rest inside this root, so the image's symlinks resolve in it, never on the host.
        push!(args; "--bind", rootfs, "/");
        self.generated_mounts(&mut args);
        for v in &self.spec.volumes {
            push!(args; "--bind", &v.host, &v.guest);
        }
        self.extra_binds(&mut args);
        // Later --setenv of the same name win: the caller's env overrides these defaults.
        push!(args; "--clearenv", "--setenv", "PATH", rootfs::DEFAULT_PATH, "--setenv", "HOME", "/");
        for (key, value) in env {
            push!(args; "--setenv", key, value);
        }
        // `--`: an image's command starting with `--` must not become options of bwrap (`--bind / /host`).
        push!(args; "--chdir", cwd, "--");
        args.extend(argv.iter().map(OsString::from));
        args
    }

    /// `ip netns exec <ns> setpriv ... bwrap <namespaces, user, capabilities>`: what every command runs under.
    fn isolation(&self) -> Vec<OsString> {
        let host = &self.host.inner;
        let mut args: Vec<OsString> = Vec::with_capacity(96);
        push!(args; &host.tools.ip, "netns", "exec", &self.netns, &host.tools.setpriv);
        // Dropping to 65534 before bwrap makes the host see uid 65534; bwrap run as root with --uid would only
        // map root to 65534 inside a user namespace.
        push!(args; "--reuid=65534", "--regid=65534", "--clear-groups", &host.tools.bwrap);
        push!(args; "--unshare-user", "--disable-userns", "--uid", "65534", "--gid", "65534");
        push!(args; "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try");
        push!(args; "--hostname", &self.spec.id);
        push!(args; "--die-with-parent", "--new-session", "--cap-drop", "ALL");
        args
    }

    fn extra_binds(&self, args: &mut Vec<OsString>) {
        for b in &self.spec.binds {
            push!(args; if b.writable { "--bind" } else { "--ro-bind" }, &b.host, &b.guest);
        }
    }

    /// The generated /etc files, the private /tmp, a fresh /proc and a minimal /dev.
    fn generated_mounts(&self, args: &mut Vec<OsString>) {
        let state = &self.host.inner.config.state_dir;
        push!(args; "--ro-bind", &self.hosts_file, "/etc/hosts");
        for file in ETC_FILES {
            push!(args; "--ro-bind", state.join(file), format!("/etc/{file}"));
        }
        push!(args; "--size", (u64::from(self.spec.tmp_mb) << 20).to_string(), "--tmpfs", "/tmp");
        push!(args; "--proc", "/proc", "--dev", "/dev");
    }

    /// How many processes the kernel OOM-killed in this sandbox so far (memory.oom_control's oom_kill).
    pub fn oom_kills(&self) -> u64 {
        self.cgroup.oom_kills()
    }

    /// TCP ports in LISTEN state inside the namespace (IPv4 and IPv6, any address, sorted), read from
    /// /proc/<pid>/net/tcp{,6} of a process in the namespace; empty when none runs.
    pub async fn listening_ports(&self) -> Vec<u16> {
        let Ok(netns) = fs::metadata(Path::new(net::NETNS_DIR).join(&self.netns)) else { return Vec::new() };
        // The launcher shell stays in the host's namespace; pick a process that entered the sandbox's.
        let inside = self.cgroup.pids().into_iter().find(|pid| {
            fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == netns.ino() && m.dev() == netns.dev())
        });
        let Some(pid) = inside else { return Vec::new() };
        let mut ports: Vec<u16> = ["tcp", "tcp6"]
            .iter()
            .filter_map(|file| fs::read_to_string(format!("/proc/{pid}/net/{file}")).ok())
            .flat_map(|table| parse_listening(&table))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Kills every process of the sandbox (SIGTERM to the app's processes, then SIGKILL to all after `grace`,
    /// via the cgroups' procs), deletes the namespace, veth, cgroups and the address lease. Idempotent.
    pub async fn destroy(self, grace: Duration) -> Result<()> {
        self.remove(grace).await
    }

    async fn remove(&self, grace: Duration) -> Result<()> {
        let host = &self.host.inner;
        self.cgroup.kill(grace).await?;
        // Before the veth goes: its name and address come back with the lease, and must come back clean.
        let opened = self.opened.lock().expect("not poisoned").clone();
        net::forget(&host.tools, &host.config.instance, &self.veth, self.host_address, &opened).await?;
        net::remove(&host.tools, std::slice::from_ref(&self.netns), std::slice::from_ref(&self.veth)).await?;
        self.cgroup.remove().await?;
        names::remove_if_present(&self.hosts_file)?;
        // Last: only now is the subnet free for someone else.
        host.leases.release(self.index)
    }
}

/// Ports of the LISTEN (0A) rows of a /proc/net/tcp or tcp6 table.
fn parse_listening(table: &str) -> Vec<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let mut cols = row.split_whitespace();
            let local = cols.nth(1)?;
            let state = cols.nth(1)?;
            let port = local.rsplit(':').next()?;
            (state == "0A").then(|| u16::from_str_radix(port, 16).ok()).flatten()
        })
        .collect()
}

/// Generated /etc files shared by every sandbox (the per-sandbox hosts file comes on top).
const ETC_FILES: [&str; 4] = ["passwd", "group", "nsswitch.conf", "resolv.conf"];

fn hosts_file(config: &HostConfig, id: &str) -> PathBuf {
    config.state_dir.join(format!("hosts-{}-{id}", config.instance))
}

fn write_etc_files(state_dir: &Path) -> Result<()> {
    if !state_dir.is_absolute() {
        return Err(Error::Invalid { what: "state_dir", reason: format!("{} is not absolute", state_dir.display()) });
    }
    if !state_dir.exists() {
        fs::create_dir_all(state_dir).map_err(|e| Error::io(format!("creating {}", state_dir.display()), e))?;
        fs::set_permissions(state_dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io(format!("chmod {}", state_dir.display()), e))?;
    }
    reachable_by_app_user(state_dir, "state_dir")?;
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let files = [
        ("passwd", "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:app:/app:/bin/sh\n".to_owned()),
        ("group", "root:x:0:\nnogroup:x:65534:\n".to_owned()),
        // Without nsswitch.conf glibc asks DNS before /etc/hosts, even for localhost.
        ("nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n".to_owned()),
        ("resolv.conf", resolv_conf(&host_resolv)),
    ];
    for (name, content) in files {
        write_file(&state_dir.join(name), &content)?;
    }
    Ok(())
}

/// The host's public nameservers; private or loopback ones are out of a sandbox's reach (the firewall rejects
/// them, and loopback is the sandbox's own), so public resolvers stand in for them.
fn resolv_conf(host_resolv: &str) -> String {
    let public: Vec<IpAddr> = host_resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .filter(|ip| !is_private(ip))
        .collect();
    let servers = if public.is_empty() { vec![IpAddr::from([1, 1, 1, 1]), IpAddr::from([8, 8, 8, 8])] } else { public };
    servers.iter().map(|ip| format!("nameserver {ip}\n")).collect()
}

/// The destinations the firewall rejects (see net.rs), plus unspecified.
fn is_private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (a == 100 && b & 0xc0 == 64)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || v6.is_unspecified() || first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
        }
    }
}

/// Written whole under a temporary name and renamed: concurrent instances sharing a state dir, and sandboxes
/// starting meanwhile, never see half a file.
fn write_file(path: &Path, content: &str) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, content)
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)))
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_ports_come_from_listen_rows_only() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                   \x20  0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 65534 0 1 1\n\
                   \x20  1: 0100007F:0BB8 0100007F:D431 01 00000000:00000000 00:00000000 00000000 65534 0 2 1\n";
        assert_eq!(parse_listening(tcp), [8080]);
        let tcp6 = "  sl  local_address remote_address st\n\
                    \x20  0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 0\n";
        assert_eq!(parse_listening(tcp6), [3000]);
    }

    #[test]
    fn sandboxes_get_only_public_nameservers() {
        assert_eq!(resolv_conf("nameserver 10.255.255.53\n"), "nameserver 1.1.1.1\nnameserver 8.8.8.8\n");
        assert_eq!(resolv_conf("nameserver 127.0.0.53\nsearch x\n"), "nameserver 1.1.1.1\nnameserver 8.8.8.8\n");
        assert_eq!(resolv_conf("nameserver 9.9.9.9\nnameserver 100.100.100.100\n"), "nameserver 9.9.9.9\n");
        assert_eq!(resolv_conf("nameserver fd00::1\nnameserver 2606:4700::1111\n"), "nameserver 2606:4700::1111\n");
    }
}
