//! Handing a directory tree to the app user (`chown -R 65534:65534`) while the tree's tenant may be running.
//!
//! A volume is shared by every deployment of its service: while one sandbox is being created, an app of another
//! one can rename entries of the volume as fast as it likes. A walk by path (`lstat` an entry, later `lchown`
//! or list `<dir>/<entry>/...`) resolves every component again at each step, so a directory swapped for a symlink
//! between two steps sends root's `chown` wherever the link points (the host's `/`).
//!
//! Architecture invariant: no path is resolved from the tree's root after the start. Every directory is opened
//! relative to its parent's open descriptor with `O_NOFOLLOW | O_DIRECTORY`, its entries are read from that
//! descriptor, and each entry is changed through it (`fchown` on the opened directory, `fchownat` with
//! `AT_SYMLINK_NOFOLLOW` on anything else). An entry swapped meanwhile is therefore either the directory that is
//! held open (wherever it was renamed to: renames cannot leave the file system, and the tenant can only move it
//! among its own directories) or refused (`ELOOP`/`ENOTDIR`: a symlink is changed itself, never followed).

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, OFlags, Stat, Uid};

use crate::{Error, Result};

/// How deep the walk goes: one descriptor stays open per level. Far beyond real trees (node_modules nests a few
/// dozen levels), far below the usual 1024 open files.
pub(crate) const MAX_DEPTH: usize = 256;

/// Flags every directory of the walk is opened with: never through a symlink, never as anything but a directory.
const DIR_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC).union(OFlags::NOCTTY);

/// Gives `root` and everything below it to `uid:gid` without ever following a symlink, also while processes
/// rename entries of the tree meanwhile. Entries that vanish during the walk are skipped. `what` names the tree in
/// errors (`app_dir`, `volumes`).
pub(crate) fn chown_tree(root: &Path, uid: u32, gid: u32, what: &'static str) -> Result<()> {
    walk(root, uid, gid, what, &mut |_, _| {})
}

/// Points of the walk where a racing process's renames matter; the tests act there (see [`walk`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// A directory's entries were read; none was changed yet.
    Listed,
    /// An entry was found to be a directory and is about to be opened.
    FoundDirectory,
}

/// One directory being walked: its descriptor, the entries still to do and its path (for messages and the hook).
struct Frame {
    dir: OwnedFd,
    pending: Vec<CString>,
    path: PathBuf,
}

/// [`chown_tree`] calling `hook(step, path)` at each [`Step`]: the tests rename entries there to replay a racing
/// tenant deterministically.
pub(crate) fn walk(
    root: &Path,
    uid: u32,
    gid: u32,
    what: &'static str,
    hook: &mut dyn FnMut(Step, &Path),
) -> Result<()> {
    let owner = (Uid::from_raw(uid), Gid::from_raw(gid));
    let io = |step: &str, path: &Path, e: rustix::io::Errno| {
        Error::io(format!("{step} {}", path.display()), io::Error::from(e))
    };
    let dir = rustix::fs::openat(CWD, root, DIR_FLAGS, Mode::empty()).map_err(|e| io("opening", root, e))?;
    own(&dir, owner).map_err(|e| io("chown", root, e))?;
    let mut stack = vec![open_frame(dir, root.to_path_buf(), hook).map_err(|e| io("reading", root, e))?];
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.pending.pop() else {
            stack.pop();
            continue;
        };
        let path = frame.path.join(OsStr::from_bytes(name.as_bytes()));
        let found = || hook(Step::FoundDirectory, &path);
        let Some(child) = visit(&frame.dir, &name, owner, found).map_err(|e| io("chown", &path, e))? else {
            continue;
        };
        if stack.len() >= MAX_DEPTH {
            return Err(Error::Invalid {
                what,
                reason: format!(
                    "{} nests directories deeper than {MAX_DEPTH} levels; flatten the tree below {}",
                    root.display(),
                    path.display()
                ),
            });
        }
        stack.push(open_frame(child, path.clone(), hook).map_err(|e| io("reading", &path, e))?);
    }
    Ok(())
}

/// Reads every entry of an opened directory (but `.` and `..`), then calls the hook.
fn open_frame(dir: OwnedFd, path: PathBuf, hook: &mut dyn FnMut(Step, &Path)) -> rustix::io::Result<Frame> {
    let mut pending = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            pending.push(name.to_owned());
        }
    }
    hook(Step::Listed, &path);
    Ok(Frame { dir, pending, path })
}

/// Changes the entry `name` of `dir`; returns it opened when it is a directory to descend into. Whatever the entry
/// is by the time each call reaches it, no call follows a symlink: a directory swapped for a link fails to open
/// (`ELOOP`/`ENOTDIR`) and the link itself is changed instead; a vanished entry is skipped.
fn visit(
    dir: &OwnedFd,
    name: &CStr,
    owner: (Uid, Gid),
    found_directory: impl FnOnce(),
) -> rustix::io::Result<Option<OwnedFd>> {
    use rustix::io::Errno;
    let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        found_directory();
        match rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
            Ok(child) => {
                own(&child, owner)?;
                return Ok(Some(child));
            }
            Err(Errno::NOENT) => return Ok(None),
            // Swapped for something else since the stat: change that, not what it may point at.
            Err(Errno::LOOP | Errno::NOTDIR) => {}
            Err(e) => return Err(e),
        }
    } else if !needs_chown(&stat, owner) {
        return Ok(None);
    }
    match rustix::fs::chownat(dir, name, Some(owner.0), Some(owner.1), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(()) | Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `fchown` of an open descriptor, when its owner differs.
fn own(fd: &impl AsFd, owner: (Uid, Gid)) -> rustix::io::Result<()> {
    if needs_chown(&rustix::fs::fstat(fd)?, owner) {
        rustix::fs::fchown(fd, Some(owner.0), Some(owner.1))?;
    }
    Ok(())
}

fn needs_chown(stat: &Stat, (uid, gid): (Uid, Gid)) -> bool {
    stat.st_uid != uid.as_raw() || stat.st_gid != gid.as_raw()
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt as _, symlink};

    use super::*;

    const APP: u32 = crate::APP_UID;

    /// A scratch directory with `tree/` (to be handed over) and `host/` (root's, where links point), both root's.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("dmcp-chown-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("tree")).unwrap();
            fs::create_dir_all(dir.join("host/b")).unwrap();
            fs::write(dir.join("host/file"), "host").unwrap();
            fs::write(dir.join("host/b/file"), "host").unwrap();
            Scratch(dir)
        }

        fn tree(&self) -> PathBuf {
            self.0.join("tree")
        }

        fn host(&self) -> PathBuf {
            self.0.join("host")
        }

        /// Owners of the host side: never anything but root's.
        fn assert_host_untouched(&self) {
            for path in ["", "file", "b", "b/file"] {
                let meta = fs::symlink_metadata(self.host().join(path)).unwrap();
                assert_eq!((meta.uid(), meta.gid()), (0, 0), "host/{path} changed owner");
            }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn owner(path: &Path) -> (u32, u32) {
        let meta = fs::symlink_metadata(path).unwrap();
        (meta.uid(), meta.gid())
    }

    #[test]
    fn given_a_tree_with_links_to_the_host_when_handed_over_then_the_links_change_and_their_targets_do_not() {
        let s = Scratch::new("links");
        let tree = s.tree();
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/file"), "app").unwrap();
        symlink(s.host(), tree.join("dirlink")).unwrap();
        symlink(s.host().join("file"), tree.join("a/filelink")).unwrap();

        chown_tree(&tree, APP, APP, "app_dir").unwrap();

        for path in ["", "a", "a/b", "a/b/file", "dirlink", "a/filelink"] {
            assert_eq!(owner(&tree.join(path)), (APP, APP), "tree/{path}");
        }
        s.assert_host_untouched();
    }

    #[test]
    fn given_a_listed_directory_swapped_for_a_link_when_handed_over_then_the_link_is_not_followed() {
        let s = Scratch::new("swap");
        let tree = s.tree();
        fs::create_dir_all(tree.join("x/b")).unwrap();
        fs::write(tree.join("x/file"), "app").unwrap();
        let (host, x) = (s.host(), tree.join("x"));
        // Once x was seen to be a directory, it becomes a link to the host.
        let mut swap = |step: Step, path: &Path| {
            if (step, path) == (Step::FoundDirectory, &x) {
                fs::rename(&x, x.with_file_name("x.real")).unwrap();
                symlink(&host, &x).unwrap();
            }
        };

        walk(&tree, APP, APP, "volumes", &mut swap).unwrap();

        s.assert_host_untouched();
        assert_eq!(owner(&tree.join("x")), (APP, APP), "the link itself is the app's");
    }

    #[test]
    fn given_an_open_directory_replaced_by_a_link_when_handed_over_then_the_walk_stays_in_the_real_one() {
        let s = Scratch::new("moved");
        let tree = s.tree();
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/file"), "app").unwrap();
        fs::write(tree.join("a/b/file"), "app").unwrap();
        let (host, a) = (s.host(), tree.join("a"));
        // Once a/ is open and listed, its path leads to the host (which has the same names): a walk re-resolving
        // `tree/a/b` or `tree/a/file` from the root would land there.
        let mut swap = |step: Step, path: &Path| {
            if (step, path) == (Step::Listed, &a) {
                fs::rename(&a, a.with_file_name("a.moved")).unwrap();
                symlink(&host, &a).unwrap();
            }
        };

        walk(&tree, APP, APP, "volumes", &mut swap).unwrap();

        s.assert_host_untouched();
        for path in ["a.moved", "a.moved/file", "a.moved/b", "a.moved/b/file"] {
            assert_eq!(owner(&tree.join(path)), (APP, APP), "tree/{path}: the held directory was not walked");
        }
    }

    #[test]
    fn given_a_tree_deeper_than_the_limit_when_handed_over_then_it_is_refused_with_the_reason() {
        let s = Scratch::new("deep");
        let deep: PathBuf = std::iter::repeat_n("d", MAX_DEPTH + 1).collect();
        fs::create_dir_all(s.tree().join(&deep)).unwrap();

        let refused = chown_tree(&s.tree(), APP, APP, "app_dir").unwrap_err();

        assert!(matches!(&refused, Error::Invalid { what: "app_dir", reason } if reason.contains("deeper than")));
    }

    #[test]
    fn given_a_root_that_is_a_link_when_handed_over_then_it_is_refused() {
        let s = Scratch::new("rootlink");
        let link = s.0.join("link");
        symlink(s.host(), &link).unwrap();

        assert!(chown_tree(&link, APP, APP, "app_dir").is_err());
        s.assert_host_untouched();
    }
}
