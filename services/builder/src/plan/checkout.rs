//! The checkout, read defensively: it is whatever the user pushed.
//!
//! Every path is resolved and must stay inside the checkout (a symlink pointing out of it reads as absent),
//! and every read is capped: manifests are refused above [`MAX_READ`], lock files and sources are only
//! skimmed up to a limit, so a huge or binary file can neither stall detection nor fill memory.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::PlanError;

/// No manifest detection needs is anywhere near this; a bigger one is refused rather than read.
pub(super) const MAX_READ: u64 = 1024 * 1024;
/// How much of a source file (main.py, next.config.js, ...) is skimmed for a pattern.
pub(super) const SKIM_SOURCE: u64 = 256 * 1024;
/// How much of a lock file is skimmed for package names or a version line: lock files of big apps run to
/// megabytes, and a partial read only loses names at the end.
pub(super) const SKIM_LOCK: u64 = 4 * 1024 * 1024;

pub(super) struct Checkout {
    root: PathBuf,
}

impl Checkout {
    pub(super) fn open(dir: &Path) -> Result<Self, PlanError> {
        let unreadable = |reason: String| PlanError::Unreadable { file: dir.display().to_string(), reason };
        let root = dir.canonicalize().map_err(|e| unreadable(e.to_string()))?;
        if !root.is_dir() {
            return Err(unreadable("not a directory".into()));
        }
        Ok(Checkout { root })
    }

    /// The real path of `rel`, if it exists inside the checkout (symlinks included, as long as they stay inside).
    fn resolve(&self, rel: &str) -> Option<PathBuf> {
        let path = self.root.join(rel).canonicalize().ok()?;
        path.starts_with(&self.root).then_some(path)
    }

    pub(super) fn is_file(&self, rel: &str) -> bool {
        self.resolve(rel).is_some_and(|p| p.is_file())
    }

    /// The first of `rels` that is a file.
    pub(super) fn first_file<'a>(&self, rels: &[&'a str]) -> Option<&'a str> {
        rels.iter().copied().find(|rel| self.is_file(rel))
    }

    /// Those of `rels` that are files, in order.
    pub(super) fn files(&self, rels: &[&str]) -> Vec<String> {
        rels.iter().filter(|rel| self.is_file(rel)).map(|rel| (*rel).to_owned()).collect()
    }

    /// The text of a small file; None when it is absent or escapes the checkout. A file over [`MAX_READ`] or
    /// not UTF-8 is an error: it is a manifest the plan depends on.
    pub(super) fn read(&self, rel: &str) -> Result<Option<String>, PlanError> {
        let Some(path) = self.resolve(rel).filter(|p| p.is_file()) else {
            return Ok(None);
        };
        let unreadable = |reason: String| PlanError::Unreadable { file: rel.to_owned(), reason };
        let bytes = read_capped(&path, MAX_READ + 1).map_err(|e| unreadable(e.to_string()))?;
        if bytes.len() as u64 > MAX_READ {
            return Err(unreadable(format!("it is larger than {} KiB, too big to be a manifest", MAX_READ / 1024)));
        }
        let text =
            String::from_utf8(bytes).map_err(|e| unreadable(format!("it is not UTF-8 ({e}); save it as UTF-8")))?;
        Ok(Some(without_bom(text)))
    }

    /// At most `limit` bytes of a file, lossily decoded; None when it is absent, escapes the checkout or cannot
    /// be read. For files only looked into for a hint, which must never fail detection.
    pub(super) fn skim(&self, rel: &str, limit: u64) -> Option<String> {
        let path = self.resolve(rel).filter(|p| p.is_file())?;
        let bytes = read_capped(&path, limit).ok()?;
        Some(without_bom(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Whether a file exists and has something other than whitespace near its start.
    pub(super) fn has_content(&self, rel: &str) -> bool {
        self.skim(rel, 4096).is_some_and(|s| !s.trim().is_empty())
    }

    pub(super) fn package_json(&self) -> Result<Option<serde_json::Value>, PlanError> {
        let Some(text) = self.read("package.json")? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| PlanError::InvalidFile { file: "package.json".into(), error: e.to_string() })
    }

    /// The command of the Procfile's `web:` process, if there is one, run after its `release:` command when
    /// there is one too: the platform has no separate release phase, and a release command (migrations) must
    /// run before the new version serves, against the data it will serve from.
    pub(super) fn procfile_web(&self) -> Result<Option<String>, PlanError> {
        let Some(procfile) = self.read("Procfile")? else {
            return Ok(None);
        };
        let process = |wanted: &str| {
            procfile.lines().find_map(|line| {
                let (name, command) = line.split_once(':')?;
                let command = command.trim();
                (name.trim() == wanted && !command.is_empty()).then(|| command.to_owned())
            })
        };
        Ok(process("web").map(|web| match process("release") {
            Some(release) => format!("{release} && {web}"),
            None => web,
        }))
    }

    pub(super) fn has_file_with_extension(&self, rel: &str, extension: &str) -> bool {
        let Some(dir) = self.resolve(rel) else { return false };
        let Ok(entries) = fs::read_dir(dir) else { return false };
        entries
            .flatten()
            .any(|e| e.file_type().is_ok_and(|t| t.is_file()) && e.path().extension().is_some_and(|x| x == extension))
    }

    /// Names of the plain (non-symlink) files of `rel` ending in `.<extension>`, sorted, at most `limit`.
    pub(super) fn files_with_extension(&self, rel: &str, extension: &str, limit: usize) -> Vec<String> {
        let Some(dir) = self.resolve(rel) else { return Vec::new() };
        let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| name.strip_suffix(extension).is_some_and(|stem| stem.ends_with('.')))
            .collect();
        names.sort();
        names.truncate(limit);
        names
    }

    /// Names of the plain (non-symlink) subdirectories of `rel` that are safe to put in a command, sorted.
    pub(super) fn subdirectories(&self, rel: &str) -> Vec<String> {
        let Some(dir) = self.resolve(rel) else { return Vec::new() };
        let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| is_safe_word(name) && !name.starts_with('.'))
            .collect();
        names.sort();
        names
    }
}

fn read_capped(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    fs::File::open(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Editors on Windows add a byte-order mark, which JSON parsers reject.
fn without_bom(text: String) -> String {
    text.strip_prefix('\u{feff}').map(str::to_owned).unwrap_or(text)
}

/// Names that go into a shell command unquoted must not carry shell syntax.
pub(super) fn is_safe_word(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('-') && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// A relative path that stays inside the app and needs no quoting: no `..`, no shell syntax.
pub(super) fn is_safe_path(s: &str) -> bool {
    !s.starts_with('/') && s.split('/').all(|part| part.is_empty() || (is_safe_word(part) && part != ".."))
}

/// `dir/rel` normalised lexically (`a/./b/../c` → `a/c`), or None when it climbs out of the checkout.
pub(super) fn join_relative(dir: &str, rel: &str) -> Option<String> {
    if rel.starts_with('/') {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    for component in Path::new(dir).join(rel).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?.to_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// `s` as one shell word: single-quoted unless it is plainly safe.
pub(super) fn shell_quote(s: &str) -> String {
    if is_safe_word(s) {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testkit::app;

    fn open(app: &crate::plan::testkit::App) -> Checkout {
        Checkout::open(&app.0).unwrap()
    }

    #[test]
    fn given_a_big_file_when_skimmed_then_only_the_limit_is_read() {
        let app = app().file("uv.lock", format!("version = 1\n{}", "x".repeat(10_000)));
        let text = open(&app).skim("uv.lock", 100).unwrap();
        assert_eq!(text.len(), 100);
        assert!(text.starts_with("version = 1"));
    }

    #[test]
    fn given_binary_content_when_skimmed_then_decoded_lossily_and_read_refuses_it() {
        let app = app().file("main.py", b"\xff\xfe\x00app = Flask(__name__)\n");
        let checkout = open(&app);
        assert!(checkout.skim("main.py", SKIM_SOURCE).unwrap().contains("app = Flask("));
        assert!(matches!(checkout.read("main.py"), Err(PlanError::Unreadable { .. })));
    }

    #[test]
    fn given_a_symlink_out_of_the_checkout_when_skimmed_or_listed_then_it_is_absent() {
        let outside = app().file("secret.py", "app = Flask(__name__)").file("dir/x.py", "");
        let app = app();
        std::os::unix::fs::symlink(outside.0.join("secret.py"), app.0.join("main.py")).unwrap();
        std::os::unix::fs::symlink(outside.0.join("dir"), app.0.join("app")).unwrap();
        let checkout = open(&app);
        assert_eq!(checkout.skim("main.py", SKIM_SOURCE), None);
        assert!(!checkout.is_file("main.py"));
        assert!(checkout.files_with_extension("app", "py", 10).is_empty());
        assert!(checkout.subdirectories(".").is_empty());
    }

    #[test]
    fn given_paths_when_joined_then_they_stay_inside() {
        assert_eq!(join_relative("requirements", "base.txt").as_deref(), Some("requirements/base.txt"));
        assert_eq!(join_relative("a/b", "../c.txt").as_deref(), Some("a/c.txt"));
        assert_eq!(join_relative("", "./x.txt").as_deref(), Some("x.txt"));
        assert_eq!(join_relative("", "../x.txt"), None);
        assert_eq!(join_relative("", "/etc/passwd"), None);
    }

    #[test]
    fn given_words_when_quoted_then_shell_syntax_is_neutralised() {
        assert_eq!(shell_quote("gunicorn"), "gunicorn");
        assert_eq!(shell_quote("flask>=3"), "'flask>=3'");
        assert_eq!(shell_quote("a; python_version < '3.12'"), r"'a; python_version < '\''3.12'\'''");
        assert!(!is_safe_path("../x.js") && !is_safe_path("a/../../x") && is_safe_path("dist/app"));
    }
}
