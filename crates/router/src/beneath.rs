//! Opening paths beneath a directory handle, so that what a tenant's build left behind cannot lead the router
//! out of that directory: not `..`, not a symlink (absolute, relative, or a chain of them), not a magic link of
//! `/proc`, and not a rename racing the lookup.
//!
//! The kernel does it in one call with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` (Linux 5.6). Where
//! `openat2` is missing (older kernels, or a seccomp filter that answers `ENOSYS`), `walk` does the same one
//! component at a time with `openat(O_NOFOLLOW)`: it reads each symlink it meets and resolves the target itself
//! against the directories it holds open, so `..` can never climb above the starting directory and an absolute
//! target is refused. Both ways give the same answers (tested on the same cases), so a site behaves alike on
//! every host. String checks of canonical paths are not used: a path checked is not the path opened.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Linux's limit on symlinks followed in one lookup; `walk` keeps to it too.
const MAX_LINKS: usize = 40;
/// `openat2` answers `EAGAIN` when a rename raced a `RESOLVE_BENEATH` lookup; it is retried this often, then the
/// walk (which holds its directories open and needs no retry) takes over.
const RACE_RETRIES: usize = 4;

/// False once `openat2` answered `ENOSYS`: from then on every lookup walks.
static OPENAT2: AtomicBool = AtomicBool::new(true);

/// What to do with a symlink met on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Links {
    /// Every symlink is refused (`ELOOP`): for paths that must be real directories, such as a site's root.
    Refuse,
    /// A symlink is followed while it stays beneath the starting directory; one that leaves it, even on the way
    /// back in, is refused (`EXDEV`), and so is every absolute or magic link.
    Beneath,
}

/// Opens the directory at `path` itself (its last component must not be a symlink) as the handle later lookups
/// start from. The components before it are the operator's (the data directory) and are followed.
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?)
}

/// Opens `path` beneath `dir` (read-only, close-on-exec, plus `flags`); `path` empty or `.` opens `dir` again.
pub(crate) fn open(dir: BorrowedFd<'_>, path: &Path, links: Links, flags: OFlags) -> io::Result<OwnedFd> {
    if OPENAT2.load(Ordering::Relaxed) {
        let mut resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        if links == Links::Refuse {
            resolve |= ResolveFlags::NO_SYMLINKS;
        }
        let path = if path.as_os_str().is_empty() { Path::new(".") } else { path };
        for _ in 0..RACE_RETRIES {
            match rustix::fs::openat2(dir, path, flags | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty(), resolve) {
                Err(Errno::AGAIN) => continue,
                Err(Errno::NOSYS) => {
                    tracing::info!("openat2 is unavailable: static files are opened one path component at a time");
                    OPENAT2.store(false, Ordering::Relaxed);
                    break;
                }
                result => return Ok(result?),
            }
        }
    }
    walk(dir, path, links, flags)
}

/// `open` without `openat2`: one `openat(O_NOFOLLOW)` per component, from directory handles this function holds.
pub(crate) fn walk(dir: BorrowedFd<'_>, path: &Path, links: Links, flags: OFlags) -> io::Result<OwnedFd> {
    // Names still to resolve, the next one last.
    let mut pending = Vec::new();
    push_components(&mut pending, path)?;
    // The directories entered below `dir`, innermost last: `..` leaves one, and never `dir` itself.
    let mut entered: Vec<OwnedFd> = Vec::new();
    let mut followed = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            entered.pop().ok_or(Errno::XDEV)?;
            continue;
        }
        let here = entered.last().map_or(dir, AsFd::as_fd);
        let last = pending.is_empty();
        let oflags = if last { flags } else { OFlags::DIRECTORY };
        match rustix::fs::openat(
            here,
            &name,
            oflags | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(fd) if last => return Ok(fd),
            Ok(fd) => entered.push(fd),
            // What `O_NOFOLLOW` answers for a symlink (`ENOTDIR` when `O_DIRECTORY` is checked first).
            Err(error @ (Errno::LOOP | Errno::NOTDIR)) => {
                let Ok(target) = rustix::fs::readlinkat(here, &name, Vec::new()) else { return Err(error.into()) };
                followed += 1;
                if links == Links::Refuse || followed > MAX_LINKS {
                    return Err(Errno::LOOP.into());
                }
                let target = OsString::from_vec(target.into_bytes());
                if target.is_empty() {
                    return Err(Errno::NOENT.into());
                }
                push_components(&mut pending, Path::new(&target))?;
            }
            Err(error) => return Err(error.into()),
        }
    }
    // Nothing (left) to resolve: the directory the walk ended in.
    let here = entered.last().map_or(dir, AsFd::as_fd);
    Ok(rustix::fs::openat(here, ".", flags | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Puts `path`'s components on `pending` so that its first one is popped next; an absolute path leaves the
/// starting directory (`EXDEV`, as `RESOLVE_BENEATH` answers).
fn push_components(pending: &mut Vec<OsString>, path: &Path) -> io::Result<()> {
    for component in path.components().rev() {
        match component {
            Component::Normal(name) => pending.push(name.to_owned()),
            Component::ParentDir => pending.push("..".into()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(Errno::XDEV.into()),
        }
    }
    Ok(())
}

/// Whether `error` means "there is no such file beneath the directory" (missing, not a directory, or a way out
/// that was refused) rather than a failure of the host.
pub(crate) fn is_refusal(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
        || matches!(
            Errno::from_io_error(error),
            Some(
                Errno::NOENT
                    | Errno::NOTDIR
                    | Errno::LOOP
                    | Errno::XDEV
                    | Errno::NAMETOOLONG
                    | Errno::NXIO
                    | Errno::NODEV
                    | Errno::ACCESS
                    | Errno::PERM
            )
        )
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, symlink};
    use std::path::PathBuf;

    use super::*;

    /// A scratch tree: `outside/secret`, and the directory lookups start from, `site/`.
    struct Tree(PathBuf);

    impl Tree {
        fn new(name: &str) -> Tree {
            let root = std::env::temp_dir().join(format!("router-beneath-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("site/sub/deeper")).unwrap();
            std::fs::create_dir_all(root.join("outside")).unwrap();
            std::fs::write(root.join("outside/secret"), "secret").unwrap();
            std::fs::write(root.join("site/index.html"), "index").unwrap();
            std::fs::write(root.join("site/sub/page.html"), "page").unwrap();
            for (target, link) in [
                // Inside: followed.
                ("sub/page.html", "site/alias"),
                ("../index.html", "site/sub/up"),
                ("sub", "site/dir-alias"),
                ("alias", "site/alias-of-alias"),
                ("deeper/../page.html", "site/sub/around"),
                // Leading out: refused.
                ("/etc/hostname", "site/absolute"),
                ("../outside/secret", "site/relative-out"),
                ("/", "site/slash"),
                ("../../outside", "site/sub/dir-out"),
                ("hop", "site/chain"),
                ("sub/deeper/hop", "site/hop"),
                ("../../../outside/secret", "site/sub/deeper/hop"),
                ("/proc/self/root", "site/magic"),
                ("../site/index.html", "site/out-and-back"),
                ("loop-b", "site/loop-a"),
                ("loop-a", "site/loop-b"),
            ] {
                symlink(target, root.join(link)).unwrap();
            }
            Tree(root)
        }

        fn site(&self) -> OwnedFd {
            open_dir(&self.0.join("site")).unwrap()
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The contents read through `open`, or the error's errno.
    type Lookup = fn(BorrowedFd<'_>, &Path, Links, OFlags) -> io::Result<OwnedFd>;

    fn read(lookup: Lookup, dir: BorrowedFd<'_>, path: &str, links: Links) -> Result<String, Errno> {
        let fd = lookup(dir, Path::new(path), links, OFlags::NONBLOCK)
            .map_err(|e| Errno::from_io_error(&e).expect("an errno"))?;
        let mut file = std::fs::File::from(fd);
        if file.metadata().unwrap().is_dir() {
            return Ok("<dir>".into());
        }
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        Ok(text)
    }

    fn cases() -> Vec<(&'static str, Links, Result<&'static str, Errno>)> {
        use Links::{Beneath, Refuse};
        vec![
            ("", Beneath, Ok("<dir>")),
            (".", Beneath, Ok("<dir>")),
            ("index.html", Beneath, Ok("index")),
            ("sub/page.html", Beneath, Ok("page")),
            ("sub/deeper/../page.html", Beneath, Ok("page")),
            ("alias", Beneath, Ok("page")),
            ("sub/up", Beneath, Ok("index")),
            ("dir-alias/page.html", Beneath, Ok("page")),
            ("alias-of-alias", Beneath, Ok("page")),
            ("sub/around", Beneath, Ok("page")),
            ("missing", Beneath, Err(Errno::NOENT)),
            ("index.html/x", Beneath, Err(Errno::NOTDIR)),
            ("..", Beneath, Err(Errno::XDEV)),
            ("../outside/secret", Beneath, Err(Errno::XDEV)),
            ("sub/../../outside/secret", Beneath, Err(Errno::XDEV)),
            ("/etc/hostname", Beneath, Err(Errno::XDEV)),
            ("absolute", Beneath, Err(Errno::XDEV)),
            ("relative-out", Beneath, Err(Errno::XDEV)),
            ("slash/etc/hostname", Beneath, Err(Errno::XDEV)),
            ("sub/dir-out/secret", Beneath, Err(Errno::XDEV)),
            ("chain", Beneath, Err(Errno::XDEV)),
            ("magic/etc/hostname", Beneath, Err(Errno::XDEV)),
            ("out-and-back", Beneath, Err(Errno::XDEV)),
            ("loop-a", Beneath, Err(Errno::LOOP)),
            // Refuse: real directories and files only.
            ("sub", Refuse, Ok("<dir>")),
            ("sub/deeper", Refuse, Ok("<dir>")),
            ("", Refuse, Ok("<dir>")),
            ("dir-alias", Refuse, Err(Errno::LOOP)),
            ("dir-alias/page.html", Refuse, Err(Errno::LOOP)),
            ("alias", Refuse, Err(Errno::LOOP)),
            ("slash", Refuse, Err(Errno::LOOP)),
            ("magic", Refuse, Err(Errno::LOOP)),
        ]
    }

    #[test]
    fn given_a_tree_of_links_when_opened_beneath_then_only_what_stays_inside_opens() {
        let tree = Tree::new("openat2");
        let site = tree.site();
        for (path, links, want) in cases() {
            assert_eq!(read(open, site.as_fd(), path, links), want.map(str::to_owned), "open {path} ({links:?})");
        }
    }

    #[test]
    fn given_no_openat2_when_walking_then_the_answers_are_the_same() {
        let tree = Tree::new("walk");
        let site = tree.site();
        for (path, links, want) in cases() {
            assert_eq!(read(walk, site.as_fd(), path, links), want.map(str::to_owned), "walk {path} ({links:?})");
        }
    }

    #[test]
    fn given_a_directory_that_is_a_symlink_when_opened_as_the_start_then_refused() {
        let tree = Tree::new("start");
        symlink(tree.0.join("outside"), tree.0.join("linked")).unwrap();
        let error = open_dir(&tree.0.join("linked")).unwrap_err();
        // Linux checks `O_DIRECTORY` before `O_NOFOLLOW`: a symlink is "not a directory" here.
        assert!(matches!(Errno::from_io_error(&error), Some(Errno::NOTDIR | Errno::LOOP)), "{error}");
        assert!(is_refusal(&error));
        let error = open_dir(&tree.0.join("outside/secret")).unwrap_err();
        assert_eq!(Errno::from_io_error(&error), Some(Errno::NOTDIR));
    }

    #[test]
    fn given_a_fifo_when_opened_then_it_does_not_block() {
        let tree = Tree::new("fifo");
        let site = tree.site();
        rustix::fs::mknodat(site.as_fd(), "pipe", rustix::fs::FileType::Fifo, Mode::RUSR, 0).unwrap();
        for lookup in [open as Lookup, walk] {
            let fd = lookup(site.as_fd(), Path::new("pipe"), Links::Beneath, OFlags::NONBLOCK).unwrap();
            assert!(std::fs::File::from(fd).metadata().unwrap().file_type().is_fifo());
        }
    }
}
