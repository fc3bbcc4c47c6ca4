//! The host tools the sandbox shells out to (the crate forbids `unsafe`, so namespaces, firewall and privilege
//! dropping are done by `ip`, `nft`, `setpriv` and `bwrap`; disks by `mkfs.ext4`, `e2fsck`, `resize2fs` and
//! `mount`, which sets up the loop device), and the checks that they and root are there.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::Error;

/// What commands of ours see as PATH: the host's environment never reaches them.
pub(crate) const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug)]
pub(crate) struct Tools {
    pub(crate) ip: PathBuf,
    pub(crate) nft: PathBuf,
    pub(crate) bwrap: PathBuf,
    pub(crate) setpriv: PathBuf,
    /// Disks (disk.rs): formatting, checking and growing ext4 images, loop-mounting them.
    pub(crate) mkfs_ext4: PathBuf,
    pub(crate) e2fsck: PathBuf,
    pub(crate) resize2fs: PathBuf,
    pub(crate) mount: PathBuf,
}

impl Tools {
    /// Finds every tool, reporting all that are missing at once with the package that brings it.
    pub(crate) async fn find() -> Result<Tools, Error> {
        let mut missing = Vec::new();
        let mut find = |name: &str, package: &str| {
            let found = which(name);
            if found.is_none() {
                missing.push(format!("`{name}` (apt-get install {package})"));
            }
            found.unwrap_or_default()
        };
        let tools = Tools {
            ip: find("ip", "iproute2"),
            nft: find("nft", "nftables"),
            bwrap: find("bwrap", "bubblewrap"),
            setpriv: find("setpriv", "util-linux"),
            mkfs_ext4: find("mkfs.ext4", "e2fsprogs"),
            e2fsck: find("e2fsck", "e2fsprogs"),
            resize2fs: find("resize2fs", "e2fsprogs"),
            mount: find("mount", "mount"),
        };
        if !missing.is_empty() {
            return Err(Error::Unsupported(format!("missing tools: {}", missing.join(", "))));
        }
        tools.check_bwrap_version().await?;
        Ok(tools)
    }

    /// `--disable-userns` (no nested user namespaces, hence no root inside) arrived in bubblewrap 0.8.
    async fn check_bwrap_version(&self) -> Result<(), Error> {
        let out = run(&self.bwrap, &["--version"], None).await?;
        let version = out.split_whitespace().nth(1).unwrap_or_default();
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) < (0, 8) {
            return Err(Error::Unsupported(format!(
                "bubblewrap {version} is too old: 0.8 or newer is needed for --disable-userns \
                 (Debian 12: apt-get install bubblewrap; else build it from github.com/containers/bubblewrap)"
            )));
        }
        Ok(())
    }
}

fn which(name: &str) -> Option<PathBuf> {
    HOST_PATH.split(':').map(|dir| Path::new(dir).join(name)).find(|p| p.is_file())
}

/// The effective uid, from /proc (no libc call without `unsafe`).
pub(crate) fn check_root() -> Result<(), Error> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| Error::io("reading /proc/self/status", e))?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_owned();
    if euid == "0" {
        Ok(())
    } else {
        Err(Error::Unsupported(format!(
            "sandboxes need root (network namespaces, cgroups, nftables); this process runs as uid {euid}"
        )))
    }
}

/// Runs a tool to completion with a clean environment; a non-zero exit becomes [`Error::Command`] with its stderr.
pub(crate) async fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
    let describe = || format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", HOST_PATH)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", describe()), e))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).await.map_err(|e| Error::io(format!("writing to {}", describe()), e))?;
    }
    let out = child.wait_with_output().await.map_err(|e| Error::io(format!("running {}", describe()), e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut command = describe();
        if let Some(input) = stdin {
            // Batch input says which line of `ip -b` or `nft -f` failed.
            command.push_str(&format!(" <<< {}", input.trim().replace('\n', "; ")));
        }
        Err(Error::Command { command, stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}
