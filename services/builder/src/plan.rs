//! Build-plan detection: what to install, build and start, decided from the files of a checkout.
//!
//! Like Railpack, providers are tried in a fixed order and the first that matches wins:
//! Go (`go.mod`), Rust (`Cargo.toml`), Python (`requirements.txt`, `pyproject.toml`, `main.py`, ...),
//! Node (`package.json`), then a static site (`index.html`, `public/index.html`). A `Procfile` `web:` line
//! then replaces the start command (the language's install and build still run), and the caller's
//! overrides replace whatever was detected.
//!
//! Architecture Invariant: detection is pure. It reads a handful of small files under the checkout and
//! runs no process; it knows nothing of sandboxes, the bus or the store. Reads are capped and never follow
//! a symlink out of the checkout, because the checkout is untrusted input.

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use events::BuildPack;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// No file detection needs is anywhere near this; a bigger one is refused rather than read.
const MAX_READ: u64 = 1024 * 1024;

/// Where the Go build puts its binary: under a dot directory of the app so that it cannot collide with
/// a source directory and is not served or committed by accident.
const GO_BINARY: &str = ".dmcp/app";

/// Python entry points, in the order tried.
const PYTHON_ENTRIES: [&str; 3] = ["main.py", "app.py", "server.py"];
/// Files that mark a Python app even when none of them is an entry point.
const PYTHON_MARKERS: [&str; 6] = ["requirements.txt", "pyproject.toml", "main.py", "app.py", "server.py", "wsgi.py"];
/// Node entry points tried when package.json has neither a start script nor `main`.
const NODE_ENTRIES: [&str; 4] = ["server.js", "index.js", "app.js", "main.js"];

/// What the caller asked for, from the service's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub build_pack: BuildPack,
    pub install_command: Option<String>,
    pub build_command: Option<String>,
    pub start_command: Option<String>,
}

/// Which rule produced the plan; part of the plan's key and of what agents are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Node,
    Python,
    Go,
    Rust,
    Static,
    /// A `Procfile` `web:` line gave the start command (the language's install and build may still run).
    Procfile,
    Dockerfile,
    /// Nothing was detected; the caller's commands are the whole plan.
    Custom,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Node => "node",
            Provider::Python => "python",
            Provider::Go => "go",
            Provider::Rust => "rust",
            Provider::Static => "static",
            Provider::Procfile => "procfile",
            Provider::Dockerfile => "dockerfile",
            Provider::Custom => "custom",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to turn a checkout into a running app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub provider: Provider,
    /// Shell commands run in the app dir inside a sandbox (no network to package registries is guaranteed).
    pub install: Option<String>,
    pub build: Option<String>,
    /// What runs the app (`/bin/sh -c`); None for a static site, which the router serves itself.
    pub start: Option<String>,
    /// For static sites: the directory to serve, relative to the app root ("." or "public" or e.g. "dist"
    /// after a build).
    pub static_root: Option<String>,
}

impl Plan {
    /// A stable content key of the plan (hex sha256 of its canonical JSON): with the commit SHA it addresses
    /// the build output.
    ///
    /// Canonical because serde writes the fields in declaration order with no whitespace; changing the
    /// struct changes every key, which is what a cache of build outputs wants.
    pub fn key(&self) -> String {
        let json = serde_json::to_vec(self).expect("a plan of strings and an enum always serialises");
        hex::encode(Sha256::digest(&json))
    }

    /// One line for logs and agents, e.g. "node: install `npm ci`, build `npm run build`, start `npm start`".
    pub fn describe(&self) -> String {
        let steps: Vec<String> =
            [("install", &self.install), ("build", &self.build), ("start", &self.start), ("serve", &self.static_root)]
                .into_iter()
                .filter_map(|(step, command)| command.as_ref().map(|c| format!("{step} `{c}`")))
                .collect();
        if steps.is_empty() {
            // Only a Dockerfile plan without a start override has no step of ours: the image says it all.
            return format!("{}: build the image from `Dockerfile`", self.provider);
        }
        format!("{}: {}", self.provider, steps.join(", "))
    }
}

/// Why no plan could be made. All of them are the repository's or the settings' fault; each message says
/// what to change, because agents act on it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error(
        "no app detected at the repository root: looked for go.mod (Go), Cargo.toml (Rust), \
         requirements.txt, pyproject.toml, main.py, app.py, server.py or wsgi.py (Python), package.json (Node), \
         a Procfile with a `web:` line, and index.html or public/index.html (static site). \
         Set `start_command` to the command that runs the app, or `build_pack: static` to serve the files{}",
        dockerfile_hint(*dockerfile_present)
    )]
    NothingDetected { dockerfile_present: bool },

    #[error("{provider} app detected, but nothing says how to start it: {hint}; or set `start_command`")]
    NoStartCommand { provider: Provider, hint: String },

    #[error("{file} is not valid: {error}. Fix the file and push again")]
    InvalidFile { file: String, error: String },

    #[error("{file} could not be read: {reason}")]
    Unreadable { file: String, reason: String },

    #[error(
        "`build_pack: dockerfile` was requested but there is no Dockerfile at the repository root: add one, \
         or use `build_pack: railpack` to detect the language"
    )]
    NoDockerfile,

    #[error(
        "`build_pack: static` was requested but no site was found: looked for index.html, public/index.html \
         and dist/index.html, and for a `build` script in package.json. Add an index.html, or set \
         `build_command` to a command that writes dist/index.html"
    )]
    NoStaticRoot,

    #[error("conflicting settings: {0}")]
    Conflict(String),
}

fn dockerfile_hint(present: bool) -> &'static str {
    if present { "; a Dockerfile is present: set `build_pack: dockerfile` to build with it" } else { "" }
}

/// Decides the plan for the checkout at `dir`.
pub fn detect(dir: &Path, overrides: &Overrides) -> Result<Plan, PlanError> {
    let checkout = Checkout::open(dir)?;
    let overrides = Normalised::from(overrides);
    match overrides.build_pack {
        BuildPack::Dockerfile => dockerfile(&checkout, &overrides),
        BuildPack::Static => forced_static(&checkout, &overrides),
        BuildPack::Railpack => railpack(&checkout, &overrides),
    }
}

fn dockerfile(checkout: &Checkout, overrides: &Normalised) -> Result<Plan, PlanError> {
    if !checkout.is_file("Dockerfile") {
        return Err(PlanError::NoDockerfile);
    }
    if overrides.install.is_some() || overrides.build.is_some() {
        return Err(PlanError::Conflict(
            "`install_command` and `build_command` do not apply to `build_pack: dockerfile` (the Dockerfile's RUN \
             steps do that): remove them, or use `build_pack: railpack`"
                .into(),
        ));
    }
    // The start override replaces the image's CMD; without it the image decides.
    Ok(Plan {
        provider: Provider::Dockerfile,
        install: None,
        build: None,
        start: overrides.start.clone(),
        static_root: None,
    })
}

fn forced_static(checkout: &Checkout, overrides: &Normalised) -> Result<Plan, PlanError> {
    if overrides.start.is_some() {
        return Err(PlanError::Conflict(
            "`build_pack: static` serves the files itself, so `start_command` cannot apply: remove `start_command`, \
             or use `build_pack: railpack` to run it"
                .into(),
        ));
    }
    let node = match checkout.package_json()? {
        Some(package) => Some(node(checkout, &package)?),
        None => None,
    };
    let built = node.as_ref().filter(|n| n.build.is_some());
    // A build script comes first: the index.html of a Vite source tree or CRA's public/ is a template, not the site.
    let (root, install, build) = if let Some(node) = built {
        (node.output_dir.to_owned(), node.install.clone(), node.build.clone())
    } else if let Some(root) = committed_static_root(checkout) {
        (root.to_owned(), None, None)
    } else if overrides.build.is_some() {
        ("dist".to_owned(), None, None)
    } else {
        return Err(PlanError::NoStaticRoot);
    };
    let plan = Plan { provider: Provider::Static, install, build, start: None, static_root: Some(root) };
    Ok(overrides.apply(plan))
}

fn railpack(checkout: &Checkout, overrides: &Normalised) -> Result<Plan, PlanError> {
    let detected = detect_language(checkout)?;
    let web = checkout.procfile_web()?;

    let mut missing_start_hint = None;
    let plan = match (detected, web) {
        (Some(lang), Some(web)) => {
            Plan { provider: Provider::Procfile, start: Some(web), static_root: None, ..lang.plan }
        }
        (Some(lang), None) => {
            missing_start_hint = Some(lang.missing_start_hint);
            lang.plan
        }
        (None, Some(web)) => {
            Plan { provider: Provider::Procfile, install: None, build: None, start: Some(web), static_root: None }
        }
        (None, None) => match committed_static_root(checkout) {
            Some(root) => Plan {
                provider: Provider::Static,
                install: None,
                build: None,
                start: None,
                static_root: Some(root.to_owned()),
            },
            None if overrides.start.is_some() => {
                Plan { provider: Provider::Custom, install: None, build: None, start: None, static_root: None }
            }
            None => {
                return Err(PlanError::NothingDetected { dockerfile_present: checkout.is_file("Dockerfile") });
            }
        },
    };

    let mut plan = overrides.apply(plan);
    if plan.static_root.is_some() && plan.start.is_some() {
        // A start command means the app serves itself: a static site given one becomes a custom app.
        plan.static_root = None;
        plan.provider = Provider::Custom;
    }
    if plan.start.is_none() && plan.static_root.is_none() {
        let hint = missing_start_hint.unwrap_or("no entry point was found").to_owned();
        return Err(PlanError::NoStartCommand { provider: plan.provider, hint });
    }
    Ok(plan)
}

/// A language provider's plan; `start` may still be missing, for a Procfile or an override to fill.
struct Detected {
    plan: Plan,
    /// What to tell the user when nothing fills `start`.
    missing_start_hint: &'static str,
}

fn detect_language(checkout: &Checkout) -> Result<Option<Detected>, PlanError> {
    if checkout.is_file("go.mod") {
        let hint = "the Go build has no binary to run";
        return Ok(Some(Detected { plan: go(checkout)?, missing_start_hint: hint }));
    }
    if let Some(manifest) = checkout.read("Cargo.toml")? {
        let hint = "Cargo.toml has no [package] name (a workspace root?), so the binary is unknown: \
                    add a Procfile `web:` line such as `web: ./target/release/<binary>`";
        return Ok(Some(Detected { plan: rust(&manifest)?, missing_start_hint: hint }));
    }
    if PYTHON_MARKERS.iter().any(|f| checkout.is_file(f)) {
        let hint = "add a main.py, app.py or server.py, or a Procfile `web:` line";
        return Ok(Some(Detected { plan: python(checkout)?, missing_start_hint: hint }));
    }
    if let Some(package) = checkout.package_json()? {
        let node = node(checkout, &package)?;
        let plan = match (node.start, node.build) {
            (Some(start), build) => {
                Plan { provider: Provider::Node, install: node.install, build, start: Some(start), static_root: None }
            }
            // A build and nothing to run: a front end whose build writes the site (Vite, CRA).
            (None, Some(build)) => Plan {
                provider: Provider::Static,
                install: node.install,
                build: Some(build),
                start: None,
                static_root: Some(node.output_dir.to_owned()),
            },
            (None, None) => {
                Plan { provider: Provider::Node, install: node.install, build: None, start: None, static_root: None }
            }
        };
        let hint = "add a `start` script or `main` to package.json, a server.js or index.js, or a Procfile `web:` line";
        return Ok(Some(Detected { plan, missing_start_hint: hint }));
    }
    Ok(None)
}

fn go(checkout: &Checkout) -> Result<Plan, PlanError> {
    // go.sum lists the module's dependencies; a module without one has nothing to download.
    let has_deps = checkout.read("go.sum")?.is_some_and(|s| !s.trim().is_empty());
    let package = if checkout.has_file_with_extension(".", "go") {
        ".".to_owned()
    } else {
        // The common layout without a root main package: a single command under cmd/.
        match checkout.subdirectories("cmd").as_slice() {
            [only] => format!("./cmd/{only}"),
            _ => ".".to_owned(),
        }
    };
    Ok(Plan {
        provider: Provider::Go,
        install: has_deps.then(|| "go mod download".to_owned()),
        build: Some(format!("mkdir -p .dmcp && go build -o {GO_BINARY} {package}")),
        start: Some(format!("./{GO_BINARY}")),
        static_root: None,
    })
}

fn rust(manifest: &str) -> Result<Plan, PlanError> {
    let toml = MiniToml::parse(manifest);
    let bins = toml.array_table_values("bin", "name");
    let name = match bins.as_slice() {
        [only] => Some(only.clone()),
        _ => toml.value("package", "name"),
    };
    if let Some(name) = name.as_ref().filter(|n| !is_safe_word(n)) {
        return Err(PlanError::InvalidFile {
            file: "Cargo.toml".into(),
            error: format!("the binary name {name:?} is not a valid crate name"),
        });
    }
    Ok(Plan {
        provider: Provider::Rust,
        install: toml.has_entries("dependencies").then(|| "cargo fetch".to_owned()),
        build: Some("cargo build --release".to_owned()),
        start: name.map(|name| format!("./target/release/{name}")),
        static_root: None,
    })
}

fn python(checkout: &Checkout) -> Result<Plan, PlanError> {
    let requirements = checkout.read("requirements.txt")?;
    let has_requirements = requirements
        .as_deref()
        .is_some_and(|r| r.lines().map(str::trim).any(|line| !line.is_empty() && !line.starts_with('#')));
    let install = if has_requirements {
        Some("pip install -r requirements.txt".to_owned())
    } else if checkout.read("pyproject.toml")?.is_some_and(|p| pyproject_has_dependencies(&p)) {
        Some("pip install .".to_owned())
    } else {
        None
    };
    let entry = PYTHON_ENTRIES.iter().find(|f| checkout.is_file(f));
    Ok(Plan {
        provider: Provider::Python,
        install,
        build: None,
        start: entry.map(|e| format!("python3 {e}")),
        static_root: None,
    })
}

fn pyproject_has_dependencies(pyproject: &str) -> bool {
    let toml = MiniToml::parse(pyproject);
    let project = toml.raw_value("project", "dependencies").is_some_and(|v| v.contains(['"', '\'']));
    let poetry = toml.keys("tool.poetry.dependencies").iter().any(|k| k != "python");
    project || poetry
}

/// What package.json says, before it is shaped into a plan.
struct Node {
    install: Option<String>,
    build: Option<String>,
    start: Option<String>,
    /// Where a build is expected to write a static site.
    output_dir: &'static str,
}

fn node(checkout: &Checkout, package: &serde_json::Value) -> Result<Node, PlanError> {
    let invalid = |error: String| PlanError::InvalidFile { file: "package.json".into(), error };
    if !package.is_object() {
        return Err(invalid("the top level must be a JSON object".into()));
    }
    let scripts = package.get("scripts");
    let script =
        |name: &str| scripts.and_then(|s| s.get(name)).and_then(|s| s.as_str()).is_some_and(|s| !s.trim().is_empty());
    let has_entries = |field: &str| package.get(field).and_then(|d| d.as_object()).is_some_and(|d| !d.is_empty());

    let has_deps = has_entries("dependencies") || has_entries("devDependencies");
    let install = match (has_deps, checkout.is_file("package-lock.json")) {
        (false, _) => None,
        (true, true) => Some("npm ci".to_owned()),
        (true, false) => Some("npm install".to_owned()),
    };
    let main = match package.get("main") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(main)) if !main.trim().is_empty() => {
            if !is_safe_path(main) {
                return Err(invalid(format!("`main` {main:?} must be a relative path without shell characters")));
            }
            Some(main.clone())
        }
        Some(_) => return Err(invalid("`main` must be a non-empty string".into())),
    };
    let start = if script("start") {
        Some("npm start".to_owned())
    } else {
        main.or_else(|| NODE_ENTRIES.iter().find(|f| checkout.is_file(f)).map(|f| (*f).to_owned()))
            .map(|entry| format!("node {entry}"))
    };
    let uses_cra = ["dependencies", "devDependencies"]
        .iter()
        .any(|field| package.get(field).and_then(|d| d.get("react-scripts")).is_some());
    Ok(Node {
        install,
        build: script("build").then(|| "npm run build".to_owned()),
        start,
        output_dir: if uses_cra { "build" } else { "dist" },
    })
}

/// A site already in the repository, in the order a person would look.
fn committed_static_root(checkout: &Checkout) -> Option<&'static str> {
    [(".", "index.html"), ("public", "public/index.html"), ("dist", "dist/index.html")]
        .into_iter()
        .find(|(_, index)| checkout.is_file(index))
        .map(|(root, _)| root)
}

/// Overrides with blank strings taken as unset: agents send `""` to mean "no override".
struct Normalised {
    build_pack: BuildPack,
    install: Option<String>,
    build: Option<String>,
    start: Option<String>,
}

impl From<&Overrides> for Normalised {
    fn from(o: &Overrides) -> Self {
        let clean = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        Normalised {
            build_pack: o.build_pack,
            install: clean(&o.install_command),
            build: clean(&o.build_command),
            start: clean(&o.start_command),
        }
    }
}

impl Normalised {
    fn apply(&self, plan: Plan) -> Plan {
        Plan {
            install: self.install.clone().or(plan.install),
            build: self.build.clone().or(plan.build),
            start: self.start.clone().or(plan.start),
            ..plan
        }
    }
}

/// The checkout, read defensively: it is whatever the user pushed.
struct Checkout {
    root: PathBuf,
}

impl Checkout {
    fn open(dir: &Path) -> Result<Self, PlanError> {
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

    fn is_file(&self, rel: &str) -> bool {
        self.resolve(rel).is_some_and(|p| p.is_file())
    }

    /// The text of a small file; None when it is absent or escapes the checkout.
    fn read(&self, rel: &str) -> Result<Option<String>, PlanError> {
        let Some(path) = self.resolve(rel).filter(|p| p.is_file()) else {
            return Ok(None);
        };
        let unreadable = |reason: String| PlanError::Unreadable { file: rel.to_owned(), reason };
        let file = fs::File::open(&path).map_err(|e| unreadable(e.to_string()))?;
        let mut bytes = Vec::new();
        file.take(MAX_READ + 1).read_to_end(&mut bytes).map_err(|e| unreadable(e.to_string()))?;
        if bytes.len() as u64 > MAX_READ {
            return Err(unreadable(format!("it is larger than {} KiB, too big to be a manifest", MAX_READ / 1024)));
        }
        let text =
            String::from_utf8(bytes).map_err(|e| unreadable(format!("it is not UTF-8 ({e}); save it as UTF-8")))?;
        // Editors on Windows add a byte-order mark, which JSON parsers reject.
        Ok(Some(text.strip_prefix('\u{feff}').map(str::to_owned).unwrap_or(text)))
    }

    fn package_json(&self) -> Result<Option<serde_json::Value>, PlanError> {
        let Some(text) = self.read("package.json")? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| PlanError::InvalidFile { file: "package.json".into(), error: e.to_string() })
    }

    /// The command of the Procfile's `web:` process, if there is one.
    fn procfile_web(&self) -> Result<Option<String>, PlanError> {
        let Some(procfile) = self.read("Procfile")? else {
            return Ok(None);
        };
        Ok(procfile.lines().find_map(|line| {
            let (name, command) = line.split_once(':')?;
            let command = command.trim();
            (name.trim() == "web" && !command.is_empty()).then(|| command.to_owned())
        }))
    }

    fn has_file_with_extension(&self, rel: &str, extension: &str) -> bool {
        let Some(dir) = self.resolve(rel) else { return false };
        let Ok(entries) = fs::read_dir(dir) else { return false };
        entries
            .flatten()
            .any(|e| e.file_type().is_ok_and(|t| t.is_file()) && e.path().extension().is_some_and(|x| x == extension))
    }

    /// Names of the plain (non-symlink) subdirectories of `rel` that are safe to put in a command.
    fn subdirectories(&self, rel: &str) -> Vec<String> {
        let Some(dir) = self.resolve(rel) else { return Vec::new() };
        let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| is_safe_word(name))
            .collect();
        names.sort();
        names
    }
}

/// Names that go into a shell command unquoted must not carry shell syntax.
fn is_safe_word(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('-') && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn is_safe_path(s: &str) -> bool {
    !s.starts_with('/') && s.split('/').all(|part| part.is_empty() || is_safe_word(part))
}

/// Just enough TOML for `[package] name`, `[[bin]] name`, `[dependencies]` and pyproject's dependency lists;
/// a TOML crate would be a dependency for four lookups.
struct MiniToml {
    /// (table header, key, raw value) in file order; array tables keep their `[[...]]` header.
    entries: Vec<(String, String, String)>,
    tables: Vec<String>,
}

impl MiniToml {
    fn parse(text: &str) -> Self {
        let mut entries = Vec::new();
        let mut tables = Vec::new();
        let mut table = String::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('[') {
                table = line.split('#').next().unwrap_or("").trim().replace(' ', "");
                tables.push(table.clone());
                continue;
            }
            let Some((key, value)) = line.split_once('=') else { continue };
            let mut value = value.trim().to_owned();
            // Multi-line arrays, as pyproject dependency lists usually are.
            if value.starts_with('[') {
                while !value.contains(']') {
                    let Some(next) = lines.next() else { break };
                    value.push_str(next.trim());
                }
            }
            entries.push((table.clone(), key.trim().trim_matches('"').to_owned(), value));
        }
        MiniToml { entries, tables }
    }

    fn raw_value(&self, table: &str, key: &str) -> Option<&str> {
        let header = format!("[{table}]");
        self.entries.iter().find(|(t, k, _)| *t == header && k == key).map(|(_, _, v)| v.as_str())
    }

    fn value(&self, table: &str, key: &str) -> Option<String> {
        self.raw_value(table, key).and_then(unquote)
    }

    fn array_table_values(&self, table: &str, key: &str) -> Vec<String> {
        let header = format!("[[{table}]]");
        self.entries.iter().filter(|(t, k, _)| *t == header && k == key).filter_map(|(_, _, v)| unquote(v)).collect()
    }

    fn keys(&self, table: &str) -> Vec<String> {
        let header = format!("[{table}]");
        self.entries.iter().filter(|(t, _, _)| *t == header).map(|(_, k, _)| k.clone()).collect()
    }

    /// Whether a table has entries, either as `key = ...` lines or as `[table.key]` subtables.
    fn has_entries(&self, table: &str) -> bool {
        let sub = format!("[{table}.");
        !self.keys(table).is_empty() || self.tables.iter().any(|t| t.starts_with(&sub))
    }
}

fn unquote(value: &str) -> Option<String> {
    let value = value.split(" #").next().unwrap_or(value).trim();
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))?;
    Some(inner.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A checkout in a fresh temporary directory, removed on drop.
    struct App(PathBuf);

    fn app() -> App {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dmcp-plan-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        App(dir)
    }

    impl App {
        fn file(self, rel: &str, contents: impl AsRef<[u8]>) -> Self {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
            self
        }

        fn detect(&self) -> Result<Plan, PlanError> {
            detect(&self.0, &Overrides::default())
        }

        fn detect_with(&self, overrides: Overrides) -> Result<Plan, PlanError> {
            detect(&self.0, &overrides)
        }
    }

    impl Drop for App {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn start(command: &str) -> Overrides {
        Overrides { start_command: Some(command.into()), ..Overrides::default() }
    }

    fn pack(build_pack: BuildPack) -> Overrides {
        Overrides { build_pack, ..Overrides::default() }
    }

    fn plan(provider: Provider, install: Option<&str>, build: Option<&str>, start: Option<&str>) -> Plan {
        Plan {
            provider,
            install: install.map(Into::into),
            build: build.map(Into::into),
            start: start.map(Into::into),
            static_root: None,
        }
    }

    fn static_plan(root: &str) -> Plan {
        Plan { static_root: Some(root.into()), ..plan(Provider::Static, None, None, None) }
    }

    // Node

    #[test]
    fn given_package_json_with_start_when_detect_then_npm_start() {
        let app = app().file("package.json", r#"{"scripts": {"start": "node server.js"}}"#);
        assert_eq!(app.detect().unwrap(), plan(Provider::Node, None, None, Some("npm start")));
    }

    #[test]
    fn given_dependencies_and_lockfile_when_detect_then_npm_ci_and_build() {
        let app = app()
            .file(
                "package.json",
                r#"{"dependencies": {"express": "^4"}, "scripts": {"build": "tsc", "start": "node dist/index.js"}}"#,
            )
            .file("package-lock.json", "{}");
        let expected = plan(Provider::Node, Some("npm ci"), Some("npm run build"), Some("npm start"));
        assert_eq!(app.detect().unwrap(), expected);
        assert_eq!(
            app.detect().unwrap().describe(),
            "node: install `npm ci`, build `npm run build`, start `npm start`"
        );
    }

    #[test]
    fn given_dev_dependencies_without_lockfile_when_detect_then_npm_install() {
        let app = app().file("package.json", r#"{"devDependencies": {"x": "1"}, "scripts": {"start": "node a.js"}}"#);
        assert_eq!(app.detect().unwrap().install.as_deref(), Some("npm install"));
    }

    #[test]
    fn given_empty_dependencies_when_detect_then_no_install() {
        let app = app()
            .file("package.json", r#"{"dependencies": {}, "devDependencies": {}, "scripts": {"start": "node a.js"}}"#)
            .file("package-lock.json", "{}");
        assert_eq!(app.detect().unwrap().install, None);
    }

    #[test]
    fn given_main_without_start_script_when_detect_then_node_main() {
        let app = app().file("package.json", r#"{"main": "src/entry.js", "scripts": {"test": "x"}}"#);
        assert_eq!(app.detect().unwrap().start.as_deref(), Some("node src/entry.js"));
    }

    #[test]
    fn given_no_start_or_main_but_index_js_when_detect_then_node_index_js() {
        let app = app().file("package.json", "{}").file("index.js", "").file("app.js", "");
        assert_eq!(app.detect().unwrap().start.as_deref(), Some("node index.js"));
    }

    #[test]
    fn given_build_script_and_nothing_to_run_when_detect_then_static_dist() {
        let app = app()
            .file("package.json", r#"{"devDependencies": {"vite": "5"}, "scripts": {"build": "vite build"}}"#)
            .file("index.html", "<script src=/src/main.ts>");
        let expected = Plan {
            static_root: Some("dist".into()),
            ..plan(Provider::Static, Some("npm install"), Some("npm run build"), None)
        };
        assert_eq!(app.detect().unwrap(), expected);
    }

    #[test]
    fn given_create_react_app_when_detect_then_static_build_dir() {
        let app = app()
            .file(
                "package.json",
                r#"{"dependencies": {"react-scripts": "5"}, "scripts": {"build": "react-scripts build"}}"#,
            )
            .file("public/index.html", "");
        assert_eq!(app.detect().unwrap().static_root.as_deref(), Some("build"));
    }

    #[test]
    fn given_invalid_package_json_when_detect_then_error_names_file_and_parse_error() {
        let app = app().file("package.json", "{\"scripts\": {\"start\": \"node a.js\",}}");
        let err = app.detect().unwrap_err();
        assert!(matches!(&err, PlanError::InvalidFile { file, .. } if file == "package.json"), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("package.json") && message.contains("line 1"), "{message}");
    }

    #[test]
    fn given_package_json_that_is_not_an_object_when_detect_then_invalid_file() {
        let app = app().file("package.json", "[1, 2]");
        assert!(matches!(app.detect(), Err(PlanError::InvalidFile { .. })));
    }

    #[test]
    fn given_main_with_shell_syntax_when_detect_then_invalid_file() {
        let app = app().file("package.json", r#"{"main": "a.js; rm -rf /"}"#);
        assert!(matches!(app.detect(), Err(PlanError::InvalidFile { .. })));
    }

    #[test]
    fn given_node_app_with_nothing_to_start_when_detect_then_no_start_command() {
        let app = app().file("package.json", r#"{"name": "lib"}"#);
        let err = app.detect().unwrap_err();
        assert!(matches!(err, PlanError::NoStartCommand { provider: Provider::Node, .. }), "{err:?}");
        assert!(err.to_string().contains("start_command"), "{err}");
    }

    // Python

    #[test]
    fn given_requirements_and_main_py_when_detect_then_pip_install_and_python_main() {
        let app = app().file("requirements.txt", "# web\n\nflask==3.0\n").file("main.py", "");
        let expected = plan(Provider::Python, Some("pip install -r requirements.txt"), None, Some("python3 main.py"));
        assert_eq!(app.detect().unwrap(), expected);
    }

    #[test]
    fn given_requirements_with_only_comments_when_detect_then_no_install() {
        let app = app().file("requirements.txt", "# nothing yet\n   \n").file("app.py", "");
        assert_eq!(app.detect().unwrap(), plan(Provider::Python, None, None, Some("python3 app.py")));
    }

    #[test]
    fn given_several_entries_when_detect_then_main_py_first() {
        let app = app().file("server.py", "").file("app.py", "").file("main.py", "");
        assert_eq!(app.detect().unwrap().start.as_deref(), Some("python3 main.py"));
    }

    #[test]
    fn given_pyproject_with_dependencies_when_detect_then_pip_install_dot() {
        let pyproject = "[project]\nname = \"x\"\ndependencies = [\n  \"requests>=2\",\n]\n";
        let app = app().file("pyproject.toml", pyproject).file("server.py", "");
        assert_eq!(
            app.detect().unwrap(),
            plan(Provider::Python, Some("pip install ."), None, Some("python3 server.py"))
        );
    }

    #[test]
    fn given_pyproject_without_dependencies_when_detect_then_no_install() {
        let app = app().file("pyproject.toml", "[project]\nname = \"x\"\ndependencies = []\n").file("main.py", "");
        assert_eq!(app.detect().unwrap().install, None);
    }

    #[test]
    fn given_only_wsgi_py_when_detect_then_no_start_command_naming_entries() {
        let app = app().file("wsgi.py", "");
        let err = app.detect().unwrap_err();
        assert!(matches!(err, PlanError::NoStartCommand { provider: Provider::Python, .. }), "{err:?}");
        assert!(err.to_string().contains("main.py"), "{err}");
    }

    // Go

    #[test]
    fn given_go_mod_when_detect_then_go_build_into_dot_dmcp() {
        let app = app().file("go.mod", "module example.com/x\n\ngo 1.22\n").file("main.go", "package main");
        let expected = plan(Provider::Go, None, Some("mkdir -p .dmcp && go build -o .dmcp/app ."), Some("./.dmcp/app"));
        assert_eq!(app.detect().unwrap(), expected);
    }

    #[test]
    fn given_go_sum_and_a_single_cmd_when_detect_then_download_and_build_the_cmd() {
        let app = app().file("go.mod", "module x").file("go.sum", "a v1 h1:x\n").file("cmd/server/main.go", "");
        let plan = app.detect().unwrap();
        assert_eq!(plan.install.as_deref(), Some("go mod download"));
        assert_eq!(plan.build.as_deref(), Some("mkdir -p .dmcp && go build -o .dmcp/app ./cmd/server"));
    }

    // Rust

    #[test]
    fn given_cargo_toml_when_detect_then_cargo_build_and_binary_start() {
        let manifest = "[package]\nname = \"hello-web\" # the binary\nversion = \"0.1.0\"\n\n[dependencies]\n";
        let app = app().file("Cargo.toml", manifest);
        let expected = plan(Provider::Rust, None, Some("cargo build --release"), Some("./target/release/hello-web"));
        assert_eq!(app.detect().unwrap(), expected);
    }

    #[test]
    fn given_cargo_toml_with_dependencies_and_a_bin_when_detect_then_fetch_and_start_the_bin() {
        let manifest =
            "[package]\nname = \"x\"\n\n[[bin]]\nname = \"server\"\n\n[dependencies.serde]\nversion = \"1\"\n";
        let plan = app().file("Cargo.toml", manifest).detect().unwrap();
        assert_eq!(plan.install.as_deref(), Some("cargo fetch"));
        assert_eq!(plan.start.as_deref(), Some("./target/release/server"));
    }

    #[test]
    fn given_workspace_cargo_toml_when_detect_then_no_start_command_unless_overridden() {
        let app = app().file("Cargo.toml", "[workspace]\nmembers = [\"a\"]\n");
        assert!(matches!(app.detect(), Err(PlanError::NoStartCommand { provider: Provider::Rust, .. })));
        let expected = plan(Provider::Rust, None, Some("cargo build --release"), Some("./target/release/a"));
        assert_eq!(app.detect_with(start("./target/release/a")).unwrap(), expected);
    }

    // Static

    #[test]
    fn given_index_html_at_root_when_detect_then_static_root_dot() {
        let app = app().file("index.html", "<h1>hi</h1>").file("style.css", "");
        assert_eq!(app.detect().unwrap(), static_plan("."));
        assert_eq!(app.detect().unwrap().describe(), "static: serve `.`");
    }

    #[test]
    fn given_public_index_html_when_detect_then_static_root_public() {
        let app = app().file("public/index.html", "");
        assert_eq!(app.detect().unwrap(), static_plan("public"));
    }

    // Procfile

    #[test]
    fn given_procfile_web_and_python_when_detect_then_procfile_start_with_python_install() {
        let app = app()
            .file("Procfile", "release: python3 migrate.py\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\n")
            .file("requirements.txt", "gunicorn\n")
            .file("app.py", "");
        let expected = plan(
            Provider::Procfile,
            Some("pip install -r requirements.txt"),
            None,
            Some("gunicorn app:app --bind 0.0.0.0:$PORT"),
        );
        assert_eq!(app.detect().unwrap(), expected);
    }

    #[test]
    fn given_only_a_procfile_when_detect_then_procfile() {
        let app = app().file("Procfile", "web: ./run.sh\n");
        assert_eq!(app.detect().unwrap(), plan(Provider::Procfile, None, None, Some("./run.sh")));
    }

    #[test]
    fn given_procfile_and_static_site_when_detect_then_procfile_runs_instead_of_serving() {
        let app = app().file("Procfile", "web: busybox httpd -f -p $PORT\n").file("index.html", "");
        assert_eq!(app.detect().unwrap(), plan(Provider::Procfile, None, None, Some("busybox httpd -f -p $PORT")));
    }

    #[test]
    fn given_procfile_without_web_line_when_detect_then_it_is_ignored() {
        let app = app().file("Procfile", "worker: python3 worker.py\n").file("main.py", "");
        assert_eq!(app.detect().unwrap().provider, Provider::Python);
    }

    // Ordering

    #[test]
    fn given_go_mod_and_package_json_when_detect_then_go_wins() {
        let app = app().file("go.mod", "module x").file("package.json", "{}").file("main.go", "");
        assert_eq!(app.detect().unwrap().provider, Provider::Go);
    }

    #[test]
    fn given_requirements_and_package_json_when_detect_then_python_wins() {
        let app = app().file("requirements.txt", "").file("main.py", "").file("package.json", "{not json");
        assert_eq!(app.detect().unwrap().provider, Provider::Python);
    }

    #[test]
    fn given_package_json_and_index_html_when_detect_then_node_wins() {
        let app = app().file("package.json", r#"{"scripts": {"start": "node s.js"}}"#).file("index.html", "");
        assert_eq!(app.detect().unwrap().provider, Provider::Node);
    }

    // Overrides

    #[test]
    fn given_overrides_when_detect_then_they_replace_detected_commands() {
        let app = app().file("package.json", r#"{"dependencies": {"a": "1"}, "scripts": {"start": "node s.js"}}"#);
        let overrides = Overrides {
            install_command: Some("npm install --omit=dev".into()),
            build_command: Some("make".into()),
            start_command: Some("node s.js --port $PORT".into()),
            ..Overrides::default()
        };
        let expected =
            plan(Provider::Node, Some("npm install --omit=dev"), Some("make"), Some("node s.js --port $PORT"));
        assert_eq!(app.detect_with(overrides).unwrap(), expected);
    }

    #[test]
    fn given_blank_overrides_when_detect_then_they_are_ignored() {
        let app = app().file("main.py", "");
        let overrides = Overrides {
            start_command: Some("  ".into()),
            install_command: Some(String::new()),
            ..Overrides::default()
        };
        assert_eq!(app.detect_with(overrides).unwrap(), plan(Provider::Python, None, None, Some("python3 main.py")));
    }

    #[test]
    fn given_nothing_detected_and_start_override_when_detect_then_custom() {
        let app = app().file("run.sh", "");
        let overrides = Overrides { build_command: Some("make".into()), ..start("./run.sh") };
        assert_eq!(app.detect_with(overrides).unwrap(), plan(Provider::Custom, None, Some("make"), Some("./run.sh")));
    }

    #[test]
    fn given_static_site_and_start_override_when_detect_then_custom_without_static_root() {
        let app = app().file("index.html", "");
        let expected = plan(Provider::Custom, None, None, Some("python3 -m http.server $PORT"));
        assert_eq!(app.detect_with(start("python3 -m http.server $PORT")).unwrap(), expected);
    }

    // Forced build packs

    #[test]
    fn given_dockerfile_pack_and_a_dockerfile_when_detect_then_dockerfile() {
        let app = app().file("Dockerfile", "FROM scratch\n").file("package.json", "{broken");
        let plan = app.detect_with(pack(BuildPack::Dockerfile)).unwrap();
        assert_eq!(plan, plan_dockerfile());
        assert_eq!(plan.describe(), "dockerfile: build the image from `Dockerfile`");
    }

    fn plan_dockerfile() -> Plan {
        plan(Provider::Dockerfile, None, None, None)
    }

    #[test]
    fn given_dockerfile_pack_without_dockerfile_when_detect_then_no_dockerfile() {
        let err = app().file("main.py", "").detect_with(pack(BuildPack::Dockerfile)).unwrap_err();
        assert_eq!(err, PlanError::NoDockerfile);
        assert!(err.to_string().contains("no Dockerfile"), "{err}");
    }

    #[test]
    fn given_dockerfile_pack_and_install_override_when_detect_then_conflict() {
        let app = app().file("Dockerfile", "FROM scratch\n");
        let overrides = Overrides { install_command: Some("npm ci".into()), ..pack(BuildPack::Dockerfile) };
        assert!(matches!(app.detect_with(overrides), Err(PlanError::Conflict(_))));
    }

    #[test]
    fn given_static_pack_and_a_python_app_with_public_when_detect_then_static_public() {
        let app = app().file("main.py", "").file("public/index.html", "");
        assert_eq!(app.detect_with(pack(BuildPack::Static)).unwrap(), static_plan("public"));
    }

    #[test]
    fn given_static_pack_and_a_node_build_when_detect_then_build_into_dist() {
        let app = app()
            .file("package.json", r#"{"scripts": {"build": "vite build", "start": "vite preview"}}"#)
            .file("index.html", "");
        let expected = Plan { build: Some("npm run build".into()), ..static_plan("dist") };
        assert_eq!(app.detect_with(pack(BuildPack::Static)).unwrap(), expected);
    }

    #[test]
    fn given_static_pack_without_index_html_when_detect_then_error_says_where_it_looked() {
        let err = app().file("main.py", "").detect_with(pack(BuildPack::Static)).unwrap_err();
        assert_eq!(err, PlanError::NoStaticRoot);
        let message = err.to_string();
        assert!(
            ["index.html", "public/index.html", "dist/index.html"].iter().all(|p| message.contains(p)),
            "{message}"
        );
    }

    #[test]
    fn given_static_pack_and_start_override_when_detect_then_conflict() {
        let app = app().file("index.html", "");
        let overrides = Overrides { build_pack: BuildPack::Static, ..start("./serve") };
        assert!(matches!(app.detect_with(overrides), Err(PlanError::Conflict(_))));
    }

    // Nothing detected

    #[test]
    fn given_nothing_known_when_detect_then_nothing_detected_with_instructions() {
        let err = app().file("README.md", "hi").detect().unwrap_err();
        assert_eq!(err, PlanError::NothingDetected { dockerfile_present: false });
        let message = err.to_string();
        for expected in ["package.json", "requirements.txt", "go.mod", "Cargo.toml", "Procfile", "index.html"] {
            assert!(message.contains(expected), "{expected} missing from: {message}");
        }
        assert!(message.contains("`start_command`") && message.contains("`build_pack: static`"), "{message}");
        assert!(!message.contains("dockerfile"), "{message}");
    }

    #[test]
    fn given_only_a_dockerfile_when_detect_then_nothing_detected_suggests_dockerfile_pack() {
        let err = app().file("Dockerfile", "FROM scratch").detect().unwrap_err();
        assert!(err.to_string().contains("`build_pack: dockerfile`"), "{err}");
    }

    // Weird input

    #[test]
    fn given_a_huge_package_json_when_detect_then_unreadable_not_read_whole() {
        let huge = format!("{{\"description\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
        let err = app().file("package.json", huge).detect().unwrap_err();
        assert!(matches!(&err, PlanError::Unreadable { file, .. } if file == "package.json"), "{err:?}");
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    #[test]
    fn given_non_utf8_package_json_when_detect_then_unreadable() {
        let err = app().file("package.json", b"{\"name\": \"\xff\xfe\"}").detect().unwrap_err();
        assert!(matches!(&err, PlanError::Unreadable { file, .. } if file == "package.json"), "{err:?}");
    }

    #[test]
    fn given_package_json_with_byte_order_mark_when_detect_then_parsed() {
        let app = app().file("package.json", "\u{feff}{\"scripts\": {\"start\": \"node a.js\"}}");
        assert_eq!(app.detect().unwrap().start.as_deref(), Some("npm start"));
    }

    #[test]
    fn given_a_symlink_out_of_the_checkout_when_detect_then_it_is_not_followed() {
        let outside = app().file("package.json", r#"{"scripts": {"start": "node secret.js"}}"#);
        let app = app();
        std::os::unix::fs::symlink(outside.0.join("package.json"), app.0.join("package.json")).unwrap();
        std::os::unix::fs::symlink(&outside.0, app.0.join("public")).unwrap();
        assert_eq!(app.detect().unwrap_err(), PlanError::NothingDetected { dockerfile_present: false });
    }

    #[test]
    fn given_a_symlink_inside_the_checkout_when_detect_then_it_is_followed() {
        let app = app().file("web/package.json", r#"{"scripts": {"start": "node s.js"}}"#);
        std::os::unix::fs::symlink("web/package.json", app.0.join("package.json")).unwrap();
        assert_eq!(app.detect().unwrap().start.as_deref(), Some("npm start"));
    }

    #[test]
    fn given_a_directory_named_like_a_marker_when_detect_then_it_is_ignored() {
        let app = app().file("package.json/x", "").file("index.html", "");
        assert_eq!(app.detect().unwrap(), static_plan("."));
    }

    #[test]
    fn given_a_missing_directory_when_detect_then_unreadable() {
        let missing = std::env::temp_dir().join("dmcp-plan-does-not-exist");
        assert!(matches!(detect(&missing, &Overrides::default()), Err(PlanError::Unreadable { .. })));
    }

    // Key

    #[test]
    fn given_the_same_plan_when_keyed_twice_then_the_same_key() {
        let a = plan(Provider::Node, Some("npm ci"), None, Some("npm start"));
        let b = a.clone();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().len(), 64);
        assert!(a.key().chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn given_plans_differing_in_one_command_when_keyed_then_different_keys() {
        let a = plan(Provider::Node, Some("npm ci"), None, Some("npm start"));
        let b = plan(Provider::Node, Some("npm ci"), None, Some("node server.js"));
        let c = plan(Provider::Node, None, Some("npm ci"), Some("npm start"));
        assert_ne!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
    }

    #[test]
    fn given_a_plan_when_serialised_then_provider_is_snake_case_and_round_trips() {
        let plan = static_plan("dist");
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["provider"], "static");
        assert_eq!(serde_json::from_value::<Plan>(json).unwrap(), plan);
        let procfile = serde_json::to_value(Provider::Procfile).unwrap();
        assert_eq!(procfile, "procfile");
    }

    #[test]
    fn given_a_plan_when_keyed_then_the_key_is_pinned() {
        // Pinned so that a change to the plan's serialisation, which would orphan every cached build, is deliberate.
        let plan = plan(Provider::Python, None, None, Some("python3 main.py"));
        assert_eq!(
            serde_json::to_string(&plan).unwrap(),
            r#"{"provider":"python","install":null,"build":null,"start":"python3 main.py","static_root":null}"#
        );
        assert_eq!(plan.key(), hex::encode(Sha256::digest(serde_json::to_vec(&plan).unwrap())));
    }
}
