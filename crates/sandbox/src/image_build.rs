//! Dockerfile builds inside a sandbox: buildah runs rootless, in a user namespace whose only uid and gid (0 inside)
//! are 65534 on the host, in the sandbox's network namespace and cgroups, with a private image store per build.
//!
//! Why a user namespace, and why this one. buildah needs root-like powers to build (mount its storage, chroot into
//! the image for `RUN`, change ownership of files). As real root (the way builds ran before) a `RUN` step was uid 0
//! on the host with real capabilities. Here every build process is uid 65534 on the host, and its capabilities
//! (CAP_SYS_ADMIN included) are those of root of a user namespace that owns nothing of the host: its mount, pid,
//! ipc and uts namespaces are the sandbox's own, and the network namespace (owned by the host) cannot be changed
//! from it. What the host sees of a build is what it sees of an app: uid 65534 in the sandbox's cgroups, killed
//! with the sandbox.
//!
//! How the namespace is made. bwrap, started as uid 65534, creates it and waits (`--userns-block-fd`) while root
//! writes its uid and gid maps (`0 65534 1`) and sets its `user.max_user_namespaces` to 0. Root writes the maps,
//! rather than bwrap as an unprivileged user, because an unprivileged writer must first deny `setgroups(2)` in the
//! namespace, and buildah 1.28 (Debian 12) calls `setgroups` before every `RUN` step; the only group mapped is 65534,
//! so allowing it grants nothing. The limit of 0 stops nested user namespaces (a `RUN` step cannot make itself a new
//! root), and it stays 0 because CAP_SYS_RESOURCE, which changing it needs, is dropped from the bounding set; bwrap's
//! own `--disable-userns` cannot be combined with maps written from outside.
//!
//! The store. Each build gets an [`ImageStore`]: a root-owned directory holding the generated buildah configuration
//! (storage.conf, containers.conf, registries.conf with no registries, policy.json) bound read-only over
//! /etc/containers (the host's is never seen), and a directory owned by uid 65534 for buildah's storage (overlay,
//! or vfs where overlay cannot be the upper filesystem), run state and scratch files, so a build's disk use stays in
//! the directory the caller chose. Base images are never pulled (`--pull=never`, and the sandbox is sealed anyway);
//! the host's own image store is not offered either (it is root's, mode 0700, unreadable for uid 65534 by design),
//! so Dockerfiles build `FROM scratch`.
//!
//! Architecture invariant: bwrap's bind sources are root-owned paths or directories whose parent is root-owned, and
//! every bind destination lies in bwrap's fresh root (never inside a directory the build can write), so nothing a
//! build plants in its store can redirect a later bind; and the host reads what a build left (the exported root
//! filesystem, the image description, the OCI layout) only after every process of it is gone, never following a
//! symlink in it.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::process::Process;
use crate::{APP_UID, Error, Result, Sandbox, tools};

/// Where the build's store is seen inside the sandbox; graph root, run root, TMPDIR and HOME are below it.
const STORE_GUEST: &str = "/build";
/// The build context, read-only.
const CONTEXT_GUEST: &str = "/context";
/// The exported root filesystem's destination (export only).
const ROOTFS_GUEST: &str = "/rootfs";
/// The image description and OCI layout (export only).
const OUT_GUEST: &str = "/out";
/// PATH of buildah and the shell scripts here.
const PATH_INSIDE: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Longest time between starting bwrap and it reporting the namespace it made.
const INFO_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of bwrap's namespace report (a few namespace ids) read before giving up on it.
const MAX_INFO: usize = 4096;
/// The image description is JSON of a few KiB; anything this large is not buildah's.
const MAX_IMAGE_JSON: u64 = 16 << 20;
/// Lines of a failed export kept for its error.
const ERROR_LINES: usize = 40;

/// Like the app launcher (lib.rs), plus fd 3 = stderr for bwrap's `--info-fd`: a copy bwrap may close without
/// closing the sandbox's stderr.
const LAUNCHER: &str =
    "while [ \"$1\" != -- ]; do echo $$ > \"$1\" || exit 125; shift; done; shift; \"$@\" 3>&2; exit $?";

/// `buildah bud` inside: the store's directories first (made inside the sandbox, where a symlink the build planted
/// in its store cannot lead anywhere of the host's).
const BUD_SCRIPT: &str = "umask 022; mkdir -p /build/graph /build/run /build/tmp /build/home || exit 125; \
    exec buildah bud --isolation chroot --pull=never --layers=false -f \"$1\" -t \"$2\" .";

/// The export inside: a container of the image, its special files removed (a copy would recreate FIFOs and
/// sockets, and fail on device nodes), its tree copied without ownership (cp without --preserve=mode also drops
/// setuid and setgid bits; umask 0 keeps every other mode bit), the image's description, and the OCI layout when
/// `$2` names its reference. The host checks the result again (see `sanitize_tree`).
const EXPORT_SCRIPT: &str = "set -eu; umask 022; mkdir -p /build/graph /build/run /build/tmp /build/home; \
    c=$(buildah from --pull=never --quiet \"$1\"); m=$(buildah mount \"$c\"); \
    find \"$m\" -xdev \\( -type b -o -type c -o -type p -o -type s \\) -delete; \
    (umask 0 && cp -R --preserve=timestamps,links -- \"$m/.\" /rootfs/); \
    buildah inspect --type image \"$1\" > /out/image.json; \
    if [ -n \"$2\" ]; then buildah push --quiet \"$1\" \"oci:/out/oci:$2\"; fi; \
    buildah umount \"$c\" > /dev/null; buildah rm \"$c\" > /dev/null";

/// Filesystems overlayfs accepts as the upper layer inside a user namespace (they keep `user.*` xattrs).
const OVERLAY_UPPER_FS: [&str; 3] = ["ext4", "xfs", "btrfs"];

/// One build's private image store: see the module docs. Dropping it leaves the directory; [`ImageStore::remove`]
/// deletes it.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

/// What [`Sandbox::export_image`] produced besides the root filesystem.
#[derive(Debug, Clone)]
pub struct ExportedImage {
    /// `buildah inspect --type image` of the image: its run configuration is under `OCIv1.config` (Entrypoint, Cmd,
    /// Env, WorkingDir).
    pub inspect: String,
    /// The image as an OCI image layout (`index.json`, `blobs/sha256/…`, checked to hold only directories and
    /// regular files), when asked for: what the caller uploads to a registry. It lives in the store.
    pub layout: Option<PathBuf>,
}

impl ImageStore {
    /// Makes the store at `dir` (an absolute path whose parent exists, is root's and is searchable by uid 65534),
    /// replacing whatever an earlier build left there.
    pub async fn create(dir: &Path) -> Result<ImageStore> {
        let invalid = |reason: String| Err(Error::Invalid { what: "image store", reason });
        if !dir.is_absolute() || dir.components().any(|c| c == Component::ParentDir) {
            return invalid(format!("{} must be an absolute path without `..`", dir.display()));
        }
        let Some(parent) = dir.parent().filter(|p| p.is_dir()) else {
            return invalid(format!("the parent of {} must be an existing directory", dir.display()));
        };
        // The store itself and its root-owned files must stay where they are: only root may rename its entries.
        let owner = fs::metadata(parent).map_err(|e| Error::io(format!("reading {}", parent.display()), e))?;
        if owner.uid() != 0 || owner.mode() & 0o022 != 0 {
            return invalid(format!("{} must be root's and writable by root alone", parent.display()));
        }
        crate::reachable_by_app_user(parent, "image store")?;
        let store = ImageStore { dir: dir.to_path_buf() };
        let driver = storage_driver(parent);
        tokio::task::spawn_blocking(move || store.make(driver))
            .await
            .map_err(|e| Error::io("creating an image store", io::Error::other(e)))?
    }

    fn make(self, driver: &str) -> Result<ImageStore> {
        let io = |what: &str, path: &Path, e: io::Error| Error::io(format!("{what} {}", path.display()), e);
        match fs::symlink_metadata(&self.dir) {
            // remove_dir_all never follows a symlink below it.
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&self.dir),
            Ok(_) => fs::remove_file(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
        .map_err(|e| io("removing the earlier", &self.dir, e))?;
        for (dir, mode) in [(self.dir.clone(), 0o755), (self.etc(), 0o755)] {
            fs::create_dir(&dir).map_err(|e| io("creating", &dir, e))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(|e| io("chmod", &dir, e))?;
        }
        for (name, content) in config_files(driver) {
            crate::write_file(&self.etc().join(name), &content)?;
        }
        let storage = self.storage();
        fs::create_dir(&storage).map_err(|e| io("creating", &storage, e))?;
        fs::set_permissions(&storage, fs::Permissions::from_mode(0o700)).map_err(|e| io("chmod", &storage, e))?;
        std::os::unix::fs::lchown(&storage, Some(APP_UID), Some(APP_UID)).map_err(|e| io("chown", &storage, e))?;
        Ok(self)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Deletes the store and everything builds left in it. Call it after the sandbox's processes are gone.
    pub async fn remove(self) -> Result<()> {
        let dir = self.dir;
        tokio::task::spawn_blocking(move || match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(format!("removing {}", dir.display()), e)),
            _ => Ok(()),
        })
        .await
        .map_err(|e| Error::io("removing an image store", io::Error::other(e)))?
    }

    /// Root's: the generated configuration.
    fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }

    /// uid 65534's: buildah's storage, run state, TMPDIR and HOME (bound at /build).
    fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }

    /// uid 65534's, fresh for each export: the image description and the OCI layout (bound at /out).
    fn out(&self) -> PathBuf {
        self.dir.join("out")
    }
}

/// overlay where the store's filesystem can be its upper layer (much faster for large images), vfs elsewhere.
fn storage_driver(dir: &Path) -> &'static str {
    let fs_type = fs::canonicalize(dir)
        .ok()
        .and_then(|dir| fs::read_to_string("/proc/self/mountinfo").ok().and_then(|m| mount_fs_type(&m, &dir)));
    match fs_type {
        Some(t) if OVERLAY_UPPER_FS.contains(&t.as_str()) => "overlay",
        _ => "vfs",
    }
}

/// The filesystem type of the mount holding `path` (the longest mount point above it) in a mountinfo table.
fn mount_fs_type(mountinfo: &str, path: &Path) -> Option<String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?.replace("\\040", " ");
            let fs_type = right.split(' ').next()?;
            path.starts_with(&point).then(|| (point.len(), fs_type.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs_type)| fs_type)
}

/// The files bound over /etc/containers: the store under /build, no registries, no signature checks (nothing is
/// pulled), cgroupfs (buildah must not ask systemd for anything).
fn config_files(driver: &str) -> [(&'static str, String); 4] {
    [
        (
            "storage.conf",
            format!(
                "[storage]\ndriver = \"{driver}\"\ngraphroot = \"{STORE_GUEST}/graph\"\nrunroot = \"{STORE_GUEST}/run\"\n\
                 [storage.options.{driver}]\n\
                 # One uid is mapped: ownership of image files that would need another cannot be kept.\n\
                 ignore_chown_errors = \"true\"\n"
            ),
        ),
        (
            "containers.conf",
            format!(
                "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"none\"\n\
                 image_copy_tmp_dir = \"{STORE_GUEST}/tmp\"\n"
            ),
        ),
        ("registries.conf", "unqualified-search-registries = []\n".to_owned()),
        ("policy.json", "{\"default\": [{\"type\": \"insecureAcceptAnything\"}]}\n".to_owned()),
    ]
}

impl Sandbox {
    /// Starts `buildah bud` of `context`'s `dockerfile` (a relative path inside it), tagging the image `tag` in
    /// `store`. `env` reaches buildah and, for the proxy variables, its `RUN` steps (buildah passes http_proxy and
    /// friends on). Its output are the build's log lines; wait for its exit status.
    ///
    /// The build runs as described in the module docs: uid 65534 on the host, in this sandbox's network namespace
    /// and cgroups (memory, pids and CPU limits count buildah and every `RUN` step), with `context` read-only.
    pub async fn build_image(
        &self,
        store: &ImageStore,
        context: &Path,
        dockerfile: &str,
        tag: &str,
        env: &[(String, String)],
    ) -> Result<Process> {
        crate::validate_env(env)?;
        validate_tag(tag)?;
        if dockerfile.is_empty()
            || dockerfile.contains('\0')
            || Path::new(dockerfile).components().any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(Error::Invalid {
                what: "dockerfile",
                reason: format!("{dockerfile:?} must be a relative path inside the build context, without `..`"),
            });
        }
        if !context.is_absolute() || !context.is_dir() {
            return Err(Error::Invalid {
                what: "context",
                reason: format!("{} must be an existing directory, by absolute path", context.display()),
            });
        }
        crate::reachable_by_app_user(context, "context")?;
        let mut args = self.rootless_isolation(store)?;
        push_os(&mut args, ["--ro-bind".as_ref(), context.as_os_str(), CONTEXT_GUEST.as_ref()]);
        self.finish_command(&mut args, env, CONTEXT_GUEST, BUD_SCRIPT, &[dockerfile, tag]);
        self.launch_rootless(args).await
    }

    /// Copies the image `tag` of `store` into `rootfs` (a new directory; its parent must exist and be root's) as a
    /// plain tree without ownership (everything becomes uid 65534's on the host), setuid or setgid bits, device
    /// nodes, FIFOs or sockets, and returns its description. With `layout` (a reference name, e.g. `latest`) the
    /// image is also written as an OCI image layout, for the caller to upload.
    ///
    /// Runs like [`Sandbox::build_image`] (the image's own code does not run), in this sandbox; failures come back
    /// as [`Error::Command`] with buildah's last lines.
    pub async fn export_image(
        &self,
        store: &ImageStore,
        tag: &str,
        rootfs: &Path,
        layout: Option<&str>,
    ) -> Result<ExportedImage> {
        validate_tag(tag)?;
        if let Some(reference) = layout {
            validate_reference(reference)?;
        }
        let rootfs_parent = rootfs.parent().filter(|p| rootfs.is_absolute() && p.is_dir());
        let parent_is_roots =
            rootfs_parent.and_then(|p| fs::metadata(p).ok()).is_some_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0);
        if !parent_is_roots || rootfs.components().any(|c| c == Component::ParentDir) || rootfs.exists() {
            return Err(Error::Invalid {
                what: "rootfs",
                reason: format!(
                    "{} must be a new directory by absolute path, in an existing directory only root may change",
                    rootfs.display()
                ),
            });
        }
        let out = store.out();
        let made = [rootfs.to_path_buf(), out.clone()];
        tokio::task::spawn_blocking(move || {
            let _ = fs::remove_dir_all(&made[1]);
            made.iter().try_for_each(|dir| {
                fs::create_dir(dir)
                    .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o755)))
                    .and_then(|()| std::os::unix::fs::lchown(dir, Some(APP_UID), Some(APP_UID)))
                    .map_err(|e| Error::io(format!("creating {}", dir.display()), e))
            })
        })
        .await
        .map_err(|e| Error::io("creating the export directories", io::Error::other(e)))??;

        let mut args = self.rootless_isolation(store)?;
        push_os(&mut args, ["--bind".as_ref(), rootfs.as_os_str(), ROOTFS_GUEST.as_ref()]);
        push_os(&mut args, ["--bind".as_ref(), out.as_os_str(), OUT_GUEST.as_ref()]);
        self.finish_command(&mut args, &[], "/", EXPORT_SCRIPT, &[tag, layout.unwrap_or("")]);
        let mut process = self.launch_rootless(args).await?;
        let mut lines = process.lines();
        let mut tail = std::collections::VecDeque::with_capacity(ERROR_LINES);
        while let Some(line) = lines.recv().await {
            if tail.len() == ERROR_LINES {
                tail.pop_front();
            }
            tail.push_back(line.text);
        }
        let status = process.wait().await?;
        if !status.success() {
            return Err(Error::Command {
                command: format!("export of image {tag} in sandbox {} ({status:?})", self.spec.id),
                stderr: Vec::from(tail).join("\n"),
            });
        }
        // Every process of the export is gone (its pid namespace ended with it): nothing changes these trees now.
        let (rootfs, out_dir) = (rootfs.to_path_buf(), out.clone());
        let with_layout = layout.is_some();
        tokio::task::spawn_blocking(move || -> Result<ExportedImage> {
            sanitize_tree(&rootfs)?;
            let inspect = read_plain_file(&out_dir.join("image.json"), MAX_IMAGE_JSON)?;
            let layout = if with_layout {
                let dir = out_dir.join("oci");
                check_plain_tree(&dir)?;
                Some(dir)
            } else {
                None
            };
            Ok(ExportedImage { inspect, layout })
        })
        .await
        .map_err(|e| Error::io("checking the exported image", io::Error::other(e)))?
    }

    /// `ip netns exec <ns> setpriv … bwrap <user namespace with root mapped to 65534 …>`, the system read-only, the
    /// generated /etc files, /etc/containers from the store and the store at /build.
    fn rootless_isolation(&self, store: &ImageStore) -> Result<Vec<OsString>> {
        // Run from the host's /usr, bound read-only: it must be there.
        host_tool("buildah", "buildah")?;
        let host = &self.host.inner;
        let mut args: Vec<OsString> = Vec::with_capacity(128);
        let mut push = |items: &[&std::ffi::OsStr]| args.extend(items.iter().map(OsString::from));
        push(&[host.tools.ip.as_os_str(), "netns".as_ref(), "exec".as_ref(), self.netns.as_ref()]);
        push(&[host.tools.setpriv.as_os_str(), "--reuid=65534".as_ref(), "--regid=65534".as_ref()]);
        push(&["--clear-groups".as_ref(), host.tools.bwrap.as_os_str()]);
        // The namespace waits on stdin for root to map it (launch_rootless); bwrap reports it on fd 3.
        for arg in ["--unshare-user", "--userns-block-fd", "0", "--info-fd", "3", "--uid", "0", "--gid", "0"] {
            push(&[arg.as_ref()]);
        }
        for arg in ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname"] {
            push(&[arg.as_ref()]);
        }
        push(&[self.spec.id.as_ref(), "--die-with-parent".as_ref(), "--new-session".as_ref()]);
        // Root of the namespace keeps its capabilities (they reach nothing of the host's), but CAP_SYS_RESOURCE:
        // with it the build could lift the namespace's limit of 0 nested user namespaces.
        for arg in ["--cap-add", "ALL", "--cap-drop", "CAP_SYS_RESOURCE"] {
            push(&[arg.as_ref()]);
        }
        push(&["--ro-bind".as_ref(), "/usr".as_ref(), "/usr".as_ref()]);
        for dir in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
            match fs::read_link(dir) {
                Ok(target) => push(&["--symlink".as_ref(), target.as_os_str(), dir.as_ref()]),
                Err(_) if Path::new(dir).is_dir() => push(&["--ro-bind".as_ref(), dir.as_ref(), dir.as_ref()]),
                Err(_) => {}
            }
        }
        for file in ["/etc/alternatives", "/etc/ssl/certs", "/etc/ld.so.cache", "/etc/localtime"] {
            push(&["--ro-bind-try".as_ref(), file.as_ref(), file.as_ref()]);
        }
        self.generated_mounts(&mut args);
        // buildah binds /sys into RUN steps' roots: an empty directory (no sysfs of the host's) is enough.
        args.extend(["--dir", "/sys"].map(OsString::from));
        for (name, _) in config_files("") {
            args.extend(["--ro-bind".into(), store.etc().join(name).into(), format!("/etc/containers/{name}").into()]);
        }
        let storage = store.storage();
        if !fs::symlink_metadata(&storage).is_ok_and(|m| m.is_dir() && m.uid() == APP_UID) {
            return Err(Error::Invalid {
                what: "image store",
                reason: format!("{} is not a store made by ImageStore::create", store.dir.display()),
            });
        }
        args.extend(["--bind".into(), storage.into(), OsString::from(STORE_GUEST)]);
        Ok(args)
    }

    /// The read-only root, the environment (cleared; `env` on top), the working directory and `/bin/sh -c script`.
    fn finish_command(&self, args: &mut Vec<OsString>, env: &[(String, String)], cwd: &str, script: &str, a: &[&str]) {
        // bwrap's root is a tmpfs: without this, the build could write anywhere outside its mounts.
        args.extend(["--remount-ro", "/", "--clearenv"].map(OsString::from));
        let defaults = [
            ("PATH", PATH_INSIDE),
            ("HOME", "/build/home"),
            ("TMPDIR", "/build/tmp"),
            ("LANG", "C.UTF-8"),
            ("BUILDAH_ISOLATION", "chroot"),
        ];
        for (key, value) in defaults.iter().copied().chain(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            args.extend(["--setenv", key, value].map(OsString::from));
        }
        args.extend(["--chdir", cwd, "--", "/bin/sh", "-c", script, "sh"].map(OsString::from));
        args.extend(a.iter().map(OsString::from));
    }

    /// Starts `command` (an `isolation` command line) under the launcher, maps its user namespace from outside and
    /// lets it run. The process's stderr carries bwrap's report first; it is read here, the rest is the build's.
    async fn launch_rootless(&self, command: Vec<OsString>) -> Result<Process> {
        let mut args: Vec<OsString> = vec!["-c".into(), LAUNCHER.into(), "dmcp-launch".into()];
        args.extend(self.cgroup.procs_files().into_iter().map(OsString::from));
        args.push("--".into());
        args.extend(command);
        let mut child = tokio::process::Command::new("/bin/sh")
            .args(args)
            .env_clear()
            .env("PATH", tools::HOST_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // Dropping the process (a build timeout) ends the build: bwrap dies with the launcher.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::io("starting the sandbox launcher /bin/sh", e))?;
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let report = tokio::time::timeout(INFO_TIMEOUT, read_report(&mut stderr)).await;
        let pid = match report {
            Ok(Ok(report)) => child_pid(&report),
            _ => None,
        };
        let Some(pid) = pid else {
            let _ = child.start_kill();
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), stderr.take(64 * 1024).read_to_end(&mut rest)).await;
            return Err(Error::Command {
                command: format!("bwrap for an image build in sandbox {}", self.spec.id),
                stderr: String::from_utf8_lossy(&rest).trim().to_owned(),
            });
        };
        if let Err(e) = map_namespace(pid).await {
            let _ = child.start_kill();
            return Err(e);
        }
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let released = stdin.write_all(b"1").await;
        drop(stdin);
        if let Err(e) = released {
            let _ = child.start_kill();
            return Err(Error::io("letting the image build's namespace run", e));
        }
        child.stderr = Some(stderr);
        Ok(Process::new(child))
    }
}

/// Writes `0 65534 1` as the uid and gid maps of `pid`'s user namespace (as root, so setgroups stays allowed) and
/// its user.max_user_namespaces = 0, from inside it (nsenter switches to its root, uid 65534, which may write it).
async fn map_namespace(pid: u32) -> Result<()> {
    let map = format!("0 {APP_UID} 1\n");
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{pid}/{file}");
        fs::write(&path, &map).map_err(|e| Error::io(format!("writing {path}"), e))?;
    }
    let nsenter = host_tool("nsenter", "util-linux")?;
    let pid = pid.to_string();
    let limit = "echo 0 > /proc/sys/user/max_user_namespaces";
    tools::run(&nsenter, &["--user", "--target", &pid, "--", "/bin/sh", "-c", limit], None).await?;
    Ok(())
}

/// A tool of the host's, by name, or what to install.
fn host_tool(name: &str, package: &str) -> Result<PathBuf> {
    tools::HOST_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Unsupported(format!("`{name}` is missing (apt-get install {package})")))
}

/// bwrap's `--info-fd` report, `{ "child-pid": N, … }`, read a byte at a time so nothing of what follows it on
/// stderr is consumed.
async fn read_report(stderr: &mut tokio::process::ChildStderr) -> io::Result<String> {
    let mut report = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while report.len() < MAX_INFO {
        if stderr.read(&mut byte).await? == 0 {
            break;
        }
        report.push(byte[0]);
        if report.ends_with(b"\n}\n") {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&report).into_owned())
}

fn child_pid(report: &str) -> Option<u32> {
    let rest = report.trim_start().strip_prefix('{')?.split_once("\"child-pid\":")?.1.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|&pid| pid > 1)
}

/// Strips setuid and setgid bits and removes device nodes, FIFOs and sockets in `root` (what a build can create
/// there is no more, but the host does not rely on the build's copy). Never follows a symlink: nothing can change
/// the tree meanwhile (see `export_image`).
fn sanitize_tree(root: &Path) -> Result<()> {
    walk(root, &mut |path, meta| {
        let kind = meta.file_type();
        if kind.is_block_device() || kind.is_char_device() || kind.is_fifo() || kind.is_socket() {
            fs::remove_file(path).map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        } else if (kind.is_file() || kind.is_dir()) && meta.mode() & 0o6000 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o1777))
                .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
        }
        Ok(())
    })
}

/// An OCI layout must be directories and regular files only: what uploads it reads paths in it.
fn check_plain_tree(root: &Path) -> Result<()> {
    if !fs::symlink_metadata(root).is_ok_and(|m| m.is_dir()) {
        return Err(Error::Stuck(format!("the build wrote no OCI layout at {}", root.display())));
    }
    walk(root, &mut |path, meta| {
        if meta.is_dir() || meta.is_file() {
            Ok(())
        } else {
            Err(Error::Stuck(format!("the OCI layout holds {}, which is neither file nor directory", path.display())))
        }
    })
}

/// Calls `visit` with every entry below `root` (not `root` itself), depth first, by lstat.
fn walk(root: &Path, visit: &mut dyn FnMut(&Path, &fs::Metadata) -> Result<()>) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?.path();
            let meta = fs::symlink_metadata(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            visit(&path, &meta)?;
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(())
}

/// A regular file (not a symlink) of at most `max` bytes, as text.
fn read_plain_file(path: &Path, max: u64) -> Result<String> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() <= max => {
            fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
        }
        Ok(_) => Err(Error::Stuck(format!("{} is not a plain file of at most {max} bytes", path.display()))),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Image names as buildah takes them: `[a-z0-9]` first, then `[a-z0-9._/:-]`, at most 255.
fn validate_tag(tag: &str) -> Result<()> {
    let ok = (1..=255).contains(&tag.len())
        && tag.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._/:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: "tag",
            reason: format!("{tag:?} must be 1 to 255 of [a-z0-9._/:-], alphanumeric first"),
        })
    }
}

/// An OCI layout reference name: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn validate_reference(reference: &str) -> Result<()> {
    let ok = (1..=128).contains(&reference.len())
        && reference.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && reference.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: "layout",
            reason: format!("{reference:?} must be a tag: [A-Za-z0-9._-], at most 128"),
        })
    }
}

fn push_os<const N: usize>(args: &mut Vec<OsString>, items: [&std::ffi::OsStr; N]) {
    args.extend(items.iter().map(OsString::from));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_bwrap_s_report_when_parsed_then_the_child_pid_comes_out() {
        let report = "{\n    \"child-pid\": 4242,\n    \"cgroup-namespace\": 4026532,\n    \"user-namespace\": 1\n}\n";
        assert_eq!(child_pid(report), Some(4242));
        assert_eq!(child_pid("bwrap: Unknown option --x\n"), None);
        assert_eq!(child_pid("{\n    \"child-pid\": 1\n}\n"), None);
    }

    #[test]
    fn given_mountinfo_when_a_path_is_looked_up_then_the_deepest_mount_wins() {
        let mountinfo = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                         30 22 0:26 / /tmp rw shared:2 - tmpfs tmpfs rw\n\
                         31 22 0:27 / /var/lib/x rw shared:3 - overlay overlay rw\n";
        assert_eq!(mount_fs_type(mountinfo, Path::new("/root/.cache/w")).as_deref(), Some("ext4"));
        assert_eq!(mount_fs_type(mountinfo, Path::new("/tmp/b")).as_deref(), Some("tmpfs"));
        assert_eq!(mount_fs_type(mountinfo, Path::new("/var/lib/x/y")).as_deref(), Some("overlay"));
        assert_eq!(mount_fs_type(mountinfo, Path::new("/var/lib/xy")).as_deref(), Some("ext4"));
    }

    #[test]
    fn given_odd_names_when_validated_then_flags_and_paths_are_refused() {
        assert!(validate_tag("localhost/dmcp-build:01hx").is_ok());
        for bad in ["", "-t", "Upper/x", "a b", "x\0"] {
            assert!(validate_tag(bad).is_err(), "{bad:?}");
        }
        assert!(validate_reference("latest").is_ok());
        assert!(validate_reference("../x").is_err());
    }

    #[test]
    fn given_a_driver_when_the_configuration_is_generated_then_it_stays_in_the_store() {
        let [(_, storage), _, (_, registries), _] = config_files("overlay");
        assert!(storage.contains("driver = \"overlay\"") && storage.contains("graphroot = \"/build/graph\""));
        assert!(storage.contains("[storage.options.overlay]\n"), "{storage}");
        assert_eq!(registries, "unqualified-search-registries = []\n");
    }
}
