//! Build-plan detection: what toolchains, package managers and commands turn a checkout into a running app,
//! decided from the checkout's files.
//!
//! Like Railpack, providers are tried in a fixed order and the first that matches wins:
//! Go (`go.mod`, [`go`]), Rust (`Cargo.toml`, [`rust`]), Python (`requirements.txt`, `pyproject.toml`,
//! `Pipfile`, `manage.py`, `main.py`, ..., [`python`]), Node (`package.json`, [`node`]), then a static site
//! (`index.html`, `public/index.html`). A `Procfile` `web:` line then replaces the start command (the
//! language's install and build still run), and the caller's overrides replace whatever was detected.
//!
//! A plan is what the builder needs and nothing of the machine: toolchains as the app's files ask for them
//! (the builder resolves and mounts them), package-manager CLIs to install, commands that never name a
//! registry, a cache directory or an absolute toolchain path (the builder sets those through the package
//! managers' own variables), the variables and `PATH` entries the app's steps and process need, and which
//! files determine the installed dependencies (so an unchanged lock file restores them from a cache).
//!
//! Architecture Invariant: detection is pure. It reads a handful of small files under the checkout and
//! runs no process; it knows nothing of sandboxes, the bus or the store. Reads are capped and never follow
//! a symlink out of the checkout, because the checkout is untrusted input ([`checkout`]).

mod checkout;
mod go;
mod node;
mod python;
mod rust;
#[cfg(test)]
mod testkit;
mod toml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use events::BuildPack;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toolchains::Request;

use checkout::Checkout;

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

/// Where a package-manager CLI is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolRegistry {
    Npm,
    Pypi,
}

/// A package-manager CLI the steps need beyond the toolchain, at an exact version: the builder installs
/// `name@version` from `registry` and puts its executables on `PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageTool {
    /// The package's name in its registry (`pnpm`, `yarn`, `@yarnpkg/cli-dist`, `uv`, `poetry`, `pipenv`).
    pub name: String,
    pub version: String,
    pub registry: ToolRegistry,
}

/// The install's dependency directories and the files that determine them: when none of `inputs` changed
/// (nor the toolchains or the install command), `outputs` can be restored instead of running the install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deps {
    /// Files relative to the app root, e.g. `package.json`, `package-lock.json`, `.npmrc`.
    pub inputs: Vec<String>,
    /// Paths relative to the app root that the install writes, e.g. `node_modules` or `.venv`.
    pub outputs: Vec<String>,
}

/// How to turn a checkout into a running app.
///
/// Commands are shell commands (`/bin/sh -c`) run in `/app`; they name no registry, cache or toolchain path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub provider: Provider,
    /// Toolchains the steps and the app need, with the constraint as the app's files state it.
    pub toolchains: Vec<Request>,
    /// Package-manager CLIs the install/build need beyond the toolchain (pnpm, yarn, uv, poetry, pipenv).
    pub tools: Vec<PackageTool>,
    /// The package manager that runs `install` (pip, uv, poetry, pipenv, npm, yarn, pnpm, go, cargo): named
    /// in a `dependency_install_failed` failure.
    pub package_manager: Option<String>,
    pub install: Option<String>,
    pub build: Option<String>,
    /// After build: what the app does not need at run time goes (e.g. `npm prune --omit=dev`).
    pub prune: Option<String>,
    /// What runs the app (`/bin/sh -c`, with `PORT` set); None for a static site, which the router serves.
    pub start: Option<String>,
    /// For static sites: the directory to serve, relative to the app root ("." or "public" or e.g. "dist"
    /// after a build).
    pub static_root: Option<String>,
    /// Variables for every step and at run time (VIRTUAL_ENV, PYTHONUNBUFFERED, NODE_ENV, HOST, CGO_ENABLED, ...).
    pub env: BTreeMap<String, String>,
    /// Guest directories put first on PATH in steps and at run time (e.g. /app/.venv/bin, /app/node_modules/.bin).
    pub path: Vec<String>,
    /// The install's dependency directories and the files that determine them; None when they cannot be
    /// cached safely (the install also builds the app's own code, or runs the app's install scripts).
    pub deps: Option<Deps>,
}

impl Plan {
    /// A plan of `provider` that does nothing yet.
    pub fn new(provider: Provider) -> Plan {
        Plan {
            provider,
            toolchains: Vec::new(),
            tools: Vec::new(),
            package_manager: None,
            install: None,
            build: None,
            prune: None,
            start: None,
            static_root: None,
            env: BTreeMap::new(),
            path: Vec::new(),
            deps: None,
        }
    }

    /// A stable content key of the plan (hex sha256 of its canonical JSON): with the commit SHA it addresses
    /// the build output.
    ///
    /// Canonical because serde writes the fields in declaration order with no whitespace and `env` is a
    /// sorted map; changing the struct changes every key, which is what a cache of build outputs wants.
    pub fn key(&self) -> String {
        let json = serde_json::to_vec(self).expect("a plan of strings, lists, maps and enums always serialises");
        hex::encode(Sha256::digest(&json))
    }

    /// One line for logs and agents, e.g.
    /// "python 3.11 (.python-version), pip: install `…`, start `gunicorn …`" or
    /// "static, node 20 (.nvmrc), pnpm 9.15.0: install `…`, build `pnpm run build`, serve `dist`".
    pub fn describe(&self) -> String {
        let mut head = Vec::new();
        let own_toolchain = self.toolchains.first().is_some_and(|t| t.tool.as_str() == self.provider.as_str());
        if !own_toolchain {
            head.push(self.provider.as_str().to_owned());
        }
        for toolchain in &self.toolchains {
            head.push(match (&toolchain.constraint, &toolchain.from) {
                (Some(constraint), Some(from)) => format!("{} {constraint} ({from})", toolchain.tool),
                (Some(constraint), None) => format!("{} {constraint}", toolchain.tool),
                (None, _) => toolchain.tool.to_string(),
            });
        }
        if let Some(manager) = &self.package_manager {
            let tool = self.tools.iter().find(|t| t.name == *manager || node::is_tool_of(&t.name, manager));
            head.push(match tool {
                Some(tool) => format!("{manager} {}", tool.version),
                None => manager.clone(),
            });
        }
        let steps: Vec<String> = [
            ("install", &self.install),
            ("build", &self.build),
            ("prune", &self.prune),
            ("start", &self.start),
            ("serve", &self.static_root),
        ]
        .into_iter()
        .filter_map(|(step, command)| command.as_ref().map(|c| format!("{step} `{c}`")))
        .collect();
        if steps.is_empty() {
            // Only a Dockerfile plan without a start override has no step of ours: the image says it all.
            return format!("{}: build the image from `Dockerfile`", head.join(", "));
        }
        format!("{}: {}", head.join(", "), steps.join(", "))
    }
}

/// Why no plan could be made. All of them are the repository's or the settings' fault; each message says
/// what to change, because agents act on it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error(
        "no app detected at the repository root: looked for go.mod (Go), Cargo.toml (Rust), \
         requirements.txt, pyproject.toml, Pipfile, setup.py, manage.py, main.py, app.py, server.py, wsgi.py or \
         asgi.py (Python), package.json (Node), a Procfile with a `web:` line, and index.html or public/index.html \
         (static site). Set `start_command` to the command that runs the app, or `build_pack: static` to serve \
         the files{}",
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
        "{found} says the app uses {manager}, which the platform does not support yet: install the dependencies \
         with npm, pnpm or yarn instead (for example run `npm install` and commit package-lock.json, then delete \
         {found}), or set `install_command` to an npm, pnpm or yarn command"
    )]
    UnsupportedPackageManager { manager: String, found: String },

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
    Ok(Plan { start: overrides.start.clone(), ..Plan::new(Provider::Dockerfile) })
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
        Some(package) => Some(node::detect(checkout, &package, overrides.install.is_some())?),
        None => None,
    };
    // A build script comes first: the index.html of a Vite source tree or CRA's public/ is a template, not the
    // site. A build override on a Node app without a committed site still needs the app's install.
    let plan = match (node, committed_static_root(checkout)) {
        (Some(node), _) if node.plan.build.is_some() => node.into_static(),
        (Some(node), None) if overrides.build.is_some() => node.into_static(),
        (_, Some(root)) => Plan { static_root: Some(root.to_owned()), ..Plan::new(Provider::Static) },
        (_, None) if overrides.build.is_some() => {
            Plan { static_root: Some("dist".into()), ..Plan::new(Provider::Static) }
        }
        (_, None) => return Err(PlanError::NoStaticRoot),
    };
    Ok(overrides.apply(plan))
}

fn railpack(checkout: &Checkout, overrides: &Normalised) -> Result<Plan, PlanError> {
    let detected = detect_language(checkout, overrides)?;
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
        (None, Some(web)) => Plan { start: Some(web), ..Plan::new(Provider::Procfile) },
        (None, None) => match committed_static_root(checkout) {
            Some(root) => Plan { static_root: Some(root.to_owned()), ..Plan::new(Provider::Static) },
            None if overrides.start.is_some() => Plan::new(Provider::Custom),
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

fn detect_language(checkout: &Checkout, overrides: &Normalised) -> Result<Option<Detected>, PlanError> {
    if checkout.is_file("go.mod") {
        return go::detect(checkout).map(Some);
    }
    if let Some(manifest) = checkout.read("Cargo.toml")? {
        return rust::detect(checkout, &manifest).map(Some);
    }
    if python::MARKERS.iter().any(|f| checkout.is_file(f)) {
        return python::detect(checkout).map(Some);
    }
    if let Some(package) = checkout.package_json()? {
        let node = node::detect(checkout, &package, overrides.install.is_some())?;
        return Ok(Some(node.into_detected()));
    }
    Ok(None)
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
    /// The caller's commands replace the detected ones. An install override also drops the detected prune:
    /// the caller now decides what gets installed, and a prune written for the detected install could undo it.
    fn apply(&self, plan: Plan) -> Plan {
        Plan {
            prune: if self.install.is_some() { None } else { plan.prune },
            install: self.install.clone().or(plan.install),
            build: self.build.clone().or(plan.build),
            start: self.start.clone().or(plan.start),
            ..plan
        }
    }
}

/// A toolchain request from a file, trimmed; a blank constraint is no constraint.
fn request(tool: toolchains::Tool, constraint: Option<String>, from: &str) -> Request {
    match constraint.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()) {
        Some(constraint) => Request { tool, constraint: Some(constraint), from: Some(from.to_owned()) },
        None => Request { tool, constraint: None, from: None },
    }
}

/// The first line of a version file that is neither blank nor a comment.
fn first_line(text: &str) -> Option<String> {
    text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned)
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::testkit::{app, pack, start};
    use super::*;
    use toolchains::Tool;

    fn plan(provider: Provider, install: Option<&str>, build: Option<&str>, start: Option<&str>) -> Plan {
        Plan {
            install: install.map(Into::into),
            build: build.map(Into::into),
            start: start.map(Into::into),
            ..Plan::new(provider)
        }
    }

    fn static_plan(root: &str) -> Plan {
        Plan { static_root: Some(root.into()), ..Plan::new(Provider::Static) }
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
    fn given_procfile_web_and_python_when_detect_then_procfile_start_with_the_python_install() {
        let app = app()
            .file("Procfile", "worker: python3 worker.py\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\n")
            .file("requirements.txt", "gunicorn\n")
            .file("app.py", "");
        let plan = app.detect().unwrap();
        assert_eq!(plan.provider, Provider::Procfile);
        assert_eq!(plan.install.as_deref(), Some("python3 -m venv .venv && pip install -r requirements.txt"));
        assert_eq!(plan.start.as_deref(), Some("gunicorn app:app --bind 0.0.0.0:$PORT"));
        assert_eq!(plan.path, ["/app/.venv/bin"]);
        assert_eq!(plan.toolchains[0].tool, Tool::Python);
        assert_eq!(
            plan.describe(),
            "procfile, python, pip: install `python3 -m venv .venv && pip install -r requirements.txt`, \
             start `gunicorn app:app --bind 0.0.0.0:$PORT`"
        );
    }

    #[test]
    fn given_a_procfile_release_line_when_detect_then_it_runs_before_the_web_process() {
        let app = app()
            .file("Procfile", "release: python manage.py migrate --noinput\nweb: gunicorn mysite.wsgi --log-file -\n")
            .file("requirements.txt", "django\ngunicorn\n")
            .file("manage.py", "");
        let start = app.detect().unwrap().start.unwrap();
        assert_eq!(start, "python manage.py migrate --noinput && gunicorn mysite.wsgi --log-file -");
        let app = app.file("Procfile", "release: ./migrate\n");
        assert_eq!(app.detect().unwrap().provider, Provider::Python, "a release line alone starts nothing");
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
    fn given_overrides_when_detect_then_they_replace_detected_commands_and_drop_the_prune() {
        let app = app()
            .file(
                "package.json",
                r#"{"dependencies": {"a": "1"}, "devDependencies": {"b": "1"}, "scripts": {"start": "node s.js"}}"#,
            )
            .file("package-lock.json", "{}");
        assert_eq!(app.detect().unwrap().prune.as_deref(), Some("npm prune --omit=dev"));
        let overrides = Overrides {
            install_command: Some("npm install --omit=dev".into()),
            build_command: Some("make".into()),
            start_command: Some("node s.js --port $PORT".into()),
            ..Overrides::default()
        };
        let plan = app.detect_with(overrides).unwrap();
        assert_eq!(plan.provider, Provider::Node);
        assert_eq!(plan.install.as_deref(), Some("npm install --omit=dev"));
        assert_eq!(plan.build.as_deref(), Some("make"));
        assert_eq!(plan.start.as_deref(), Some("node s.js --port $PORT"));
        assert_eq!(plan.prune, None);
        assert_eq!(plan.package_manager.as_deref(), Some("npm"));
    }

    #[test]
    fn given_blank_overrides_when_detect_then_they_are_ignored() {
        let app = app().file("main.py", "");
        let overrides = Overrides {
            start_command: Some("  ".into()),
            install_command: Some(String::new()),
            ..Overrides::default()
        };
        let plan = app.detect_with(overrides).unwrap();
        assert_eq!((plan.install, plan.start.as_deref()), (None, Some("python3 main.py")));
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
        assert_eq!(plan, Plan::new(Provider::Dockerfile));
        assert_eq!(plan.describe(), "dockerfile: build the image from `Dockerfile`");
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
        let plan = app.detect_with(pack(BuildPack::Static)).unwrap();
        assert_eq!(plan.provider, Provider::Static);
        assert_eq!((plan.build.as_deref(), &plan.start, &plan.prune), (Some("npm run build"), &None, &None));
        assert_eq!(plan.static_root.as_deref(), Some("dist"));
        assert_eq!(plan.toolchains, [Request { tool: Tool::Node, constraint: None, from: None }]);
        assert_eq!(plan.describe(), "static, node: build `npm run build`, serve `dist`");
    }

    #[test]
    fn given_static_pack_and_a_build_override_on_a_node_app_when_detect_then_its_install_runs() {
        let app = app().file("package.json", r#"{"dependencies": {"x": "1"}}"#).file("package-lock.json", "{}");
        let overrides = Overrides { build_command: Some("node gen.js".into()), ..pack(BuildPack::Static) };
        let plan = app.detect_with(overrides).unwrap();
        assert_eq!(plan.install.as_deref(), Some("npm ci --include=dev"));
        assert_eq!((plan.build.as_deref(), plan.static_root.as_deref()), (Some("node gen.js"), Some("dist")));
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
        let app = app().symlink(outside.0.join("package.json"), "package.json").symlink(&outside.0, "public");
        assert_eq!(app.detect().unwrap_err(), PlanError::NothingDetected { dockerfile_present: false });
    }

    #[test]
    fn given_a_symlink_inside_the_checkout_when_detect_then_it_is_followed() {
        let app = app()
            .file("web/package.json", r#"{"scripts": {"start": "node s.js"}}"#)
            .symlink("web/package.json", "package.json");
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

    // Describe

    #[test]
    fn given_toolchains_and_a_pinned_tool_when_described_then_they_are_named_in_one_line() {
        let plan = Plan {
            toolchains: vec![request(Tool::Node, Some("20".into()), ".nvmrc")],
            tools: vec![PackageTool { name: "pnpm".into(), version: "9.15.0".into(), registry: ToolRegistry::Npm }],
            package_manager: Some("pnpm".into()),
            install: Some("pnpm install --frozen-lockfile --prod=false".into()),
            build: Some("pnpm run build".into()),
            static_root: Some("dist".into()),
            ..Plan::new(Provider::Static)
        };
        assert_eq!(
            plan.describe(),
            "static, node 20 (.nvmrc), pnpm 9.15.0: install `pnpm install --frozen-lockfile --prod=false`, \
             build `pnpm run build`, serve `dist`"
        );
        let python = Plan {
            toolchains: vec![request(Tool::Python, Some("3.11".into()), ".python-version")],
            package_manager: Some("pip".into()),
            install: Some("i".into()),
            start: Some("s".into()),
            ..Plan::new(Provider::Python)
        };
        assert_eq!(python.describe(), "python 3.11 (.python-version), pip: install `i`, start `s`");
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
    fn given_plans_differing_in_one_field_when_keyed_then_different_keys() {
        let a = plan(Provider::Node, Some("npm ci"), None, Some("npm start"));
        let b = plan(Provider::Node, Some("npm ci"), None, Some("node server.js"));
        let c = plan(Provider::Node, None, Some("npm ci"), Some("npm start"));
        let d = Plan { env: env(&[("NODE_ENV", "production")]), ..a.clone() };
        let e = Plan { toolchains: vec![request(Tool::Node, Some("20".into()), ".nvmrc")], ..a.clone() };
        let keys = [a.key(), b.key(), c.key(), d.key(), e.key()];
        for (i, x) in keys.iter().enumerate() {
            assert!(keys[i + 1..].iter().all(|y| y != x), "{keys:?}");
        }
    }

    #[test]
    fn given_a_plan_when_serialised_then_provider_is_snake_case_and_round_trips() {
        let plan = Plan {
            tools: vec![PackageTool { name: "uv".into(), version: "0.13.9".into(), registry: ToolRegistry::Pypi }],
            deps: Some(Deps { inputs: vec!["uv.lock".into()], outputs: vec![".venv".into()] }),
            ..static_plan("dist")
        };
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["provider"], "static");
        assert_eq!(json["tools"][0]["registry"], "pypi");
        assert_eq!(serde_json::from_value::<Plan>(json).unwrap(), plan);
        let procfile = serde_json::to_value(Provider::Procfile).unwrap();
        assert_eq!(procfile, "procfile");
    }

    #[test]
    fn given_a_plan_when_keyed_then_the_key_is_pinned() {
        // Pinned so that a change to the plan's serialisation, which would orphan every cached build, is deliberate.
        let plan = Plan {
            toolchains: vec![request(Tool::Python, Some("3.11".into()), ".python-version")],
            env: env(&[("PYTHONUNBUFFERED", "1")]),
            path: vec!["/app/.venv/bin".into()],
            ..plan(Provider::Python, None, None, Some("python3 main.py"))
        };
        assert_eq!(
            serde_json::to_string(&plan).unwrap(),
            r#"{"provider":"python","toolchains":[{"tool":"python","constraint":"3.11","from":".python-version"}],"tools":[],"package_manager":null,"install":null,"build":null,"prune":null,"start":"python3 main.py","static_root":null,"env":{"PYTHONUNBUFFERED":"1"},"path":["/app/.venv/bin"],"deps":null}"#
        );
        assert_eq!(plan.key(), "7da9ac76c952370da789a39cdb9cd90e6e4d0f956ac5328b3cb4a3f2748240ee");
    }
}
