//! Checks of a static site's build output, before it becomes an artifact the router serves.
//!
//! The router serves a static site from `<artifact>/<static root>` and opens every file beneath it without leaving
//! it (issue 14): a root that is a symlink serves nothing, whatever it points at. These checks turn that into a
//! build failure the agent can act on, instead of a site that answers 404 everywhere. Symlinks *inside* the root
//! that lead out do not fail the build (a site may carry a stray one, say from a package's files); they are listed
//! as a warning for the build log, and the router answers 404 for them.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a static build's output cannot be served; each message says what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum StaticOutputError {
    #[error(
        "the static output `{root}` is not a directory inside the build: name it relative to the repository root, \
         without `..` (e.g. `dist`, `public`, `.`)"
    )]
    NotInside { root: String },
    #[error(
        "the build did not create the static output `{root}`: after the build, `{root}` must be a directory holding \
         the site's files (index.html first); check the build command and where the framework writes its output"
    )]
    Missing { root: String },
    #[error(
        "the static output `{root}` {}is a symlink (to `{target}`): a site must be a directory of files inside the \
         build; make the build write real files into `{root}`",
        passing(root, path)
    )]
    Symlink { root: String, path: String, target: String },
    #[error(
        "the static output `{root}` {}is not a directory: a site must be a directory of files inside the build; make \
         the build write the site's files into a directory `{root}`",
        passing(root, path)
    )]
    NotADirectory { root: String, path: String },
    #[error("the static output `{root}` could not be checked: {message}")]
    Unreadable { root: String, message: String },
}

/// "passes through `build`, which " when the component at fault is not the root itself.
fn passing(root: &str, path: &str) -> String {
    if root == path { String::new() } else { format!("passes through `{path}`, which ") }
}

/// Checks that the static root `root` of the build output `output` is a real directory of the build: a relative
/// path without `..`, and each of its components (`build` and `build/client` for `build/client`) a directory, not
/// a symlink or a file. `.` (the whole output) always passes.
///
/// Runs after the build's last step, when no sandbox of the build is left to change the tree under it.
pub(crate) fn check_static_root(output: &Path, root: &str) -> Result<(), StaticOutputError> {
    let mut path = output.to_path_buf();
    let mut inside = PathBuf::new();
    for component in Path::new(root).components() {
        match component {
            Component::Normal(name) => {
                path.push(name);
                inside.push(name);
            }
            Component::CurDir => continue,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(StaticOutputError::NotInside { root: root.to_owned() });
            }
        }
        let shown = inside.to_string_lossy().into_owned();
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StaticOutputError::Missing { root: root.to_owned() });
            }
            Err(e) => return Err(StaticOutputError::Unreadable { root: root.to_owned(), message: e.to_string() }),
        };
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
            return Err(StaticOutputError::Symlink { root: root.to_owned(), path: shown, target });
        }
        if !meta.is_dir() {
            return Err(StaticOutputError::NotADirectory { root: root.to_owned(), path: shown });
        }
    }
    Ok(())
}

/// A symlink inside a static site that leads out of it: the router answers 404 for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkOut {
    /// The link, relative to the site's root.
    pub link: String,
    pub target: String,
}

impl std::fmt::Display for LinkOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` -> `{}`", self.link, self.target)
    }
}

/// Up to `limit` symlinks under `site` (a checked static root) whose target leaves the site: absolute targets, and
/// relative ones whose `..` climb above the site's root at any point (as the router judges them, even when they
/// come back in). Links are not followed; unreadable directories are skipped. For a warning in the build log:
/// "these paths will answer 404".
pub(crate) fn links_out_of(site: &Path, limit: usize) -> Vec<LinkOut> {
    let mut found = Vec::new();
    // Directories to read, as (path on disk, path inside the site).
    let mut dirs = vec![(site.to_path_buf(), PathBuf::new())];
    'walk: while let Some((dir, inside)) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(file_type) = entry.file_type() else { continue };
            let relative = inside.join(entry.file_name());
            if file_type.is_dir() {
                dirs.push((entry.path(), relative));
            } else if file_type.is_symlink() {
                let Ok(target) = fs::read_link(entry.path()) else { continue };
                if leaves(&inside, &target) {
                    if found.len() == limit {
                        break 'walk;
                    }
                    found.push(LinkOut {
                        link: relative.to_string_lossy().into_owned(),
                        target: target.to_string_lossy().into_owned(),
                    });
                }
            }
        }
    }
    found.sort_by(|a, b| a.link.cmp(&b.link));
    found
}

/// Whether a link in the site directory `dir` (relative to the site's root) pointing at `target` leaves the site.
fn leaves(dir: &Path, target: &Path) -> bool {
    let mut depth = dir.components().count();
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return true,
            },
            Component::RootDir | Component::Prefix(_) => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A build output directory, removed when dropped.
    struct Output(PathBuf);

    impl Output {
        fn new() -> Output {
            let dir = std::env::temp_dir().join(format!("dmcp-output-{}", ulid::Ulid::generate()));
            fs::create_dir_all(&dir).unwrap();
            Output(dir)
        }

        fn dir(&self, relative: &str) -> &Output {
            fs::create_dir_all(self.0.join(relative)).unwrap();
            self
        }

        fn file(&self, relative: &str) -> &Output {
            let path = self.0.join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "x").unwrap();
            self
        }

        fn link(&self, target: &str, relative: &str) -> &Output {
            let path = self.0.join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            symlink(target, path).unwrap();
            self
        }
    }

    impl Drop for Output {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn given_real_directories_when_checked_then_the_root_passes() {
        let output = Output::new();
        output.file("index.html").file("dist/index.html").file("build/client/index.html").dir(".output/public");
        for root in [".", "", "dist", "./dist", "dist/", "build/client", ".output/public"] {
            assert_eq!(check_static_root(&output.0, root), Ok(()), "{root}");
        }
    }

    #[test]
    fn given_a_root_that_is_a_symlink_when_checked_then_the_build_fails_naming_the_link() {
        let output = Output::new();
        output.link("/", "dist").dir("site").link("site", "public");
        let error = check_static_root(&output.0, "dist").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the static output `dist` is a symlink (to `/`): a site must be a directory of files inside the build; \
             make the build write real files into `dist`"
        );
        // Even a link that stays inside the build: the router refuses every symlink on the way to the root.
        assert!(matches!(check_static_root(&output.0, "public"), Err(StaticOutputError::Symlink { .. })));
    }

    #[test]
    fn given_a_root_below_a_symlink_when_checked_then_the_build_fails_naming_the_component() {
        let output = Output::new();
        output.link("/usr", "build");
        let error = check_static_root(&output.0, "build/share").unwrap_err();
        assert_eq!(
            error,
            StaticOutputError::Symlink { root: "build/share".into(), path: "build".into(), target: "/usr".into() }
        );
        assert!(
            error
                .to_string()
                .starts_with("the static output `build/share` passes through `build`, which is a symlink (to `/usr`)"),
            "{error}"
        );
    }

    #[test]
    fn given_a_root_that_is_a_file_when_checked_then_the_build_fails() {
        let output = Output::new();
        output.file("dist").file("out/index.html");
        assert_eq!(
            check_static_root(&output.0, "dist"),
            Err(StaticOutputError::NotADirectory { root: "dist".into(), path: "dist".into() })
        );
        assert_eq!(
            check_static_root(&output.0, "out/index.html/x"),
            Err(StaticOutputError::NotADirectory { root: "out/index.html/x".into(), path: "out/index.html".into() })
        );
    }

    #[test]
    fn given_a_missing_root_when_checked_then_the_build_fails_saying_what_to_create() {
        let output = Output::new();
        let error = check_static_root(&output.0, "dist").unwrap_err();
        assert_eq!(error, StaticOutputError::Missing { root: "dist".into() });
        assert!(error.to_string().contains("the build did not create the static output `dist`"), "{error}");
    }

    #[test]
    fn given_a_root_outside_the_output_when_checked_then_the_build_fails() {
        let output = Output::new();
        output.dir("dist");
        for root in ["..", "../dist", "dist/../..", "dist/..", "/etc", "/"] {
            assert_eq!(
                check_static_root(&output.0, root),
                Err(StaticOutputError::NotInside { root: root.into() }),
                "{root}"
            );
        }
    }

    #[test]
    fn given_links_inside_a_site_when_listed_then_only_those_leading_out_are() {
        let output = Output::new();
        output
            .file("dist/index.html")
            .file("dist/pages/v2.html")
            .link("pages/v2.html", "dist/latest.html")
            .link("../index.html", "dist/pages/home.html")
            .link("pages", "dist/docs")
            .link("/etc/passwd", "dist/secret")
            .link("../../secret-keys", "dist/keys")
            .link("../../dist/index.html", "dist/pages/out-and-back")
            .link("../..", "dist/pages/up");
        let site = output.0.join("dist");
        let found: Vec<String> = links_out_of(&site, 10).iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "`keys` -> `../../secret-keys`",
                "`pages/out-and-back` -> `../../dist/index.html`",
                "`pages/up` -> `../..`",
                "`secret` -> `/etc/passwd`",
            ]
        );
        assert_eq!(links_out_of(&site, 2).len(), 2);
        assert_eq!(links_out_of(&site, 0), []);
    }
}
