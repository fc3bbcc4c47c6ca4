//! Python: a virtualenv per build at `/app/.venv` (never the system Python, which PEP 668 closes), filled by
//! the package manager the app's files name, and a start command like Railpack's.
//!
//! - Toolchain: `.python-version` (first non-comment line), `runtime.txt` (`python-3.11.4`), `pyproject.toml`
//!   `[project] requires-python`, poetry's `[tool.poetry.dependencies] python`, `Pipfile` `[requires]`; the
//!   first found wins.
//! - Package manager: `uv.lock` → uv, `poetry.lock` → poetry, `Pipfile.lock` → pipenv, `requirements.txt` →
//!   pip, `Pipfile` without its lock → pipenv, `pyproject.toml` with a build backend or `setup.py` →
//!   `pip install .`, `pyproject.toml` with only `[project] dependencies` → pip installs those (building a
//!   directory without a backend fails on flat layouts), poetry dependencies without a lock → poetry.
//! - Start: Django (`manage.py`: migrate, then gunicorn on the project's WSGI module, `collectstatic` at build
//!   when STATIC_ROOT is set), FastAPI (uvicorn), Flask (gunicorn, else the Flask CLI), else `python3 main.py`
//!   (app.py, server.py). The modules looked into are [`ROOT_MODULES`], then [`PACKAGE_MODULES`] of an `app/`
//!   package and of at most [`MAX_SRC_PACKAGES`] packages under `src/` (started with `src` on the path).
//!
//! Commands call `python3`: it exists in every venv and toolchain, where `python` may not.

use std::collections::BTreeSet;

use toolchains::Tool;

use super::checkout::{Checkout, SKIM_LOCK, SKIM_SOURCE, is_safe_word, join_relative, shell_quote};
use super::toml::Toml;
use super::{Deps, Detected, PackageTool, Plan, PlanError, Provider, ToolRegistry, env, first_line, request};

/// Files that mark a Python app.
pub(super) const MARKERS: [&str; 10] = [
    "requirements.txt",
    "pyproject.toml",
    "Pipfile",
    "setup.py",
    "manage.py",
    "main.py",
    "app.py",
    "server.py",
    "wsgi.py",
    "asgi.py",
];

/// uv, poetry and pipenv at versions checked to install from PyPI and to run on CPython 3.11.
pub(super) const UV_VERSION: &str = "0.13.9";
/// A uv project's install: the lock's main dependencies, exactly, into /app/.venv (the project itself
/// is not installed, as `uv sync --no-install-project` would not).
const UV_INSTALL: &str = "uv venv --allow-existing --quiet .venv && uv export --frozen --no-dev --no-emit-project \
                          --no-header --quiet -o /tmp/requirements.txt && uv pip sync /tmp/requirements.txt";
pub(super) const POETRY_VERSION: &str = "2.5.1";
pub(super) const PIPENV_VERSION: &str = "2026.10.3";

const VENV: &str = "/app/.venv";
/// Entry points started with `python3 <file>` when no framework was recognised, in the order tried.
const ENTRIES: [&str; 3] = ["main.py", "app.py", "server.py"];
/// Modules at the root looked into for a FastAPI or Flask app, in order.
const ROOT_MODULES: [&str; 6] = ["main.py", "app.py", "server.py", "asgi.py", "wsgi.py", "application.py"];
/// Modules of a package (`app/`, `src/<pkg>/`) looked into, in order.
const PACKAGE_MODULES: [&str; 4] = ["main.py", "app.py", "server.py", "__init__.py"];
const MAX_SRC_PACKAGES: usize = 8;
/// `-r`/`-c` includes followed from requirements.txt, in all.
const MAX_REQUIREMENT_FILES: usize = 16;
/// Files of a split Django settings package looked into.
const MAX_SETTINGS_FILES: usize = 16;

pub(super) fn detect(checkout: &Checkout) -> Result<Detected, PlanError> {
    let pyproject = checkout.read("pyproject.toml")?.map(|t| Toml::parse("pyproject.toml", &t)).transpose()?;
    let pipfile = checkout.read("Pipfile")?.map(|t| Toml::parse("Pipfile", &t));
    let requirements = Requirements::read(checkout)?;
    let manager = Manager::choose(checkout, pyproject.as_ref(), pipfile.is_some(), &requirements);
    // A Pipfile that does not parse fails the plan only when pipenv installs from it, as it would fail the
    // install. Next to a requirements.txt or another lock it is usually stale, and pip, uv and poetry never
    // read it: it is then ignored, Python version included.
    let pipfile = match pipfile {
        Some(Err(error)) if matches!(manager, Some(Manager::Pipenv { .. })) => return Err(error),
        pipfile => pipfile.and_then(Result::ok),
    };
    let toolchain = toolchain(checkout, pyproject.as_ref(), pipfile.as_ref())?;
    let names = dependency_names(checkout, pyproject.as_ref(), pipfile.as_ref(), &requirements);
    let (start, build) = start(checkout, &names)?;

    let mut vars = env(&[("PYTHONUNBUFFERED", "1"), ("VIRTUAL_ENV", VENV), ("PIP_DISABLE_PIP_VERSION_CHECK", "1")]);
    let mut plan = Plan {
        toolchains: vec![toolchain],
        start,
        build,
        path: vec![format!("{VENV}/bin")],
        ..Plan::new(Provider::Python)
    };
    if let Some(manager) = manager {
        vars.extend(env(manager.env()));
        plan.tools = manager.tool().into_iter().collect();
        plan.package_manager = Some(manager.name().to_owned());
        plan.install = Some(manager.install());
        plan.deps = manager.inputs(&requirements).map(|inputs| {
            let mut inputs = checkout.files(&inputs.iter().map(String::as_str).collect::<Vec<_>>());
            inputs.extend(checkout.files(&[".python-version"]));
            Deps { inputs, outputs: vec![".venv".into()] }
        });
    }
    plan.env = vars;
    let hint = "add a main.py, app.py or server.py (a FastAPI or Flask app in one of them is recognised, as is a \
                Django manage.py), or a Procfile `web:` line";
    Ok(Detected { plan, missing_start_hint: hint })
}

/// The interpreter the app asks for; the first file that states one wins.
fn toolchain(
    checkout: &Checkout,
    pyproject: Option<&Toml>,
    pipfile: Option<&Toml>,
) -> Result<toolchains::Request, PlanError> {
    if let Some(version) = checkout.read(".python-version")?.as_deref().and_then(first_line) {
        return Ok(request(Tool::Python, Some(version), ".python-version"));
    }
    let runtime = checkout.read("runtime.txt")?.as_deref().and_then(first_line);
    if let Some(version) = runtime.as_deref().and_then(|v| v.strip_prefix("python-")) {
        return Ok(request(Tool::Python, Some(version.to_owned()), "runtime.txt"));
    }
    let stated = [
        (pyproject, "project", "requires-python", "pyproject.toml requires-python"),
        (pyproject, "tool.poetry.dependencies", "python", "pyproject.toml tool.poetry.dependencies.python"),
        (pipfile, "requires", "python_full_version", "Pipfile requires.python_full_version"),
        (pipfile, "requires", "python_version", "Pipfile requires.python_version"),
    ];
    for (toml, table, key, from) in stated {
        if let Some(version) = toml.and_then(|t| t.string(table, key)).filter(|v| !v.trim().is_empty()) {
            return Ok(request(Tool::Python, Some(version), from));
        }
    }
    Ok(request(Tool::Python, None, ""))
}

/// Who fills the venv.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Manager {
    Uv,
    Poetry {
        locked: bool,
    },
    Pipenv {
        locked: bool,
    },
    /// `pip install -r requirements.txt`.
    Requirements,
    /// `pip install .`: the app is a package with a build backend (or setup.py).
    Project,
    /// A pyproject without a build backend: its `[project] dependencies`, installed by name.
    Listed(Vec<String>),
}

impl Manager {
    fn choose(
        checkout: &Checkout,
        pyproject: Option<&Toml>,
        pipfile: bool,
        requirements: &Requirements,
    ) -> Option<Self> {
        if checkout.is_file("uv.lock") {
            return Some(Manager::Uv);
        }
        if checkout.is_file("poetry.lock") {
            return Some(Manager::Poetry { locked: true });
        }
        if checkout.is_file("Pipfile.lock") {
            return Some(Manager::Pipenv { locked: true });
        }
        // An unlocked Pipfile next to a requirements.txt is usually the stale one.
        if requirements.entries {
            return Some(Manager::Requirements);
        }
        if pipfile {
            return Some(Manager::Pipenv { locked: false });
        }
        let setup = checkout.is_file("setup.py");
        let Some(pyproject) = pyproject else {
            return setup.then_some(Manager::Project);
        };
        if pyproject.has_table("build-system") || setup {
            return Some(Manager::Project);
        }
        // Requirement strings go into the command one shell word each; a name always starts alphanumeric.
        let listed: Vec<String> = pyproject
            .strings("project", "dependencies")
            .into_iter()
            .filter(|spec| spec.starts_with(|c: char| c.is_ascii_alphanumeric()))
            .collect();
        if !listed.is_empty() {
            return Some(Manager::Listed(listed));
        }
        let poetry = pyproject.keys("tool.poetry.dependencies").iter().any(|k| *k != "python");
        poetry.then_some(Manager::Poetry { locked: false })
    }

    fn name(&self) -> &'static str {
        match self {
            Manager::Uv => "uv",
            Manager::Poetry { .. } => "poetry",
            Manager::Pipenv { .. } => "pipenv",
            Manager::Requirements | Manager::Project | Manager::Listed(_) => "pip",
        }
    }

    fn tool(&self) -> Option<PackageTool> {
        let version = match self {
            Manager::Uv => UV_VERSION,
            Manager::Poetry { .. } => POETRY_VERSION,
            Manager::Pipenv { .. } => PIPENV_VERSION,
            _ => return None,
        };
        Some(PackageTool { name: self.name().to_owned(), version: version.to_owned(), registry: ToolRegistry::Pypi })
    }

    /// The install command. `PATH` lists `/app/.venv/bin` first, so once `python3 -m venv .venv` made it,
    /// `pip` is the venv's; poetry and pipenv find the venv through `VIRTUAL_ENV` and install into it.
    fn install(&self) -> String {
        let venv = "python3 -m venv .venv";
        match self {
            // Not `uv sync --locked`: against a mirror uv finds the lock "out of date" (its URLs name
            // PyPI's files) and `--frozen` downloads from those URLs. Exported, the lock's exact versions
            // and hashes install from whatever index the build is given.
            Manager::Uv => UV_INSTALL.to_owned(),
            Manager::Poetry { .. } => format!("{venv} && poetry install --only main --no-interaction --no-root"),
            Manager::Pipenv { locked: true } => format!("{venv} && pipenv install --deploy"),
            Manager::Pipenv { locked: false } => format!("{venv} && pipenv install --skip-lock"),
            Manager::Requirements => format!("{venv} && pip install -r requirements.txt"),
            Manager::Project => format!("{venv} && pip install ."),
            Manager::Listed(specs) => {
                let specs: Vec<String> = specs.iter().map(|s| shell_quote(s)).collect();
                format!("{venv} && pip install {}", specs.join(" "))
            }
        }
    }

    fn env(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            // The builder's interpreter, never one uv would download; the venv where everything else expects it;
            // copies, since uv's cache is on another file system than the app.
            Manager::Uv => &[
                ("UV_PROJECT_ENVIRONMENT", VENV),
                ("UV_PYTHON_DOWNLOADS", "never"),
                ("UV_PYTHON", "python3"),
                ("UV_LINK_MODE", "copy"),
            ],
            Manager::Poetry { .. } => &[("POETRY_VIRTUALENVS_IN_PROJECT", "true"), ("POETRY_NO_INTERACTION", "1")],
            Manager::Pipenv { .. } => &[("PIPENV_VENV_IN_PROJECT", "1")],
            _ => &[],
        }
    }

    /// The files that determine the venv, or None when the venv also holds a copy of the app's own code
    /// (`pip install .`, a local path in requirements.txt), which no such list captures.
    fn inputs(&self, requirements: &Requirements) -> Option<Vec<String>> {
        let files = |f: &[&str]| f.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        match self {
            Manager::Uv => Some(files(&["pyproject.toml", "uv.lock"])),
            Manager::Poetry { .. } => Some(files(&["pyproject.toml", "poetry.lock"])),
            Manager::Pipenv { .. } => Some(files(&["Pipfile", "Pipfile.lock"])),
            Manager::Listed(_) => Some(files(&["pyproject.toml"])),
            Manager::Project => None,
            Manager::Requirements if requirements.local => None,
            Manager::Requirements => {
                let mut inputs = requirements.files.clone();
                if requirements.editable_local {
                    // An editable install points into the app; its metadata comes from these.
                    inputs.extend(files(&["pyproject.toml", "setup.py", "setup.cfg"]));
                }
                Some(inputs)
            }
        }
    }
}

/// What requirements.txt (and the files it includes) says.
#[derive(Debug, Default)]
struct Requirements {
    /// requirements.txt and the `-r`/`-c` files it includes, as read.
    files: Vec<String>,
    /// Normalised names of the requirements.
    names: BTreeSet<String>,
    /// Something to install.
    entries: bool,
    /// `-e .` or another editable local path.
    editable_local: bool,
    /// A non-editable local path (`.`, `./pkg`, `file:...`): its code is copied into the venv.
    local: bool,
}

impl Requirements {
    fn read(checkout: &Checkout) -> Result<Requirements, PlanError> {
        let mut requirements = Requirements::default();
        let mut queue = vec![("requirements.txt".to_owned(), false)];
        while let Some((file, constraints)) = queue.pop() {
            if requirements.files.contains(&file) || requirements.files.len() >= MAX_REQUIREMENT_FILES {
                continue;
            }
            let Some(text) = checkout.read(&file)? else { continue };
            requirements.files.push(file.clone());
            let dir = file.rsplit_once('/').map_or("", |(dir, _)| dir);
            for line in logical_lines(&text) {
                match requirement_line(&line) {
                    Line::Include { path, constraints } => {
                        queue.extend(join_relative(dir, &path).map(|p| (p, constraints)));
                    }
                    // A constraints file only pins what something else asks for.
                    _ if constraints => {}
                    Line::Requirement(name) => {
                        requirements.entries = true;
                        requirements.names.extend(name);
                    }
                    Line::Editable { name, local } => {
                        requirements.entries = true;
                        requirements.editable_local |= local;
                        requirements.names.extend(name);
                    }
                    Line::Local => {
                        requirements.entries = true;
                        requirements.local = true;
                    }
                    Line::Nothing => {}
                }
            }
        }
        Ok(requirements)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Line {
    Include { path: String, constraints: bool },
    Requirement(Option<String>),
    Editable { name: Option<String>, local: bool },
    Local,
    Nothing,
}

/// Lines with `\` continuations joined and `#` comments (at the start or after whitespace) removed.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = strip_requirement_comment(line);
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    lines.push(current);
    lines
}

fn strip_requirement_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let comment = (0..bytes.len()).find(|&i| bytes[i] == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()));
    comment.map_or(line, |i| &line[..i])
}

fn requirement_line(line: &str) -> Line {
    let line = line.trim();
    if line.is_empty() {
        return Line::Nothing;
    }
    if let Some(path) = option_value(line, "-r", "--requirement") {
        return Line::Include { path, constraints: false };
    }
    if let Some(path) = option_value(line, "-c", "--constraint") {
        return Line::Include { path, constraints: true };
    }
    if let Some(target) = option_value(line, "-e", "--editable") {
        let remote = target.contains("://") || target.starts_with("git+");
        return Line::Editable { name: egg_name(&target), local: !remote };
    }
    if line.starts_with('-') {
        // --index-url, --hash, --only-binary ...: options, not packages.
        return Line::Nothing;
    }
    let url = line.contains("://");
    if line.starts_with("file:") || (!url && (line.starts_with(['.', '/', '~']) || line.contains('/'))) {
        return Line::Local;
    }
    let name = requirement_name(line);
    let after = name.as_deref().map_or("", |n| line[n.len()..].trim_start());
    if after.starts_with([':', '+']) {
        // A bare URL (`https://...`, `git+https://...`) names its package only with `#egg=`.
        return Line::Requirement(egg_name(line));
    }
    // `name @ https://...` names itself.
    Line::Requirement(name.map(|n| normalise(&n)))
}

/// The value of `-x value`, `-xvalue`, `--long value` or `--long=value`.
fn option_value(line: &str, short: &str, long: &str) -> Option<String> {
    let rest = if let Some(rest) = line.strip_prefix(long) {
        rest.strip_prefix('=').or_else(|| rest.starts_with(char::is_whitespace).then_some(rest))?
    } else {
        line.strip_prefix(short).filter(|rest| !rest.starts_with('-'))?
    };
    let value = rest.trim().trim_matches(['"', '\'']);
    (!value.is_empty()).then(|| value.to_owned())
}

fn egg_name(url: &str) -> Option<String> {
    let egg = url.split_once("#egg=")?.1;
    requirement_name(egg).map(|n| normalise(&n))
}

/// The PEP 508 name at the start of a requirement (`Flask[async]>=2; python_version>"3"` → `Flask`).
fn requirement_name(spec: &str) -> Option<String> {
    let spec = spec.trim_start();
    let end = spec.find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c))).unwrap_or(spec.len());
    let name = &spec[..end];
    name.starts_with(|c: char| c.is_ascii_alphanumeric()).then(|| name.to_owned())
}

/// PEP 503 normalisation: `Flask_SQLAlchemy` and `flask.sqlalchemy` are `flask-sqlalchemy`.
fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if "-_.".contains(c) {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Every dependency name the app's files mention (lock files included: they list what actually gets installed).
fn dependency_names(
    checkout: &Checkout,
    pyproject: Option<&Toml>,
    pipfile: Option<&Toml>,
    requirements: &Requirements,
) -> BTreeSet<String> {
    let mut names = requirements.names.clone();
    if let Some(pyproject) = pyproject {
        names.extend(
            pyproject
                .strings("project", "dependencies")
                .iter()
                .filter_map(|s| requirement_name(s))
                .map(|n| normalise(&n)),
        );
        names.extend(pyproject.keys("tool.poetry.dependencies").iter().map(|k| normalise(k)));
    }
    if let Some(pipfile) = pipfile {
        names.extend(pipfile.keys("packages").iter().map(|k| normalise(k)));
    }
    // A lock cut off by the skim limit, or broken, gives the names that parse before the break: they are a hint,
    // and uv or poetry report a broken lock at install in their own words.
    for lock in ["uv.lock", "poetry.lock"] {
        if let Some(text) = checkout.skim(lock, SKIM_LOCK) {
            names.extend(Toml::salvage(&text).array_table_strings("package", "name").iter().map(|n| normalise(n)));
        }
    }
    names
}

/// The start command and a build step, by framework.
fn start(checkout: &Checkout, names: &BTreeSet<String>) -> Result<(Option<String>, Option<String>), PlanError> {
    if checkout.is_file("manage.py") {
        let manage = checkout.skim("manage.py", SKIM_SOURCE).unwrap_or_default();
        if names.contains("django") || manage.contains("django") {
            return Ok(django(checkout, &manage, names));
        }
    }
    if names.contains("fastapi")
        && let Some(app) = find_app(checkout, "FastAPI")
    {
        let app_dir = if app.src { " --app-dir src" } else { "" };
        return Ok((Some(format!("uvicorn {}:{} --host 0.0.0.0 --port $PORT{app_dir}", app.module, app.var)), None));
    }
    if let Some(app) = find_app(checkout, "Flask") {
        let target = format!("{}:{}", app.module, app.var);
        let command = if names.contains("gunicorn") {
            let path = if app.src { "--pythonpath src " } else { "" };
            format!("gunicorn --bind 0.0.0.0:$PORT {path}{target}")
        } else if !app.src && !app.file.contains('/') && app.main_reads_port {
            // The module runs itself on $PORT, as the code an agent writes for this platform does.
            format!("python3 {}", app.file)
        } else {
            let path = if app.src { "PYTHONPATH=src " } else { "" };
            format!("{path}flask --app {target} run --host 0.0.0.0 --port $PORT")
        };
        return Ok((Some(command), None));
    }
    let entry = ENTRIES.iter().find(|f| checkout.is_file(f));
    Ok((entry.map(|e| format!("python3 {e}")), None))
}

/// Django: migrations at start (an app's SQLite file lives in /app), gunicorn on the project's WSGI module
/// (Django's own server when gunicorn is not a dependency or the module is unknown), static files collected
/// at build when the settings set STATIC_ROOT.
fn django(checkout: &Checkout, manage: &str, names: &BTreeSet<String>) -> (Option<String>, Option<String>) {
    let settings = settings_module(manage);
    let texts: Vec<String> = settings
        .as_deref()
        .map(|m| settings_files(checkout, m))
        .unwrap_or_default()
        .iter()
        .filter_map(|f| checkout.skim(f, SKIM_SOURCE))
        .collect();
    let wsgi = texts.iter().find_map(|t| wsgi_application(t)).or_else(|| wsgi_next_to(checkout, settings.as_deref()));
    let static_root =
        texts.iter().any(|t| t.lines().any(|l| module_assignment(l).is_some_and(|(name, _)| name == "STATIC_ROOT")));
    let migrate = "python3 manage.py migrate --noinput";
    let start = match wsgi {
        Some((module, attr)) if names.contains("gunicorn") => {
            let target = if attr == "application" { module } else { format!("{module}:{attr}") };
            format!("{migrate} && gunicorn {target} --bind 0.0.0.0:$PORT")
        }
        _ => format!("{migrate} && python3 manage.py runserver 0.0.0.0:$PORT --noreload"),
    };
    (Some(start), static_root.then(|| "python3 manage.py collectstatic --noinput".to_owned()))
}

/// `os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")` → `mysite.settings`.
fn settings_module(manage: &str) -> Option<String> {
    manage.lines().find_map(|line| {
        let (_, rest) = line.split_once("DJANGO_SETTINGS_MODULE")?;
        let rest = rest.trim_start_matches(['"', '\'']);
        let start = rest.find(['"', '\''])?;
        let quote = rest[start..].chars().next()?;
        let value = &rest[start + 1..];
        let value = &value[..value.find(quote)?];
        is_dotted_identifier(value).then(|| value.to_owned())
    })
}

/// The settings module's file, and for split settings (a `settings` package, or a module inside a directory
/// named `settings`) the other modules of that directory, which it usually star-imports.
fn settings_files(checkout: &Checkout, module: &str) -> Vec<String> {
    let path = module.replace('.', "/");
    let (file, dir) = if checkout.is_file(&format!("{path}.py")) {
        let parent = path.rsplit_once('/').map(|(p, _)| p.to_owned());
        let split = parent.as_deref().is_some_and(|p| p == "settings" || p.ends_with("/settings"));
        (format!("{path}.py"), parent.filter(|_| split))
    } else {
        (format!("{path}/__init__.py"), Some(path.clone()))
    };
    let mut files = vec![file];
    if let Some(dir) = dir {
        for name in checkout.files_with_extension(&dir, "py", MAX_SETTINGS_FILES) {
            let sibling = format!("{dir}/{name}");
            if !files.contains(&sibling) {
                files.push(sibling);
            }
        }
    }
    files.truncate(MAX_SETTINGS_FILES);
    files
}

/// `WSGI_APPLICATION = "mysite.wsgi.application"` → (`mysite.wsgi`, `application`).
fn wsgi_application(settings: &str) -> Option<(String, String)> {
    settings.lines().find_map(|line| {
        let (name, value) = module_assignment(line)?;
        if name != "WSGI_APPLICATION" {
            return None;
        }
        let value = value.trim().trim_matches(['"', '\'']);
        let (module, attr) = value.rsplit_once('.')?;
        (is_dotted_identifier(module) && is_identifier(attr)).then(|| (module.to_owned(), attr.to_owned()))
    })
}

/// Without WSGI_APPLICATION: a `wsgi.py` beside the settings, or up the settings' package path; without a
/// settings module, the one top-level directory holding a `wsgi.py`.
fn wsgi_next_to(checkout: &Checkout, settings: Option<&str>) -> Option<(String, String)> {
    let application = |module: String| Some((module, "application".to_owned()));
    if let Some(settings) = settings {
        let parts: Vec<&str> = settings.split('.').collect();
        for n in (1..parts.len()).rev() {
            if checkout.is_file(&format!("{}/wsgi.py", parts[..n].join("/"))) {
                return application(format!("{}.wsgi", parts[..n].join(".")));
            }
        }
        return None;
    }
    let dirs: Vec<String> = checkout
        .subdirectories(".")
        .into_iter()
        .take(64)
        .filter(|d| checkout.is_file(&format!("{d}/wsgi.py")))
        .collect();
    match dirs.as_slice() {
        [only] if is_identifier(only) => application(format!("{only}.wsgi")),
        _ => None,
    }
}

/// A FastAPI or Flask application object assigned at module level.
struct PyApp {
    file: String,
    module: String,
    var: String,
    /// The module is in a package under `src/`, which must be on the import path.
    src: bool,
    /// The module runs itself (`if __name__ == "__main__":`) and reads PORT.
    main_reads_port: bool,
}

/// The first module (in the documented order) with `<var> = <constructor>(`.
fn find_app(checkout: &Checkout, constructor: &str) -> Option<PyApp> {
    let mut candidates: Vec<(String, String, bool)> =
        ROOT_MODULES.iter().map(|f| ((*f).to_owned(), f.trim_end_matches(".py").to_owned(), false)).collect();
    let packages = std::iter::once(("app".to_owned(), false))
        .chain(checkout.subdirectories("src").into_iter().take(MAX_SRC_PACKAGES).map(|p| (p, true)));
    for (package, src) in packages {
        if !is_identifier(&package) {
            continue;
        }
        let dir = if src { format!("src/{package}") } else { package.clone() };
        for file in PACKAGE_MODULES {
            let module = match file {
                "__init__.py" => package.clone(),
                _ => format!("{package}.{}", file.trim_end_matches(".py")),
            };
            candidates.push((format!("{dir}/{file}"), module, src));
        }
    }
    candidates.into_iter().find_map(|(file, module, src)| {
        let text = checkout.skim(&file, SKIM_SOURCE)?;
        let var = text.lines().find_map(|line| {
            let (name, value) = module_assignment(line)?;
            let call = value.trim_start();
            // `Flask(` or `flask.Flask(`.
            let call = match call.split_once('.') {
                Some((module, rest)) if is_identifier(module) && rest.starts_with(constructor) => rest,
                _ => call,
            };
            call.strip_prefix(constructor).is_some_and(|r| r.starts_with('(')).then(|| name.to_owned())
        })?;
        let main_reads_port = text.contains("__main__") && text.contains("PORT");
        Some(PyApp { file, module, var, src, main_reads_port })
    })
}

/// `name = value` or `name: Type = value` at module level (no indentation), `==` and friends excluded.
fn module_assignment(line: &str) -> Option<(&str, &str)> {
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    let bytes = line.as_bytes();
    let eq = (0..bytes.len()).find(|&i| {
        bytes[i] == b'=' && bytes.get(i + 1) != Some(&b'=') && (i == 0 || !b"=!<>:+-*/%&|^".contains(&bytes[i - 1]))
    })?;
    let target = line[..eq].split(':').next()?.trim();
    is_identifier(target).then(|| (target, &line[eq + 1..]))
}

fn is_identifier(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_dotted_identifier(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(is_identifier) && is_safe_word(s)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{app, env_has};
    use super::*;
    use toolchains::Request;

    fn python(constraint: &str, from: &str) -> Request {
        Request { tool: Tool::Python, constraint: Some(constraint.into()), from: Some(from.into()) }
    }

    // Package managers and the venv

    #[test]
    fn given_requirements_and_main_py_when_detect_then_pip_into_a_venv_and_python_main() {
        let app = app().file("requirements.txt", "# web\n\nflask==3.0\n").file("main.py", "");
        let plan = app.detect().unwrap();
        assert_eq!(plan.provider, Provider::Python);
        assert_eq!(plan.install.as_deref(), Some("python3 -m venv .venv && pip install -r requirements.txt"));
        assert_eq!(plan.package_manager.as_deref(), Some("pip"));
        assert_eq!(plan.start.as_deref(), Some("python3 main.py"));
        assert_eq!(plan.path, ["/app/.venv/bin"]);
        assert!(env_has(&plan, "VIRTUAL_ENV", "/app/.venv") && env_has(&plan, "PYTHONUNBUFFERED", "1"));
        assert_eq!(plan.tools, []);
        assert_eq!(plan.deps, Some(Deps { inputs: vec!["requirements.txt".into()], outputs: vec![".venv".into()] }));
        assert_eq!(
            plan.describe(),
            "python, pip: install `python3 -m venv .venv && pip install -r requirements.txt`, start `python3 main.py`"
        );
    }

    #[test]
    fn given_requirements_with_only_comments_when_detect_then_no_install() {
        let app = app().file("requirements.txt", "# nothing yet\n   \n").file("app.py", "");
        let plan = app.detect().unwrap();
        assert_eq!((plan.install, plan.package_manager, plan.deps), (None, None, None));
        assert_eq!(plan.start.as_deref(), Some("python3 app.py"));
    }

    #[test]
    fn given_tricky_requirement_lines_when_read_then_names_are_normalised_and_options_skipped() {
        let text = "Flask[async] >= 2.0 ; python_version >= \"3.8\"  # web\n\
                    --index-url https://example.invalid/simple\n\
                    gunicorn==21.2.0 \\\n    --hash=sha256:abc\n\
                    Django_Extensions~=3.2\n\
                    requests @ https://files.example.invalid/requests-2.whl\n\
                    git+https://example.invalid/x.git#egg=Some.Pkg\n\
                    #commented==1\n";
        let app = app().file("requirements.txt", text);
        let requirements = Requirements::read(&Checkout::open(&app.0).unwrap()).unwrap();
        let names: Vec<&str> = requirements.names.iter().map(String::as_str).collect();
        assert_eq!(names, ["django-extensions", "flask", "gunicorn", "requests", "some-pkg"]);
        assert!(requirements.entries && !requirements.local && !requirements.editable_local);
    }

    #[test]
    fn given_requirements_including_others_when_detect_then_all_are_inputs_and_read() {
        let app = app()
            .file("requirements.txt", "-r requirements/prod.txt\n-c constraints.txt\n")
            .file("requirements/prod.txt", "--requirement=base.txt\ngunicorn\n")
            .file("requirements/base.txt", "-r ../requirements.txt\nflask\n")
            .file("constraints.txt", "fastapi==0.1\n")
            .file(".python-version", "3.11\n")
            .file("app.py", "app = Flask(__name__)\n");
        let plan = app.detect().unwrap();
        assert_eq!(plan.start.as_deref(), Some("gunicorn --bind 0.0.0.0:$PORT app:app"));
        let inputs = plan.deps.unwrap().inputs;
        assert_eq!(
            inputs,
            [
                "requirements.txt",
                "constraints.txt",
                "requirements/prod.txt",
                "requirements/base.txt",
                ".python-version"
            ]
        );
    }

    #[test]
    fn given_a_local_path_requirement_when_detect_then_the_venv_is_not_cacheable() {
        let app = app().file("requirements.txt", "flask\n.\n").file("main.py", "");
        assert_eq!(app.detect().unwrap().deps, None);
        let app = app.file("requirements.txt", "-e .\nflask\n").file("pyproject.toml", "[project]\nname = \"x\"\n");
        assert_eq!(app.detect().unwrap().deps.unwrap().inputs, ["requirements.txt", "pyproject.toml"]);
    }

    #[test]
    fn given_uv_lock_when_detect_then_uv_sync_into_the_app_venv() {
        let app = app()
            .file(
                "pyproject.toml",
                "[project]\nname = \"x\"\nrequires-python = \">=3.10\"\ndependencies = [\"fastapi\"]\n",
            )
            .file("uv.lock", "version = 1\n[[package]]\nname = \"fastapi\"\n[[package]]\nname = \"uvicorn\"\n")
            .file("main.py", "from fastapi import FastAPI\n\napp = FastAPI()\n");
        let plan = app.detect().unwrap();
        assert_eq!(plan.install.as_deref(), Some(UV_INSTALL));
        assert_eq!(plan.package_manager.as_deref(), Some("uv"));
        assert_eq!(
            plan.tools,
            [PackageTool { name: "uv".into(), version: UV_VERSION.into(), registry: ToolRegistry::Pypi }]
        );
        for (name, value) in [
            ("UV_PROJECT_ENVIRONMENT", "/app/.venv"),
            ("UV_PYTHON_DOWNLOADS", "never"),
            ("UV_PYTHON", "python3"),
            ("VIRTUAL_ENV", "/app/.venv"),
        ] {
            assert!(env_has(&plan, name, value), "{name} in {:?}", plan.env);
        }
        assert_eq!(plan.toolchains, [python(">=3.10", "pyproject.toml requires-python")]);
        assert_eq!(plan.deps.unwrap().inputs, ["pyproject.toml", "uv.lock"]);
        assert_eq!(plan.start.as_deref(), Some("uvicorn main:app --host 0.0.0.0 --port $PORT"));
        let description = app.detect().unwrap().describe();
        let expected = format!("python >=3.10 (pyproject.toml requires-python), uv 0.13.9: install `{UV_INSTALL}`");
        assert!(description.starts_with(&expected), "{description}");
    }

    #[test]
    fn given_poetry_lock_when_detect_then_poetry_installs_main_dependencies_into_the_app_venv() {
        let pyproject = "[tool.poetry]\nname = \"x\"\n\n[tool.poetry.dependencies]\npython = \"^3.11\"\nflask = \"^3\"\n\
                         gunicorn = { version = \"^22\" }\n\n[build-system]\nrequires = [\"poetry-core\"]\n";
        let app = app()
            .file("pyproject.toml", pyproject)
            .file("poetry.lock", "[[package]]\nname = \"flask\"\n")
            .file("wsgi.py", "import flask\napplication = flask.Flask(__name__)\n");
        let plan = app.detect().unwrap();
        assert_eq!(
            plan.install.as_deref(),
            Some("python3 -m venv .venv && poetry install --only main --no-interaction --no-root")
        );
        assert_eq!(plan.tools[0].name, "poetry");
        assert!(env_has(&plan, "POETRY_VIRTUALENVS_IN_PROJECT", "true"));
        assert_eq!(plan.toolchains, [python("^3.11", "pyproject.toml tool.poetry.dependencies.python")]);
        assert_eq!(plan.deps.unwrap().inputs, ["pyproject.toml", "poetry.lock"]);
        assert_eq!(plan.start.as_deref(), Some("gunicorn --bind 0.0.0.0:$PORT wsgi:application"));
    }

    #[test]
    fn given_pyproject_with_pep621_and_poetry_sections_when_detect_then_both_are_read() {
        let pyproject = "[project]\nname = \"x\"\nrequires-python = \">=3.11\"\ndependencies = [\n  \"fastapi[standard]>=0.110\",\n]\n\n\
                         [tool.poetry.dependencies]\npython = \"^3.12\"\ngunicorn = \"*\"\n";
        let app = app().file("pyproject.toml", pyproject).file("poetry.lock", "").file("api.py", "");
        let plan = app
            .file("main.py", "import fastapi\napi: fastapi.FastAPI = fastapi.FastAPI(title=\"x\")\n")
            .detect()
            .unwrap();
        // PEP 621's requires-python comes first; FastAPI is a dependency through [project], found in main.py.
        assert_eq!(plan.toolchains, [python(">=3.11", "pyproject.toml requires-python")]);
        assert_eq!(plan.start.as_deref(), Some("uvicorn main:api --host 0.0.0.0 --port $PORT"));
        assert_eq!(plan.package_manager.as_deref(), Some("poetry"));
    }

    #[test]
    fn given_pipfile_lock_when_detect_then_pipenv_deploy() {
        let app = app()
            .file("Pipfile", "[packages]\nflask = \"*\"\n\n[requires]\npython_version = \"3.11\"\n")
            .file("Pipfile.lock", "{}")
            .file("main.py", "");
        let plan = app.detect().unwrap();
        assert_eq!(plan.install.as_deref(), Some("python3 -m venv .venv && pipenv install --deploy"));
        assert_eq!(
            plan.tools[0],
            PackageTool { name: "pipenv".into(), version: PIPENV_VERSION.into(), registry: ToolRegistry::Pypi }
        );
        assert!(env_has(&plan, "PIPENV_VENV_IN_PROJECT", "1"));
        assert_eq!(plan.toolchains, [python("3.11", "Pipfile requires.python_version")]);
        assert_eq!(plan.deps.unwrap().inputs, ["Pipfile", "Pipfile.lock"]);
    }

    #[test]
    fn given_a_pipfile_without_lock_when_detect_then_pipenv_skip_lock_unless_requirements_say_more() {
        let app = app().file("Pipfile", "[packages]\nflask = \"*\"\n").file("main.py", "");
        assert_eq!(
            app.detect().unwrap().install.as_deref(),
            Some("python3 -m venv .venv && pipenv install --skip-lock")
        );
        let app = app.file("requirements.txt", "flask\n");
        assert_eq!(app.detect().unwrap().package_manager.as_deref(), Some("pip"));
        let app = app.file("Pipfile.lock", "{}");
        assert_eq!(app.detect().unwrap().package_manager.as_deref(), Some("pipenv"));
    }

    #[test]
    fn given_pyproject_with_a_build_backend_when_detect_then_pip_install_dot_uncached() {
        let pyproject =
            "[project]\nname = \"x\"\ndependencies = [\"requests>=2\"]\n[build-system]\nrequires = [\"hatchling\"]\n";
        let plan = app().file("pyproject.toml", pyproject).file("server.py", "").detect().unwrap();
        assert_eq!(plan.install.as_deref(), Some("python3 -m venv .venv && pip install ."));
        assert_eq!(plan.deps, None);
        assert_eq!(plan.start.as_deref(), Some("python3 server.py"));
    }

    #[test]
    fn given_setup_py_when_detect_then_pip_install_dot() {
        let plan =
            app().file("setup.py", "from setuptools import setup\nsetup()\n").file("main.py", "").detect().unwrap();
        assert_eq!(plan.install.as_deref(), Some("python3 -m venv .venv && pip install ."));
    }

    #[test]
    fn given_pyproject_without_backend_when_detect_then_its_dependencies_are_installed_by_name_quoted() {
        let pyproject = "[project]\nname = \"x\"\ndependencies = [\n  \"requests>=2\",\n  \"gunicorn\",\n  \
                         \"tomli; python_version < '3.11'\",\n]\n";
        let plan = app().file("pyproject.toml", pyproject).file("server.py", "").detect().unwrap();
        assert_eq!(
            plan.install.as_deref(),
            Some(r"python3 -m venv .venv && pip install 'requests>=2' gunicorn 'tomli; python_version < '\''3.11'\'''")
        );
        assert_eq!(plan.deps.unwrap().inputs, ["pyproject.toml"]);
    }

    #[test]
    fn given_pyproject_without_dependencies_when_detect_then_no_install() {
        let app = app().file("pyproject.toml", "[project]\nname = \"x\"\ndependencies = []\n").file("main.py", "");
        assert_eq!(app.detect().unwrap().install, None);
    }

    // Toolchain

    #[test]
    fn given_python_version_files_when_detect_then_the_first_found_wins() {
        let app = app()
            .file(".python-version", "# pyenv\n3.11.7\n3.12\n")
            .file("runtime.txt", "python-3.10.4\n")
            .file("pyproject.toml", "[project]\nrequires-python = \">=3.9\"\n")
            .file("main.py", "");
        assert_eq!(app.detect().unwrap().toolchains, [python("3.11.7", ".python-version")]);
        std::fs::remove_file(app.0.join(".python-version")).unwrap();
        assert_eq!(app.detect().unwrap().toolchains, [python("3.10.4", "runtime.txt")]);
        std::fs::remove_file(app.0.join("runtime.txt")).unwrap();
        assert_eq!(app.detect().unwrap().toolchains, [python(">=3.9", "pyproject.toml requires-python")]);
    }

    #[test]
    fn given_no_version_anywhere_when_detect_then_python_without_constraint() {
        let plan = app().file("main.py", "").detect().unwrap();
        assert_eq!(plan.toolchains, [Request { tool: Tool::Python, constraint: None, from: None }]);
        assert_eq!(plan.describe(), "python: start `python3 main.py`");
    }

    #[test]
    fn given_pipfile_full_version_when_detect_then_it_beats_the_short_one() {
        let pipfile = "[requires]\npython_version = \"3.11\"\npython_full_version = \"3.11.4\"\n";
        let plan = app().file("Pipfile", pipfile).file("main.py", "").detect().unwrap();
        assert_eq!(plan.toolchains, [python("3.11.4", "Pipfile requires.python_full_version")]);
    }

    // Start commands

    #[test]
    fn given_several_entries_when_detect_then_main_py_first() {
        let app = app().file("server.py", "").file("app.py", "").file("main.py", "");
        assert_eq!(app.detect().unwrap().start.as_deref(), Some("python3 main.py"));
    }

    #[test]
    fn given_only_wsgi_py_when_detect_then_no_start_command_naming_entries() {
        let app = app().file("wsgi.py", "");
        let err = app.detect().unwrap_err();
        assert!(matches!(err, PlanError::NoStartCommand { provider: Provider::Python, .. }), "{err:?}");
        assert!(err.to_string().contains("main.py"), "{err}");
    }

    #[test]
    fn given_flask_assigned_to_another_name_with_gunicorn_when_detect_then_gunicorn_on_that_name() {
        let app = app()
            .file("requirements.txt", "Flask>=3\ngunicorn\n")
            .file("main.py", "import os\nfrom flask import Flask\n\nserver = Flask(__name__)\n\n@server.get('/')\ndef hi():\n    app = 1\n");
        assert_eq!(app.detect().unwrap().start.as_deref(), Some("gunicorn --bind 0.0.0.0:$PORT main:server"));
    }

    #[test]
    fn given_flask_without_gunicorn_when_detect_then_the_module_runs_itself_only_if_it_reads_port() {
        let runs_itself = "app = Flask(__name__)\nif __name__ == \"__main__\":\n    app.run(host=\"0.0.0.0\", port=int(os.environ[\"PORT\"]))\n";
        let app = app().file("requirements.txt", "flask\n").file("app.py", runs_itself);
        assert_eq!(app.detect().unwrap().start.as_deref(), Some("python3 app.py"));
        let app = app.file("app.py", "app = Flask(__name__)\nif __name__ == '__main__':\n    app.run(debug=True)\n");
        assert_eq!(app.detect().unwrap().start.as_deref(), Some("flask --app app:app run --host 0.0.0.0 --port $PORT"));
    }

    #[test]
    fn given_fastapi_in_an_app_package_when_detect_then_uvicorn_on_the_package_module() {
        let app = app()
            .file("requirements.txt", "fastapi[standard]==0.115\n")
            .file("app/__init__.py", "")
            .file("app/main.py", "from fastapi import FastAPI\n\napi = FastAPI()\n");
        assert_eq!(app.detect().unwrap().start.as_deref(), Some("uvicorn app.main:api --host 0.0.0.0 --port $PORT"));
    }

    #[test]
    fn given_fastapi_in_a_src_package_when_detect_then_uvicorn_with_src_on_the_path() {
        let app = app()
            .file("requirements.txt", "fastapi\n")
            .file("src/shop/__init__.py", "")
            .file("src/shop/main.py", "from fastapi import FastAPI\napp = FastAPI()\n");
        assert_eq!(
            app.detect().unwrap().start.as_deref(),
            Some("uvicorn shop.main:app --host 0.0.0.0 --port $PORT --app-dir src")
        );
    }

    #[test]
    fn given_fastapi_code_without_the_dependency_when_detect_then_plain_python() {
        let app = app().file("requirements.txt", "starlette\n").file("main.py", "app = FastAPI()\n");
        assert_eq!(app.detect().unwrap().start.as_deref(), Some("python3 main.py"));
    }

    #[test]
    fn given_indented_or_compared_assignments_when_scanned_then_they_are_not_apps() {
        assert_eq!(module_assignment("    app = Flask(__name__)"), None);
        assert_eq!(module_assignment("app == Flask(x)"), None);
        assert_eq!(module_assignment("app: Flask = Flask(x)").map(|(n, _)| n), Some("app"));
        assert_eq!(module_assignment("x.y = Flask(x)"), None);
    }

    #[test]
    fn given_a_django_project_when_detect_then_migrate_and_gunicorn_on_its_wsgi_with_collectstatic() {
        let manage = "#!/usr/bin/env python\nimport os, sys\n\ndef main():\n    \
                      os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n    \
                      from django.core.management import execute_from_command_line\n";
        let app = app()
            .file("requirements.txt", "Django>=5\ngunicorn\n")
            .file("manage.py", manage)
            .file(
                "mysite/settings.py",
                "WSGI_APPLICATION = 'mysite.wsgi.application'\nSTATIC_ROOT = BASE_DIR / 'staticfiles'\n",
            )
            .file("mysite/wsgi.py", "application = get_wsgi_application()\n");
        let plan = app.detect().unwrap();
        assert_eq!(
            plan.start.as_deref(),
            Some("python3 manage.py migrate --noinput && gunicorn mysite.wsgi --bind 0.0.0.0:$PORT")
        );
        assert_eq!(plan.build.as_deref(), Some("python3 manage.py collectstatic --noinput"));
    }

    #[test]
    fn given_django_settings_in_a_subpackage_when_detect_then_the_wsgi_module_is_found_up_the_path() {
        let manage =
            "os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"config.settings.production\")\nimport django\n";
        let app = app()
            .file("requirements.txt", "django\ngunicorn\n")
            .file("manage.py", manage)
            .file("config/settings/__init__.py", "")
            .file("config/settings/base.py", "STATIC_ROOT = '/app/static'\n")
            .file("config/settings/production.py", "from .base import *  # noqa\nDEBUG = False\n")
            .file("config/wsgi.py", "");
        let plan = app.detect().unwrap();
        assert_eq!(
            plan.start.as_deref(),
            Some("python3 manage.py migrate --noinput && gunicorn config.wsgi --bind 0.0.0.0:$PORT")
        );
        assert_eq!(plan.build.as_deref(), Some("python3 manage.py collectstatic --noinput"));
    }

    #[test]
    fn given_django_without_gunicorn_or_static_root_when_detect_then_runserver_and_no_build() {
        let app = app()
            .file("requirements.txt", "django\n")
            .file("manage.py", "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site1.settings')\n")
            .file("site1/settings.py", "#STATIC_ROOT = 'x'\nSTATIC_URL = 'static/'\n")
            .file("site1/wsgi.py", "");
        let plan = app.detect().unwrap();
        assert_eq!(
            plan.start.as_deref(),
            Some("python3 manage.py migrate --noinput && python3 manage.py runserver 0.0.0.0:$PORT --noreload")
        );
        assert_eq!(plan.build, None);
    }

    #[test]
    fn given_a_custom_wsgi_attribute_when_detect_then_gunicorn_names_it() {
        let app = app()
            .file("Pipfile", "[packages]\ndjango = \"*\"\ngunicorn = \"*\"\n")
            .file("manage.py", "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'proj.settings')\n")
            .file("proj/settings.py", "WSGI_APPLICATION = \"proj.wsgi.app\"\n");
        assert_eq!(
            app.detect().unwrap().start.as_deref(),
            Some("python3 manage.py migrate --noinput && gunicorn proj.wsgi:app --bind 0.0.0.0:$PORT")
        );
    }

    #[test]
    fn given_a_settings_module_with_shell_syntax_when_detect_then_it_is_ignored() {
        let app = app()
            .file("requirements.txt", "django\ngunicorn\n")
            .file("manage.py", "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'x;rm -rf /')\n");
        let start = app.detect().unwrap().start.unwrap();
        assert!(start.ends_with("runserver 0.0.0.0:$PORT --noreload") && !start.contains("rm"), "{start}");
    }

    #[test]
    fn given_a_procfile_on_django_when_detect_then_the_procfile_starts_and_collectstatic_still_builds() {
        let app = app()
            .file("Procfile", "web: gunicorn mysite.wsgi\n")
            .file("requirements.txt", "django\n")
            .file("manage.py", "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n")
            .file("mysite/settings.py", "STATIC_ROOT = 'static'\n");
        let plan = app.detect().unwrap();
        assert_eq!(plan.provider, Provider::Procfile);
        assert_eq!(plan.start.as_deref(), Some("gunicorn mysite.wsgi"));
        assert_eq!(plan.build.as_deref(), Some("python3 manage.py collectstatic --noinput"));
    }

    // Weird input

    #[test]
    fn given_a_huge_or_binary_module_when_detect_then_it_is_skimmed_not_refused() {
        let mut huge = b"\xff\xfe\n".to_vec();
        huge.extend(b"app = Flask(__name__)\n");
        huge.extend(std::iter::repeat_n(b'#', 3 * 1024 * 1024));
        let plan = app().file("requirements.txt", "flask\ngunicorn\n").file("app.py", huge).detect().unwrap();
        assert_eq!(plan.start.as_deref(), Some("gunicorn --bind 0.0.0.0:$PORT app:app"));
    }

    #[test]
    fn given_a_huge_lock_file_when_detect_then_names_are_read_from_its_start() {
        let mut lock = "[[package]]\nname = \"gunicorn\"\n".to_owned();
        lock.push_str(&"[[package]]\nname = \"filler\"\ndescription = \"xxxxxxxxxxxxxxxxxxxxxxxxx\"\n".repeat(70_000));
        let app = app()
            .file("pyproject.toml", "[tool.poetry.dependencies]\nflask = \"*\"\n")
            .file("poetry.lock", lock)
            .file("app.py", "app = Flask(__name__)\n");
        assert_eq!(app.detect().unwrap().start.as_deref(), Some("gunicorn --bind 0.0.0.0:$PORT app:app"));
    }

    #[test]
    fn given_a_pyproject_that_is_not_toml_when_detect_then_invalid_file_names_the_line() {
        let pyproject = "[project]\nname = \"x\"\ndependencies = [\"fastapi\"\n\n[build-system]\n";
        let app = app().file("pyproject.toml", pyproject).file("main.py", "");
        let err = app.detect().unwrap_err();
        let PlanError::InvalidFile { file, error } = &err else { panic!("{err:?}") };
        assert_eq!(file, "pyproject.toml");
        assert!(error.starts_with("line 5, column 1: "), "{error}");
        assert!(err.to_string().starts_with("pyproject.toml is not valid: line 5, column 1: "), "{err}");
    }

    #[test]
    fn given_a_pipfile_that_is_not_toml_when_pipenv_would_install_from_it_then_invalid_file() {
        let app = app().file("Pipfile", "[packages]\nflask = *\n").file("main.py", "");
        let err = app.detect().unwrap_err();
        assert!(
            matches!(&err, PlanError::InvalidFile { file, error } if file == "Pipfile" && error.starts_with("line 2,")),
            "{err:?}"
        );
        let app = app.file("Pipfile.lock", "{}");
        assert!(matches!(app.detect(), Err(PlanError::InvalidFile { file, .. }) if file == "Pipfile"));
    }

    #[test]
    fn given_a_stale_pipfile_that_is_not_toml_next_to_requirements_when_detect_then_it_is_ignored() {
        let app = app()
            .file("Pipfile", "[requires]\npython_version = 3.9\n")
            .file("requirements.txt", "flask\n")
            .file("main.py", "");
        let plan = app.detect().unwrap();
        assert_eq!(plan.package_manager.as_deref(), Some("pip"));
        assert_eq!(plan.toolchains, [Request { tool: Tool::Python, constraint: None, from: None }]);
    }

    #[test]
    fn given_a_lock_broken_in_the_middle_when_detect_then_the_names_before_the_break_count() {
        let lock =
            "version = 1\n[[package]]\nname = \"gunicorn\"\n[[package]]\nname = <<<\n[[package]]\nname = \"x\"\n";
        let app = app()
            .file("pyproject.toml", "[project]\nname = \"x\"\ndependencies = [\"flask\"]\n")
            .file("uv.lock", lock)
            .file("app.py", "app = Flask(__name__)\n");
        let plan = app.detect().unwrap();
        assert_eq!(plan.package_manager.as_deref(), Some("uv"));
        assert_eq!(plan.start.as_deref(), Some("gunicorn --bind 0.0.0.0:$PORT app:app"));
    }

    #[test]
    fn given_an_app_module_symlinked_out_of_the_checkout_when_detect_then_it_is_not_read() {
        let outside = app().file("main.py", "app = Flask(__name__)\n");
        let app = app()
            .file("requirements.txt", "flask\ngunicorn\n")
            .symlink(outside.0.join("main.py"), "main.py")
            .file("server.py", "");
        assert_eq!(app.detect().unwrap().start.as_deref(), Some("python3 server.py"));
    }
}
