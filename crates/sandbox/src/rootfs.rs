//! Root filesystem mode: an image's exported root filesystem is the sandbox's `/` (bwrap `--bind <rootfs> /`), so
//! its absolute symlinks resolve inside it, and the host's system directories are not there at all.
//!
//! The tree belongs to the app (uid 65534), except a small scaffold that stays root's (group 65534): the root
//! directory itself and `/etc` (mode 1775: the app creates and edits its own entries there but, sticky, cannot
//! rename or delete root's), and the mount points bwrap mounts over (`/etc/hosts` and the other generated /etc
//! files, `/tmp`, `/proc`, `/dev`). bwrap resolves mount destinations by path, following symlinks, on the host side
//! of its setup; were those entries the app's, a process of the sandbox could swap one for a symlink just before
//! another command starts and have bwrap create files wherever uid 65534 may write on the host (such as other
//! sandboxes' directories).
//!
//! Architecture invariant: nothing here follows a symlink inside the image on the host. Paths below a scaffold
//! entry are only handed to `find`/`chown -R -h`, whose traversal opens each directory relative to its parent
//! with O_NOFOLLOW, so an app renaming directories meanwhile can at worst make its own start fail.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path};

use crate::{APP_UID, ETC_FILES, Error, Result};

/// PATH when the caller's environment has none: the one Docker gives containers.
pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Top-level directories of the scaffold: bwrap mounts over the last three, and /etc holds mount points.
const SCAFFOLD_DIRS: [&str; 4] = ["etc", "tmp", "proc", "dev"];
/// Mode of the root directory and /etc: the app's group writes, the sticky bit keeps root's entries in place.
const SHARED_DIR_MODE: u32 = 0o1775;
/// How often preparing one entry is retried while something keeps replacing it.
const ATTEMPTS: usize = 8;

/// The /etc files bound over the image's: the per-sandbox hosts file and the shared generated ones.
fn etc_mounts() -> impl Iterator<Item = &'static str> {
    std::iter::once("hosts").chain(ETC_FILES)
}

/// Checks what [`crate::Sandbox::spawn_in_root`] gets; returns the working directory to use, absolute.
pub(crate) fn validate(rootfs: &Path, argv: &[String], cwd: &str) -> Result<String> {
    let invalid = |what, reason: String| Err(Error::Invalid { what, reason });
    if argv.is_empty() || argv[0].is_empty() {
        return invalid(
            "argv",
            "is empty: pass the program to run and its arguments (the image's entrypoint + cmd)".into(),
        );
    }
    if let Some(arg) = argv.iter().find(|a| a.contains('\0')) {
        return invalid("argv", format!("{arg:?} contains a NUL byte"));
    }
    if !rootfs.is_absolute() || rootfs.components().any(|c| c == Component::ParentDir) {
        return invalid("rootfs", format!("{} must be an absolute path without `..`", rootfs.display()));
    }
    let Some(parent) = rootfs.parent() else {
        return invalid("rootfs", "is the host's own root; pass the directory an image was exported to".into());
    };
    match fs::symlink_metadata(rootfs) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return invalid("rootfs", format!("{} is not a directory (a symlink is not followed)", rootfs.display()));
        }
        Err(e) => return Err(Error::io(format!("reading rootfs {}", rootfs.display()), e)),
    }
    // bwrap opens the rootfs as uid 65534; the rootfs itself is made searchable by `prepare`.
    crate::reachable_by_app_user(parent, "rootfs")?;
    if cwd.contains('\0') || Path::new(cwd).components().any(|c| c == Component::ParentDir) {
        return invalid("cwd", format!("{cwd:?} must be a path inside the image without `..`"));
    }
    Ok(match cwd {
        "" => "/".to_owned(),
        absolute if absolute.starts_with('/') => absolute.to_owned(),
        relative => format!("/{relative}"),
    })
}

/// Makes the scaffold root's (see the module docs): creates missing mount points and replaces whatever the image
/// has in their place that is not a plain directory or file (a symlink above all). Each entry's parent is made
/// root's first, so once an entry is root's the app can no longer swap it, and checking it is enough.
pub(crate) fn prepare(rootfs: &Path) -> Result<()> {
    // The caller's own path (its parent is not the app's): only ownership and mode change.
    let meta = fs::symlink_metadata(rootfs).map_err(|e| Error::io(format!("reading {}", rootfs.display()), e))?;
    own(rootfs, &meta, SHARED_DIR_MODE)?;
    for dir in SCAFFOLD_DIRS {
        let mode = if dir == "etc" { SHARED_DIR_MODE } else { 0o755 };
        pin(&rootfs.join(dir), Kind::Dir, mode)?;
    }
    for file in etc_mounts() {
        pin(&rootfs.join("etc").join(file), Kind::File, 0o644)?;
    }
    Ok(())
}

/// The launcher's script for root filesystem mode: joins the cgroups (the arguments up to `--`), hands the
/// image's tree but the scaffold to uid 65534 without following symlinks (the argument after `--` is the rootfs),
/// then runs the rest. Exit 125 if either step fails (their stderr says why).
pub(crate) fn launcher() -> String {
    let skip = |names: &mut dyn Iterator<Item = &str>| names.map(|n| format!("! -name '{n}' ")).collect::<String>();
    let chown = format!("-exec chown -R -h {APP_UID}:{APP_UID} -- {{}} +");
    format!(
        "while [ \"$1\" != -- ]; do echo $$ > \"$1\" || exit 125; shift; done; shift; root=$1; shift; \
         find \"$root\" -mindepth 1 -maxdepth 1 {top}{chown} && \
         find \"$root/etc\" -mindepth 1 -maxdepth 1 {etc}{chown} || exit 125; \
         \"$@\"; exit $?",
        top = skip(&mut SCAFFOLD_DIRS.into_iter()),
        etc = skip(&mut etc_mounts()),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

/// Makes `path` a root-owned (group 65534) entry of `kind` with `mode`, whatever is there now.
fn pin(path: &Path, kind: Kind, mode: u32) -> Result<()> {
    let io = |what: &str, e: io::Error| Error::io(format!("{what} {}", path.display()), e);
    for _ in 0..ATTEMPTS {
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let created = match kind {
                    Kind::Dir => fs::create_dir(path),
                    // O_EXCL: never opens a symlink planted meanwhile.
                    Kind::File => fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map(drop),
                };
                match created {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io("creating", e)),
                    _ => continue,
                }
            }
            Err(e) => return Err(io("reading", e)),
        };
        let right_kind = match kind {
            Kind::Dir => meta.is_dir(),
            // A second name elsewhere in the tree would hand the file back to the app with the rest.
            Kind::File => meta.is_file() && meta.nlink() == 1,
        };
        if !right_kind {
            // remove_dir_all does not follow symlinks below it.
            let removed = if meta.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
            match removed {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io("removing", e)),
                _ => continue,
            }
        }
        if (meta.uid(), meta.gid()) != (0, APP_UID) {
            // Whatever is at `path` now becomes root's (lchown: a symlink itself, never its target); the next
            // round checks what that was.
            match std::os::unix::fs::lchown(path, Some(0), Some(APP_UID)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io("chown", e)),
                _ => continue,
            }
        }
        // Root's, of the right kind, in a directory of root's: it stays this entry, so a chmod by path is safe.
        return own(path, &meta, mode);
    }
    Err(Error::Stuck(format!(
        "{} kept changing while it was made a mount point (a process of the sandbox replacing it?)",
        path.display()
    )))
}

/// lchown to root:65534 and chmod, each only when needed.
fn own(path: &Path, meta: &fs::Metadata, mode: u32) -> Result<()> {
    if (meta.uid(), meta.gid()) != (0, APP_UID) {
        std::os::unix::fs::lchown(path, Some(0), Some(APP_UID))
            .map_err(|e| Error::io(format!("chown {}", path.display()), e))?;
    }
    if meta.mode() & 0o7777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launcher_leaves_the_scaffold_to_root() {
        let script = launcher();
        for skipped in ["! -name 'etc'", "! -name 'proc'", "! -name 'hosts'", "! -name 'resolv.conf'"] {
            assert!(script.contains(skipped), "{skipped} missing from {script}");
        }
        assert_eq!(script.matches("-exec chown -R -h 65534:65534 -- {} +").count(), 2, "{script}");
    }

    #[test]
    fn working_directories_are_absolute_and_stay_inside() {
        let argv = ["/bin/app".to_owned()];
        let root = std::env::temp_dir();
        assert_eq!(validate(&root, &argv, "").unwrap(), "/");
        assert_eq!(validate(&root, &argv, "srv/app").unwrap(), "/srv/app");
        assert_eq!(validate(&root, &argv, "/srv").unwrap(), "/srv");
        for bad in ["/srv/../..", "..", "a/../b"] {
            assert!(matches!(validate(&root, &argv, bad), Err(Error::Invalid { what: "cwd", .. })), "{bad}");
        }
        assert!(matches!(validate(&root, &[], "/"), Err(Error::Invalid { what: "argv", .. })));
        assert!(matches!(validate(Path::new("rel"), &argv, "/"), Err(Error::Invalid { what: "rootfs", .. })));
        assert!(matches!(validate(Path::new("/"), &argv, "/"), Err(Error::Invalid { what: "rootfs", .. })));
        assert!(matches!(validate(Path::new("/tmp/../etc"), &argv, "/"), Err(Error::Invalid { what: "rootfs", .. })));
    }
}
