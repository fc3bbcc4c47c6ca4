//! Size limits on disk the kernel enforces: a directory that is an ext4 file system in a fixed-size, sparse image
//! file, loop-mounted `nodev,nosuid`. An app, a build or a volume that fills its directory gets ENOSPC inside it;
//! the host file system (the event store's, NATS's) only ever holds the image, which never grows beyond its size.
//! This works wherever loop devices do: a laptop, a VM, a cluster node (a privileged pod), unlike project quotas,
//! which depend on the host's file system and its mount options.
//!
//! Every disk mounted by a [`Host`] is recorded under its state directory (`disks-<instance>/`, one file naming the
//! image and the mount point) before it is mounted, so [`Host::teardown`] and the next [`Host::new`] of the
//! instance unmount whatever a crashed run left mounted. Only a mount that is still a loop mount of that very image
//! at that very place is unmounted; images are never deleted there (a volume's outlives the platform's runs).

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write as _};
use std::os::fd::AsFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::mount::UnmountFlags;

use crate::{APP_UID, Error, Host, HostConfig, Result, names, tools};

/// The smallest disk: ext4 needs a few MiB of its own (journal, inode tables).
pub const MIN_DISK_MB: u32 = 8;
/// The largest disk (4 TiB): beyond that a size is a typo rather than a plan.
pub const MAX_DISK_MB: u32 = 4 << 20;
const MIB: u64 = 1 << 20;
/// `nodev`/`nosuid`: nothing the app creates on its disk turns into a device or a privilege. `errors=remount-ro`:
/// a corrupted file system stops taking writes instead of spreading the damage.
const MOUNT_OPTIONS: &str = "loop,nodev,nosuid,noatime,errors=remount-ro";
/// A new file system: no blocks reserved for root (the app is never root), one inode per 4 KiB (package trees are
/// many small files), the root directory the app's, and inode tables written now rather than by a kernel thread
/// after mounting.
const MKFS_ARGS: [&str; 7] = ["-q", "-F", "-m", "0", "-i", "4096", "-E"];
/// How often cleaning up retries a mount point that has several mounts stacked on it.
const MAX_STACKED: usize = 8;
/// How long an unmounted disk's loop device may stay attached. A mount namespace made while the disk was mounted
/// (a sandbox being set up: `ip netns exec`, bwrap) holds a copy of the mount until it drops it, and the file
/// system lives on until then; checking, growing or mounting the image meanwhile would race that copy.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// A size-limited directory: an ext4 image loop-mounted at a mount point. Dropping it unmounts nothing (there is no
/// async drop): call [`Disk::unmount`] or [`Disk::delete`], or [`Host::teardown`] / the next [`Host::new`] of the
/// instance unmounts it.
#[derive(Debug)]
pub struct Disk {
    /// The image file, by its canonical path (what the loop device reports as its backing file).
    image: PathBuf,
    /// Where it is mounted, by its canonical path (what /proc/self/mountinfo shows).
    mountpoint: PathBuf,
    /// The record that lets a later run of the instance unmount it after a crash.
    record: PathBuf,
    /// The mounted file system's device: tells it from the directory underneath once unmounted.
    dev: u64,
}

/// Space and inodes of a mounted disk, as the app sees them (statvfs of the mount point).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub used_bytes: u64,
    /// What the file system can hold: the image's size less ext4's own metadata and journal.
    pub size_bytes: u64,
    pub available_bytes: u64,
    pub inodes_used: u64,
    pub inodes_total: u64,
}

impl Usage {
    /// No room for another file of any size: less than 1 MiB or 1% left, or no inode. What a deployment or build
    /// that failed on this disk is reported as (`disk_quota_exceeded`).
    pub fn is_full(&self) -> bool {
        self.available_bytes < MIB.max(self.size_bytes / 100) || self.inodes_used >= self.inodes_total
    }
}

impl Host {
    /// Makes a new disk of `size_mb` MiB: a sparse image file at `image` (root's, mode 0600, which must not exist
    /// yet) holding a fresh ext4 file system, mounted at `mountpoint` (created if missing; else an empty directory
    /// that is not a mount point). The disk's root directory belongs to uid/gid 65534 and is empty. Keep the image
    /// out of every directory a sandbox sees: whoever can write the image's bytes can attack the kernel's ext4.
    pub async fn create_disk(&self, image: &Path, mountpoint: &Path, size_mb: u32) -> Result<Disk> {
        check_size(size_mb)?;
        check_loop_support()?;
        let (image, mountpoint) = (canonical_parent(image, "image")?, prepare_mountpoint(mountpoint)?);
        check_apart(&image, &mountpoint)?;
        let file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&image).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Error::Invalid {
                    what: "image",
                    reason: format!(
                        "{} exists already; open it with open_disk to keep its data, or remove it first",
                        image.display()
                    ),
                }
            } else {
                Error::io(format!("creating {}", image.display()), e)
            }
        })?;
        // Until mounted, an open_disk of the same path finds it locked instead of a half-made file system.
        lock(&file, &image)?;
        let made = async {
            file.set_len(u64::from(size_mb) * MIB).map_err(|e| Error::io(format!("sizing {}", image.display()), e))?;
            let tools = &self.inner.tools;
            let extended = format!("root_owner={APP_UID}:{APP_UID},lazy_itable_init=0");
            let mut args: Vec<&str> = MKFS_ARGS.to_vec();
            args.extend([extended.as_str(), utf8(&image, "image")?]);
            tools::run(&tools.mkfs_ext4, &args, None).await?;
            self.mount(&image, &mountpoint).await
        };
        let disk = match made.await {
            Ok(disk) => disk,
            Err(e) => {
                let _ = fs::remove_file(&image);
                return Err(e);
            }
        };
        // mkfs's lost+found would be the one directory of the disk the app cannot use (root's, 0700).
        if let Err(e) = fs::remove_dir(mountpoint.join("lost+found")) {
            let _ = disk.unmount().await;
            let _ = fs::remove_file(&image);
            return Err(Error::io(format!("removing lost+found of {}", mountpoint.display()), e));
        }
        Ok(disk)
    }

    /// Mounts a disk made earlier by [`Host::create_disk`] (a volume), never formatting it again. A larger
    /// `size_mb` than the image's grows the image and its file system first (`e2fsck -f` + `resize2fs`, offline);
    /// a smaller one keeps the image as it is (shrinking could lose data): [`Disk::usage`] tells the real size.
    /// Refused while the image is mounted anywhere.
    pub async fn open_disk(&self, image: &Path, mountpoint: &Path, size_mb: u32) -> Result<Disk> {
        check_size(size_mb)?;
        check_loop_support()?;
        let image = canonical_parent(image, "image")?;
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let file = fs::File::from(
            rustix::fs::open(&image, flags, Mode::empty())
                .map_err(|e| Error::io(format!("opening the disk image {}", image.display()), e.into()))?,
        );
        let meta = file.metadata().map_err(|e| Error::io(format!("reading {}", image.display()), e))?;
        if !meta.is_file() {
            return Err(Error::Invalid { what: "image", reason: format!("{} is not a regular file", image.display()) });
        }
        lock(&file, &image)?;
        if let Some(at) = mounted_image(&image)? {
            return Err(Error::Invalid {
                what: "image",
                reason: format!("{} is mounted at {} already; unmount that disk first", image.display(), at.display()),
            });
        }
        let held = wait_released(&image).await;
        if !held.is_empty() {
            return Err(Error::Invalid {
                what: "image",
                reason: format!(
                    "{} is still in use through {} (mounted in another mount namespace, or not yet released \
                     after an unmount); destroy what uses it and retry",
                    image.display(),
                    held.join(", ")
                ),
            });
        }
        let mountpoint = prepare_mountpoint(mountpoint)?;
        check_apart(&image, &mountpoint)?;
        let wanted = u64::from(size_mb) * MIB;
        if meta.len() < wanted {
            self.grow(&file, &image, wanted).await?;
        } else if meta.len() > wanted {
            tracing::info!(image = %image.display(), size = meta.len(), wanted, "a disk is never shrunk; keeping its size");
        }
        let disk = self.mount(&image, &mountpoint).await?;
        // Left by mkfs on an older disk, or by e2fsck: gone if empty and root's; otherwise it stays root's 0700.
        let lost = mountpoint.join("lost+found");
        if fs::symlink_metadata(&lost).is_ok_and(|m| m.is_dir() && m.uid() == 0) {
            let _ = fs::remove_dir(&lost);
        }
        drop(file);
        Ok(disk)
    }

    /// `e2fsck -f -p` (resize2fs insists on a checked file system), then the image and its file system grow.
    async fn grow(&self, file: &fs::File, image: &Path, bytes: u64) -> Result<()> {
        let tools = &self.inner.tools;
        let path = utf8(image, "image")?;
        let (code, out) = status(&tools.e2fsck, &["-f", "-p", path]).await?;
        // 0: clean, 1: errors corrected; anything else needs a person.
        if code > 1 {
            return Err(Error::Command { command: format!("e2fsck -f -p {path} (exit {code})"), stderr: out });
        }
        file.set_len(bytes).map_err(|e| Error::io(format!("growing {}", image.display()), e))?;
        tools::run(&tools.resize2fs, &[path], None).await?;
        Ok(())
    }

    /// Records, then mounts: a crash in between leaves a record of nothing, which cleaning up skips.
    async fn mount(&self, image: &Path, mountpoint: &Path) -> Result<Disk> {
        let record = write_record(&self.inner.config, image, mountpoint)?;
        let tools = &self.inner.tools;
        let mounted = tools::run(
            &tools.mount,
            &["-t", "ext4", "-o", MOUNT_OPTIONS, utf8(image, "image")?, utf8(mountpoint, "mountpoint")?],
            None,
        )
        .await
        .and_then(|_| {
            rustix::fs::stat(mountpoint).map_err(|e| Error::io(format!("reading {}", mountpoint.display()), e.into()))
        });
        match mounted {
            Ok(stat) => {
                Ok(Disk { image: image.to_owned(), mountpoint: mountpoint.to_owned(), record, dev: stat.st_dev })
            }
            Err(e) => {
                let _ = names::remove_if_present(&record);
                Err(e)
            }
        }
    }
}

impl Disk {
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// The directory to hand to a sandbox (`Spec::app_dir`, a `Volume`'s host side) or a build.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Space and inodes now. Fails once the disk is no longer mounted.
    pub fn usage(&self) -> Result<Usage> {
        let context = || format!("reading the disk at {}", self.mountpoint.display());
        let stat = rustix::fs::stat(&self.mountpoint).map_err(|e| Error::io(context(), e.into()))?;
        if stat.st_dev != self.dev {
            return Err(Error::Invalid {
                what: "disk",
                reason: format!("{} is not mounted any more (unmounted or torn down)", self.mountpoint.display()),
            });
        }
        let vfs = rustix::fs::statvfs(&self.mountpoint).map_err(|e| Error::io(context(), e.into()))?;
        Ok(Usage {
            used_bytes: (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize,
            size_bytes: vfs.f_blocks * vfs.f_frsize,
            available_bytes: vfs.f_bavail * vfs.f_frsize,
            inodes_used: vfs.f_files - vfs.f_ffree,
            inodes_total: vfs.f_files,
        })
    }

    /// [`Usage::is_full`] of the disk now; false if it cannot be read.
    pub fn is_full(&self) -> bool {
        self.usage().is_ok_and(|u| u.is_full())
    }

    /// Unmounts the disk, keeping the image (a volume's data). Destroy the sandboxes using it first: if something
    /// still holds it open, it is detached lazily (gone from the host's view now, released when the last user
    /// closes it). Idempotent with [`Host::teardown`].
    pub async fn unmount(self) -> Result<()> {
        unmount_if_mounted(&self.image, &self.mountpoint).await?;
        names::remove_if_present(&self.record)
    }

    /// Unmounts the disk and removes its image and (empty) mount point: for a build's or a deployment's directory.
    pub async fn delete(self) -> Result<()> {
        let (image, mountpoint) = (self.image.clone(), self.mountpoint.clone());
        self.unmount().await?;
        names::remove_if_present(&image)?;
        match fs::remove_dir(&mountpoint) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io(format!("removing the mount point {}", mountpoint.display()), e))
            }
            _ => Ok(()),
        }
    }
}

/// Unmounts every disk this instance recorded (a crashed run's, or all of them at teardown) and drops the records.
pub(crate) async fn remove_leftovers(config: &HostConfig) -> Result<()> {
    let dir = records_dir(config);
    for name in names::names_with_prefix(&dir, "")? {
        let path = dir.join(&name);
        let Ok(bytes) = fs::read(&path) else { continue };
        if let Some((image, mountpoint)) = parse_record(&bytes) {
            unmount_if_mounted(&image, &mountpoint).await?;
        }
        names::remove_if_present(&path)?;
    }
    Ok(())
}

/// Unmounts `mountpoint` as long as a loop mount of `image` is on it (never following a symlink there); falls back
/// to a lazy detach when busy.
async fn unmount_if_mounted(image: &Path, mountpoint: &Path) -> Result<()> {
    let (image, mountpoint) = (image.to_owned(), mountpoint.to_owned());
    let unmounted = {
        let image = image.clone();
        tokio::task::spawn_blocking(move || unmount_blocking(&image, &mountpoint))
            .await
            .map_err(|e| Error::io("unmounting a disk", io::Error::other(e)))??
    };
    if unmounted {
        let held = wait_released(&image).await;
        if !held.is_empty() {
            tracing::warn!(image = %image.display(), loops = ?held, "an unmounted disk is still held elsewhere");
        }
    }
    Ok(())
}

/// Loop devices (`loopN`) whose backing file is `image`.
fn loops_backing(image: &Path) -> Vec<String> {
    let mut found: Vec<String> = names::names_with_prefix(Path::new("/sys/block"), "loop")
        .unwrap_or_default()
        .into_iter()
        .filter(|dev| read_backing_file(&format!("/sys/block/{dev}/loop/backing_file")).as_deref() == Some(image))
        .collect();
    found.sort();
    found
}

/// Waits until no loop device is backed by `image` any more, at most [`RELEASE_WAIT`]; the ones still attached.
async fn wait_released(image: &Path) -> Vec<String> {
    let deadline = Instant::now() + RELEASE_WAIT;
    loop {
        let held = loops_backing(image);
        if held.is_empty() || Instant::now() >= deadline {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// True if something was unmounted.
fn unmount_blocking(image: &Path, mountpoint: &Path) -> Result<bool> {
    for round in 0..MAX_STACKED {
        if !mounts()?.iter().any(|m| m.mount_point == mountpoint && backing_file(m).as_deref() == Some(image)) {
            return Ok(round > 0);
        }
        match rustix::mount::unmount(mountpoint, UnmountFlags::NOFOLLOW) {
            Ok(()) => {}
            Err(rustix::io::Errno::BUSY) => {
                tracing::warn!(mountpoint = %mountpoint.display(), "disk busy; detaching it lazily");
                rustix::mount::unmount(mountpoint, UnmountFlags::NOFOLLOW | UnmountFlags::DETACH)
                    .map_err(|e| Error::io(format!("detaching {}", mountpoint.display()), e.into()))?;
            }
            Err(rustix::io::Errno::INVAL) => return Ok(round > 0),
            Err(e) => return Err(Error::io(format!("unmounting {}", mountpoint.display()), e.into())),
        }
    }
    Err(Error::Stuck(format!("{} stays mounted after {MAX_STACKED} unmounts", mountpoint.display())))
}

/// Where `image` is mounted through a loop device, if anywhere.
fn mounted_image(image: &Path) -> Result<Option<PathBuf>> {
    Ok(mounts()?.into_iter().find(|m| backing_file(m).as_deref() == Some(image)).map(|m| m.mount_point))
}

/// One line of /proc/self/mountinfo, the fields used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// `major:minor` of the mounted device.
    pub(crate) device: String,
    pub(crate) mount_point: PathBuf,
    pub(crate) fs_type: String,
}

pub(crate) fn mounts() -> Result<Vec<Mount>> {
    let text = fs::read("/proc/self/mountinfo").map_err(|e| Error::io("reading /proc/self/mountinfo", e))?;
    Ok(parse_mountinfo(&text))
}

/// `<id> <parent> <major:minor> <root> <mount point> <options> [optional fields] - <type> <source> <options>`,
/// with spaces, tabs, newlines and backslashes in paths written as octal escapes.
pub(crate) fn parse_mountinfo(text: &[u8]) -> Vec<Mount> {
    text.split(|b| *b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
            let separator = fields.iter().position(|f| *f == b"-")?;
            let (device, mount_point) = (fields.get(2)?, fields.get(4)?);
            let fs_type = fields.get(separator + 1)?;
            Some(Mount {
                device: String::from_utf8_lossy(device).into_owned(),
                mount_point: PathBuf::from(OsStr::from_bytes(&unescape(mount_point))),
                fs_type: String::from_utf8_lossy(fs_type).into_owned(),
            })
        })
        .collect()
}

fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal =
            field.get(i + 1..i + 4).filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(digits) => {
                out.push(digits.iter().fold(0u8, |n, d| n.wrapping_mul(8).wrapping_add(d - b'0')));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// The file behind a loop device's ext4 mount (what the kernel reports; " (deleted)" once it was removed).
fn backing_file(mount: &Mount) -> Option<PathBuf> {
    if mount.fs_type != "ext4" {
        return None;
    }
    read_backing_file(&format!("/sys/dev/block/{}/loop/backing_file", mount.device))
}

fn read_backing_file(path: &str) -> Option<PathBuf> {
    let text = fs::read(path).ok()?;
    let text = text.strip_suffix(b"\n").unwrap_or(&text);
    let text = text.strip_suffix(b" (deleted)").unwrap_or(text);
    Some(PathBuf::from(OsStr::from_bytes(text)))
}

fn records_dir(config: &HostConfig) -> PathBuf {
    config.state_dir.join(format!("disks-{}", config.instance))
}

/// `<image>\0<mountpoint>`, in a file of its own, synced before the mount happens.
fn write_record(config: &HostConfig, image: &Path, mountpoint: &Path) -> Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = records_dir(config);
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join(format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let mut content = image.as_os_str().as_bytes().to_vec();
    content.push(0);
    content.extend_from_slice(mountpoint.as_os_str().as_bytes());
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(&content).and_then(|()| f.sync_all()))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}

fn parse_record(bytes: &[u8]) -> Option<(PathBuf, PathBuf)> {
    let at = bytes.iter().position(|b| *b == 0)?;
    let (image, mountpoint) = (&bytes[..at], &bytes[at + 1..]);
    if image.is_empty() || mountpoint.is_empty() {
        return None;
    }
    Some((PathBuf::from(OsStr::from_bytes(image)), PathBuf::from(OsStr::from_bytes(mountpoint))))
}

/// Held until the disk is mounted: a concurrent open of the same image (this process or another) is refused and
/// finds it mounted when it tries again, so one file system is never mounted twice through two loop devices.
fn lock(file: &fs::File, image: &Path) -> Result<()> {
    match rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Invalid {
            what: "image",
            reason: format!("{} is being made or opened by another call right now; try again", image.display()),
        }),
        Err(e) => Err(Error::io(format!("locking {}", image.display()), e.into())),
    }
}

/// An image inside its own mount point would vanish under the mount (and could never be found again to reopen).
fn check_apart(image: &Path, mountpoint: &Path) -> Result<()> {
    if image.starts_with(mountpoint) {
        return Err(Error::Invalid {
            what: "image",
            reason: format!(
                "{} is inside the mount point {}; keep it elsewhere",
                image.display(),
                mountpoint.display()
            ),
        });
    }
    Ok(())
}

fn check_size(size_mb: u32) -> Result<()> {
    if (MIN_DISK_MB..=MAX_DISK_MB).contains(&size_mb) {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: "size_mb",
            reason: format!("{size_mb} is outside {MIN_DISK_MB}..={MAX_DISK_MB} (MiB)"),
        })
    }
}

fn check_loop_support() -> Result<()> {
    if Path::new("/dev/loop-control").exists() {
        Ok(())
    } else {
        Err(Error::Unsupported(
            "no /dev/loop-control, so disks cannot be mounted: load the loop module (modprobe loop); \
             in a container, run it privileged with the host's /dev"
                .into(),
        ))
    }
}

/// The absolute path with its parent resolved (the kernel reports paths that way); the last component is kept as
/// given and must not be `..`.
fn canonical_parent(path: &Path, what: &'static str) -> Result<PathBuf> {
    let invalid = |reason: String| Error::Invalid { what, reason };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(invalid(format!("{} must be an absolute path to a file or directory", path.display())));
    };
    if !path.is_absolute() {
        return Err(invalid(format!("{} must be absolute", path.display())));
    }
    let parent = fs::canonicalize(parent).map_err(|e| Error::io(format!("resolving {}", parent.display()), e))?;
    let path = parent.join(name);
    utf8(&path, what)?;
    Ok(path)
}

/// An empty directory (made if missing) that is no symlink and no mount point yet, by canonical path.
fn prepare_mountpoint(mountpoint: &Path) -> Result<PathBuf> {
    let path = canonical_parent(mountpoint, "mountpoint")?;
    let invalid = |reason: &str| Error::Invalid { what: "mountpoint", reason: format!("{} {reason}", path.display()) };
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        }
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        Ok(meta) if !meta.is_dir() => return Err(invalid("is not a directory (a symlink is not followed)")),
        Ok(_) => {
            if mounts()?.iter().any(|m| m.mount_point == path) {
                return Err(invalid("is a mount point already; unmount what is there first"));
            }
            let mut entries = fs::read_dir(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            if entries.next().is_some() {
                return Err(invalid("is not empty: mounting over it would hide its files; pass an empty directory"));
            }
        }
    }
    Ok(path)
}

fn utf8<'a>(path: &'a Path, what: &'static str) -> Result<&'a str> {
    path.to_str().ok_or_else(|| Error::Invalid { what, reason: format!("{} is not UTF-8", path.display()) })
}

/// Runs a tool to completion; its exit code (-1 if killed) and stderr, for tools whose non-zero codes mean
/// something (e2fsck).
async fn status(program: &Path, args: &[&str]) -> Result<(i32, String)> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", tools::HOST_PATH)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| Error::io(format!("running {}", program.display()), e))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code().unwrap_or(-1), text.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_mountinfo_lines_when_parsed_then_paths_are_unescaped_and_optional_fields_skipped() {
        let text = b"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                     66 22 7:3 / /tmp/a\\040b/disk rw,nosuid,nodev - ext4 /dev/loop3 rw\n\
                     67 22 0:5 / /run/x\\134y rw master:2 propagate_from:1 - tmpfs tmpfs rw\n\
                     garbage\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(
            mounts,
            [
                Mount { device: "8:1".into(), mount_point: "/".into(), fs_type: "ext4".into() },
                Mount { device: "7:3".into(), mount_point: "/tmp/a b/disk".into(), fs_type: "ext4".into() },
                Mount { device: "0:5".into(), mount_point: "/run/x\\y".into(), fs_type: "tmpfs".into() },
            ]
        );
    }

    #[test]
    fn given_a_record_when_read_back_then_both_paths_come_out() {
        assert_eq!(
            parse_record(b"/d/a b.img\0/d/mnt\nx"),
            Some((PathBuf::from("/d/a b.img"), PathBuf::from("/d/mnt\nx")))
        );
        assert_eq!(parse_record(b"/d/a.img"), None);
        assert_eq!(parse_record(b"\0/d/mnt"), None);
    }

    #[test]
    fn given_usage_when_little_is_left_then_the_disk_is_full() {
        let usage = |available_bytes, inodes_used| Usage {
            used_bytes: 0,
            size_bytes: 1000 * MIB,
            available_bytes,
            inodes_used,
            inodes_total: 100,
        };
        assert!(!usage(20 * MIB, 10).is_full());
        assert!(usage(9 * MIB, 10).is_full(), "under 1% left");
        assert!(usage(20 * MIB, 100).is_full(), "no inode left");
        let small = Usage { size_bytes: 26 * MIB, available_bytes: MIB / 2, ..usage(0, 0) };
        assert!(small.is_full(), "under 1 MiB left");
    }

    #[test]
    fn given_sizes_when_checked_then_only_sensible_ones_pass() {
        assert!(check_size(MIN_DISK_MB).is_ok());
        assert!(check_size(MAX_DISK_MB).is_ok());
        assert!(matches!(check_size(1), Err(Error::Invalid { what: "size_mb", .. })));
        assert!(check_size(MAX_DISK_MB + 1).is_err());
    }
}
