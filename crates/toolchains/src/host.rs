//! The host's own toolchains, as sandboxes can see them.
//!
//! Sandboxes bind the host's `/usr`, `/lib`, `/lib64`, `/bin` and `/etc/alternatives`, nothing else:
//! a program counts only when it and every link on the way to it stay there (`/usr/bin/node`, not a
//! pyenv shim or an nvm install under `/root`). Rust is the exception: its toolchain lives under
//! `/root` and is copied into the cache instead.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
const VISIBLE: &[&str] = &["/usr/", "/bin/", "/lib/", "/lib64/", "/sbin/", "/etc/alternatives/"];
const SAFE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What the host offers, detected once per process ([`Host::detect`]) or given (tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    pub node: Option<HostNode>,
    /// The default interpreter (`/usr/bin/python3`) first, then the others, newest first.
    pub pythons: Vec<HostPython>,
    pub go: Option<HostGo>,
    pub rust: Option<HostRust>,
}

/// A node with its npm next to it (a node without npm cannot run `npm ci`, so it does not count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNode {
    pub version: String,
    /// `/usr/bin`
    pub bin_dir: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPython {
    pub version: String,
    /// `/usr/bin/python3.11`
    pub exe: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostGo {
    pub version: String,
    /// The GOROOT as sandboxes see it, e.g. `/usr/lib/go-1.22`.
    pub goroot: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRust {
    /// `rustc -vV` release: `1.95.0`, `1.97.0-nightly`.
    pub version: String,
    /// `stable`, `beta` or `nightly`.
    pub channel: String,
    /// `rustc -vV` commit-date (`2026-04-14`), which dates nightlies.
    pub commit_date: Option<String>,
    /// `rustc --print sysroot`: copied (bin/, lib/) into the cache.
    pub sysroot: PathBuf,
    /// The whole `rustc -vV` answer: the cache key hashes it.
    pub identity: String,
}

impl Host {
    /// Nothing on the host (every toolchain must come from a source).
    pub fn none() -> Host {
        Host::default()
    }

    /// Probes the host's node, pythons, go and rust (each at most a few seconds).
    pub async fn detect() -> Host {
        let (node, pythons, go, rust) = tokio::join!(detect_node(), detect_pythons(), detect_go(), detect_rust());
        let host = Host { node, pythons, go, rust };
        tracing::info!(?host, "host toolchains detected");
        host
    }
}

async fn run(program: &Path, args: &[&str], clean_env: bool) -> Option<String> {
    let mut command = tokio::process::Command::new(program);
    command.args(args).current_dir("/").kill_on_drop(true).stdin(std::process::Stdio::null());
    if clean_env {
        command.env_clear().env("PATH", SAFE_PATH).env("HOME", "/nonexistent").env("GOTOOLCHAIN", "local");
    }
    let output = tokio::time::timeout(PROBE_TIMEOUT, command.output()).await.ok()?.ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Whether a sandbox reaches `path` the way the host does: every hop of its link chain stays in the
/// directories sandboxes bind.
pub(crate) fn visible(path: &Path) -> bool {
    let mut current = path.to_path_buf();
    for _ in 0..16 {
        let text = current.to_string_lossy();
        if !VISIBLE.iter().any(|prefix| text.starts_with(prefix)) {
            return false;
        }
        match std::fs::read_link(&current) {
            Ok(target) => {
                let next =
                    if target.is_absolute() { target } else { current.parent().unwrap_or(Path::new("/")).join(target) };
                current = lexical(&next);
            }
            Err(_) => return current.exists(),
        }
    }
    false
}

fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

async fn detect_node() -> Option<HostNode> {
    for dir in ["/usr/local/bin", "/usr/bin"] {
        let node = Path::new(dir).join("node");
        if !visible(&node) || !visible(&Path::new(dir).join("npm")) {
            continue;
        }
        if let Some(version) = run(&node, &["--version"], true).await {
            let version = version.trim_start_matches('v').to_string();
            if nodejs_semver::Version::parse(&version).is_ok() {
                return Some(HostNode { version, bin_dir: dir.to_string() });
            }
        }
    }
    None
}

async fn detect_pythons() -> Vec<HostPython> {
    let default = std::fs::canonicalize("/usr/bin/python3").ok();
    let mut found: Vec<(bool, PathBuf, HostPython)> = Vec::new();
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut names: Vec<String> = entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
        names.sort();
        for name in names {
            let minor =
                name.strip_prefix("python3.").filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
            if minor.is_none() {
                continue;
            }
            let exe = Path::new(dir).join(&name);
            let Ok(real) = std::fs::canonicalize(&exe) else { continue };
            if !visible(&exe) || found.iter().any(|(_, r, _)| *r == real) {
                continue;
            }
            let probe = "import sys; print('.'.join(map(str, sys.version_info[:3])))";
            if let Some(version) = run(&exe, &["-I", "-c", probe], true).await {
                let is_default = default.as_ref() == Some(&real);
                found.push((is_default, real, HostPython { version, exe: exe.to_string_lossy().into_owned() }));
            }
        }
    }
    found.sort_by(|(da, _, a), (db, _, b)| db.cmp(da).then_with(|| crate::python::compare(&b.version, &a.version)));
    found.into_iter().map(|(_, _, p)| p).collect()
}

async fn detect_go() -> Option<HostGo> {
    let mut candidates: Vec<PathBuf> =
        ["/usr/local/go/bin/go", "/usr/local/bin/go", "/usr/bin/go", "/usr/lib/go/bin/go"].map(PathBuf::from).into();
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        let mut versioned: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("go-"))
            .map(|e| e.path().join("bin/go"))
            .collect();
        versioned.sort();
        candidates.extend(versioned.into_iter().rev());
    }
    for go in candidates {
        if !visible(&go) {
            continue;
        }
        let Ok(real) = std::fs::canonicalize(&go) else { continue };
        let Some(goroot) = real.parent().and_then(Path::parent) else { continue };
        if !visible(goroot) || !goroot.join("src/runtime").exists() {
            continue;
        }
        let Some(answer) = run(&go, &["version"], true).await else { continue };
        // "go version go1.22.5 linux/amd64"
        let version = answer.split_whitespace().nth(2).and_then(|v| v.strip_prefix("go"));
        if let Some(version) = version.and_then(crate::go::GoVersion::parse) {
            return Some(HostGo { version: version.to_string(), goroot: goroot.to_string_lossy().into_owned() });
        }
    }
    None
}

async fn detect_rust() -> Option<HostRust> {
    // The platform's own environment (RUSTUP_HOME, RUSTUP_TOOLCHAIN) decides which toolchain.
    let identity = run(Path::new("rustc"), &["-vV"], false).await?;
    let sysroot = run(Path::new("rustc"), &["--print", "sysroot"], false).await?;
    parse_rustc(&identity, PathBuf::from(sysroot))
}

pub(crate) fn parse_rustc(identity: &str, sysroot: PathBuf) -> Option<HostRust> {
    let field = |name: &str| {
        identity.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string())).filter(|v| !v.is_empty())
    };
    let version = field("release:")?;
    let channel = if version.contains("-nightly") || version.contains("-dev") {
        "nightly"
    } else if version.contains("-beta") {
        "beta"
    } else {
        "stable"
    };
    Some(HostRust {
        version,
        channel: channel.to_string(),
        commit_date: field("commit-date:"),
        sysroot,
        identity: identity.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_paths_when_checked_then_only_those_sandboxes_bind_are_visible() {
        assert!(visible(Path::new("/usr/bin/env")));
        assert!(!visible(Path::new("/root/.pyenv/shims/python3")));
        assert!(!visible(Path::new("/usr/bin/../../root/x")));
        assert!(!visible(Path::new("/usr/bin/definitely-not-here")));
    }

    #[test]
    fn given_rustc_answers_when_parsed_then_version_channel_and_date_are_read() {
        let stable = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\ncommit-hash: 59807616e1\n\
                      commit-date: 2026-04-14\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\nLLVM version: 22.1.2";
        let rust = parse_rustc(stable, PathBuf::from("/r")).unwrap();
        assert_eq!((rust.version.as_str(), rust.channel.as_str()), ("1.95.0", "stable"));
        assert_eq!(rust.commit_date.as_deref(), Some("2026-04-14"));
        let nightly = "rustc 1.97.0-nightly (abc 2026-01-01)\nrelease: 1.97.0-nightly\ncommit-date: 2025-12-31";
        assert_eq!(parse_rustc(nightly, PathBuf::new()).unwrap().channel, "nightly");
        assert_eq!(parse_rustc("garbage", PathBuf::new()), None);
    }
}
