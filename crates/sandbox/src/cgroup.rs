//! cgroup v1: one group per sandbox in each of the memory, pids and cpu hierarchies (and cpuacct when it is a
//! hierarchy of its own). The groups are also how a sandbox is killed: whatever its processes did (re-parented,
//! double-forked, new sessions), they cannot leave a group they have no write access to.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::{Instant, sleep};

use crate::Error;
use crate::names;

const ROOT: &str = "/sys/fs/cgroup";
/// How long killing and removing a group may take before it is reported as stuck.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(5);

/// The hierarchy roots this machine mounts for the controllers a sandbox uses.
#[derive(Debug)]
pub(crate) struct Hierarchies {
    memory: PathBuf,
    pids: PathBuf,
    cpu: PathBuf,
    /// Every distinct root, for joining, listing and removal (cpu and cpuacct are often one hierarchy).
    all: Vec<PathBuf>,
}

impl Hierarchies {
    pub(crate) fn detect() -> Result<Hierarchies, Error> {
        let root = |controller: &str| -> Option<PathBuf> {
            let dir = Path::new(ROOT).join(controller);
            dir.join("cgroup.procs").is_file().then(|| dir.canonicalize().unwrap_or(dir))
        };
        let (memory, pids, cpu) = (root("memory"), root("pids"), root("cpu"));
        let (Some(memory), Some(pids), Some(cpu)) = (memory.clone(), pids.clone(), cpu.clone()) else {
            let missing: Vec<_> = [("memory", memory), ("pids", pids), ("cpu", cpu)]
                .into_iter()
                .filter(|(_, found)| found.is_none())
                .map(|(name, _)| name)
                .collect();
            return Err(Error::Unsupported(format!(
                "cgroup v1 controller(s) {} not mounted under {ROOT}/<controller>: this host has cgroup v2 only \
                 (boot with systemd.unified_cgroup_hierarchy=0, or mount them: \
                 mount -t cgroup -o <controller> cgroup {ROOT}/<controller>)",
                missing.join(", ")
            )));
        };
        let mut all = vec![memory.clone(), pids.clone(), cpu.clone()];
        all.extend(root("cpuacct"));
        all.sort();
        all.dedup();
        Ok(Hierarchies { memory, pids, cpu, all })
    }

    pub(crate) fn group(&self, name: &str) -> Cgroup {
        Cgroup {
            memory: self.memory.join(name),
            pids: self.pids.join(name),
            cpu: self.cpu.join(name),
            all: self.all.iter().map(|root| root.join(name)).collect(),
        }
    }

    /// Groups whose name starts with `prefix`, in any hierarchy.
    pub(crate) fn groups_with_prefix(&self, prefix: &str) -> Result<Vec<Cgroup>, Error> {
        let mut found = BTreeSet::new();
        for root in &self.all {
            found.extend(names::names_with_prefix(root, prefix)?);
        }
        Ok(found.iter().map(|name| self.group(name)).collect())
    }
}

/// Limits of one group, in the units of the product's Spec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) memory_mb: u32,
    pub(crate) cpu_millis: u32,
    pub(crate) pids_max: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Cgroup {
    memory: PathBuf,
    pids: PathBuf,
    cpu: PathBuf,
    all: Vec<PathBuf>,
}

impl Cgroup {
    /// Creates the group in every hierarchy; [`Error::Exists`] if it already is there.
    pub(crate) fn create(&self, limits: Limits, id: &str) -> Result<(), Error> {
        for (made, dir) in self.all.iter().enumerate() {
            if let Err(e) = fs::create_dir(dir) {
                // Undo only our own directories: existing ones belong to whoever made them.
                for dir in &self.all[..made] {
                    let _ = fs::remove_dir(dir);
                }
                return Err(match e.kind() {
                    io::ErrorKind::AlreadyExists => Error::Exists(id.to_owned()),
                    _ => Error::io(format!("creating {}", dir.display()), e),
                });
            }
        }
        let bytes = u64::from(limits.memory_mb) << 20;
        write(&self.memory.join("memory.limit_in_bytes"), bytes)?;
        // Without a memsw limit a swapping host would let the app grow past memory_mb into swap.
        let memsw = self.memory.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            write(&memsw, bytes)?;
        }
        write(&self.pids.join("pids.max"), limits.pids_max)?;
        if limits.cpu_millis > 0 {
            write(&self.cpu.join("cpu.cfs_period_us"), 100_000)?;
            write(&self.cpu.join("cpu.cfs_quota_us"), u64::from(limits.cpu_millis) * 100)?;
        }
        Ok(())
    }

    /// The `cgroup.procs` files a process writes its pid to, before exec, to join the group.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.all.iter().map(|dir| dir.join("cgroup.procs")).collect()
    }

    /// Every process in the group, over all hierarchies.
    pub(crate) fn pids(&self) -> Vec<u32> {
        let mut pids = BTreeSet::new();
        for file in self.procs_files() {
            if let Ok(text) = fs::read_to_string(file) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        pids.into_iter().collect()
    }

    /// The `oom_kill` counter of memory.oom_control.
    pub(crate) fn oom_kills(&self) -> u64 {
        let text = fs::read_to_string(self.memory.join("memory.oom_control")).unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    }

    /// SIGTERM to the app's processes, SIGKILL to everything left after `grace`, until the group is empty.
    pub(crate) async fn kill(&self, grace: Duration) -> Result<(), Error> {
        let pids = self.pids();
        if pids.is_empty() {
            return Ok(());
        }
        if !grace.is_zero() {
            // Only processes inside the sandbox's pid namespace, never its pid 1 or the launcher: those are
            // bwrap, which answers SIGTERM by dying and taking the app down with SIGKILL, grace or not.
            let apps: Vec<u32> = pids.iter().copied().filter(|&pid| is_app_process(pid)).collect();
            signal("TERM", &apps).await?;
            let deadline = Instant::now() + grace;
            // The whole group, not just the app: bwrap and the launcher pass the exit status on as they go.
            while Instant::now() < deadline && !self.pids().is_empty() {
                sleep(POLL).await;
            }
        }
        let deadline = Instant::now() + KILL_TIMEOUT;
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Stuck(format!("processes {pids:?} of {} survive SIGKILL", self.name())));
            }
            signal("KILL", &pids).await?;
            sleep(POLL).await;
        }
    }

    /// Removes the (empty) group from every hierarchy; retries while the kernel still holds exiting tasks.
    pub(crate) async fn remove(&self) -> Result<(), Error> {
        let deadline = Instant::now() + KILL_TIMEOUT;
        for dir in &self.all {
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(16) && Instant::now() < deadline => sleep(POLL).await, // EBUSY
                    Err(e) => return Err(Error::io(format!("removing {}", dir.display()), e)),
                }
            }
        }
        Ok(())
    }

    pub(crate) fn exists(&self) -> bool {
        self.all.iter().any(|dir| dir.exists())
    }

    pub(crate) fn name(&self) -> String {
        self.memory.file_name().unwrap_or_default().to_string_lossy().into_owned()
    }
}

fn write(path: &Path, value: impl ToString) -> Result<(), Error> {
    fs::write(path, value.to_string()).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// A process of the app: in a nested pid namespace (NSpid has two entries) and not that namespace's pid 1.
fn is_app_process(pid: u32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    let Some(ns_pids) = status.lines().find_map(|l| l.strip_prefix("NSpid:")) else { return false };
    let ns_pids: Vec<&str> = ns_pids.split_whitespace().collect();
    ns_pids.len() > 1 && ns_pids.last() != Some(&"1")
}

/// Sends a signal with the shell's `kill` (no `unsafe` libc call); processes that are gone already are fine.
async fn signal(name: &str, pids: &[u32]) -> Result<(), Error> {
    if pids.is_empty() {
        return Ok(());
    }
    let mut args = vec!["-c".to_owned(), format!("kill -s {name} \"$@\" 2>/dev/null; exit 0"), "kill".to_owned()];
    args.extend(pids.iter().map(u32::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crate::tools::run(Path::new("/bin/sh"), &args, None).await.map(drop)
}
