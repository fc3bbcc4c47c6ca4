//! Node: the toolchain the app's files ask for, the package manager its `packageManager` field or lock file
//! names, dev dependencies installed for the build and pruned after it, and framework-aware start commands
//! and static outputs.
//!
//! - Toolchain: `.nvmrc`, `.node-version`, `package.json` `engines.node`; the first found wins.
//! - Package manager: `packageManager` (`pnpm@9.15.0+sha512…`, `yarn@4.5.0`, `npm@10.9.0`) wins; else the lock
//!   file: `pnpm-lock.yaml` → pnpm (version by `lockfileVersion`), `yarn.lock` → yarn classic, or yarn berry
//!   when `.yarnrc.yml` exists or the lock is a berry lock, `package-lock.json`/`npm-shrinkwrap.json` → npm;
//!   `bun.lock(b)` alone is refused (bun is not provided); nothing → npm. yarn and pnpm are [`PackageTool`]s
//!   from the npm registry (berry is published there as `@yarnpkg/cli-dist`).
//! - `NODE_ENV=production` is set for every step, so installs ask for dev dependencies explicitly (the build
//!   needs them) and a prune step drops them once the build is done.
//! - Start: a `start` script (`npm start`: npm runs any manager's scripts, except under yarn's Plug'n'Play,
//!   which needs `yarn start`), Next.js `next start`, Nuxt's and Astro's node servers, `main`, then
//!   server.js/index.js/app.js/main.js. A build with nothing to start is a static site served from the
//!   framework's output directory (Vite `dist` or its `outDir`, CRA `build`, Astro `dist`, Vue CLI `dist`,
//!   Next.js `output: 'export'` → `out`, SvelteKit's static adapter `build`, else `dist`); the dev and preview
//!   servers of those frameworks do not count as a start script.

use serde_json::Value;
use toolchains::Tool;

use super::checkout::{Checkout, SKIM_SOURCE, is_safe_path, is_safe_word};
use super::{Deps, Detected, PackageTool, Plan, PlanError, Provider, ToolRegistry, env, request};

/// yarn 1, the last classic release.
pub(super) const YARN_CLASSIC_VERSION: &str = "1.22.22";
/// Yarn 2+ ("berry") when the app pins none: it honours a `yarnPath` release committed in the repository.
pub(super) const YARN_BERRY_VERSION: &str = "4.18.1";
/// The npm package that publishes yarn berry (the `yarn` package stops at 1.x).
pub(super) const YARN_BERRY_PACKAGE: &str = "@yarnpkg/cli-dist";
/// pnpm when neither `packageManager` nor an older lock file says otherwise (newer releases' lock files refer
/// to builds for other platforms that the registries reachable here do not serve).
pub(super) const PNPM_VERSION: &str = "12.4.2";
/// The last pnpm of the major that writes each older `lockfileVersion`.
const PNPM_FOR_LOCKFILE: [(&str, &str); 3] = [("5.3", "6.35.1"), ("5.4", "7.33.7"), ("6.", "8.15.9")];
/// Entry points tried when package.json has neither a start script nor `main`.
const ENTRIES: [&str; 4] = ["server.js", "index.js", "app.js", "main.js"];
/// Scripts the package managers run during install: they may read or write any file, so the installed
/// dependencies can no longer be cached by the manifest and lock file alone.
const INSTALL_SCRIPTS: [&str; 4] = ["preinstall", "install", "postinstall", "prepare"];
/// Files that change what the install does, besides package.json and the lock file.
const INSTALL_INPUTS: [&str; 6] =
    [".npmrc", ".yarnrc", ".yarnrc.yml", "pnpm-workspace.yaml", ".pnpmfile.cjs", "prisma/schema.prisma"];

/// Whether package-manager CLI `tool` (a registry package) is `manager` (as named in the plan).
pub(super) fn is_tool_of(tool: &str, manager: &str) -> bool {
    manager == "yarn" && tool == YARN_BERRY_PACKAGE
}

/// The Node plan, and where its build writes a site (for `build_pack: static`).
pub(super) struct Node {
    pub(super) plan: Plan,
    output_dir: String,
}

impl Node {
    pub(super) fn into_detected(self) -> Detected {
        let hint = "add a `start` script or `main` to package.json, a server.js or index.js, or a Procfile `web:` line";
        Detected { plan: self.plan, missing_start_hint: hint }
    }

    /// The same install and build, served as a static site from the build's output.
    pub(super) fn into_static(self) -> Plan {
        Plan { provider: Provider::Static, start: None, prune: None, static_root: Some(self.output_dir), ..self.plan }
    }
}

pub(super) fn detect(checkout: &Checkout, package: &Value, install_overridden: bool) -> Result<Node, PlanError> {
    if !package.is_object() {
        return Err(invalid("the top level must be a JSON object".into()));
    }
    let package = Package(package);
    let manager = Manager::detect(checkout, &package, install_overridden)?;
    let framework = Framework::detect(checkout, &package);
    let has_deps = package.has_entries("dependencies") || package.has_entries("devDependencies");
    let install = has_deps.then(|| manager.install());
    let build = package.script("build").map(|_| manager.run("build"));

    let start_script = package.script("start").filter(|script| !framework.is_dev_server(script));
    let start = match (start_script, &framework) {
        (Some(_), _) => Some(manager.start()),
        (None, Framework::Next { export: false }) => Some("npx next start".to_owned()),
        (None, Framework::Nuxt) => Some("node .output/server/index.mjs".to_owned()),
        (None, Framework::Astro { node_server: true, .. }) => Some("node ./dist/server/entry.mjs".to_owned()),
        (None, Framework::SvelteKit { node: true, .. }) => Some("node build".to_owned()),
        (None, _) => {
            let entry = match package.main()? {
                Some(main) => Some(main),
                None => ENTRIES.iter().find(|f| checkout.is_file(f)).map(|f| (*f).to_owned()),
            };
            entry.map(|entry| manager.node(&entry))
        }
    };
    // A build and nothing to run: a front end whose build writes the site.
    let serves_itself = start.is_some() || build.is_none();
    let prune = (serves_itself && install.is_some() && package.has_entries("devDependencies"))
        .then(|| manager.prune())
        .flatten();

    let mut vars = env(&[
        ("NODE_ENV", "production"),
        ("HOST", "0.0.0.0"),
        ("npm_config_update_notifier", "false"),
        ("npm_config_fund", "false"),
        ("npm_config_audit", "false"),
    ]);
    if matches!(framework, Framework::Next { .. }) {
        vars.extend(env(&[("HOSTNAME", "0.0.0.0"), ("NEXT_TELEMETRY_DISABLED", "1")]));
    }
    if manager.kind == Kind::YarnBerry {
        vars.extend(env(&[("YARN_ENABLE_TELEMETRY", "0")]));
    }
    let install_scripts = INSTALL_SCRIPTS.iter().any(|s| package.script(s).is_some());
    let deps = (install.is_some() && !install_scripts).then(|| {
        let mut inputs = vec!["package.json".to_owned()];
        inputs.extend(manager.lockfile.map(str::to_owned));
        inputs.extend(checkout.files(&INSTALL_INPUTS));
        Deps { inputs, outputs: manager.outputs() }
    });
    let plan = Plan {
        provider: if serves_itself { Provider::Node } else { Provider::Static },
        toolchains: vec![toolchain(checkout, &package)?],
        tools: manager.tool().into_iter().collect(),
        package_manager: install.as_ref().map(|_| manager.name().to_owned()),
        install,
        build,
        prune,
        start,
        static_root: None,
        env: vars,
        path: vec!["/app/node_modules/.bin".to_owned()],
        deps,
    };
    let output_dir = framework.output_dir(checkout, &package);
    let plan = if serves_itself { plan } else { Plan { static_root: Some(output_dir.clone()), ..plan } };
    Ok(Node { plan, output_dir })
}

fn invalid(error: String) -> PlanError {
    PlanError::InvalidFile { file: "package.json".into(), error }
}

/// `.nvmrc`, `.node-version`, then `engines.node`.
fn toolchain(checkout: &Checkout, package: &Package) -> Result<toolchains::Request, PlanError> {
    for file in [".nvmrc", ".node-version"] {
        let Some(text) = checkout.read(file)? else { continue };
        let line = text.lines().map(|l| l.split('#').next().unwrap_or("").trim()).find(|l| !l.is_empty());
        if let Some(version) = line {
            return Ok(request(Tool::Node, Some(version.to_owned()), file));
        }
    }
    let engines = package.0.get("engines").and_then(|e| e.get("node")).and_then(Value::as_str);
    Ok(request(Tool::Node, engines.map(str::to_owned), "package.json engines.node"))
}

/// package.json, read leniently: a field of the wrong type counts as absent, except where the plan would
/// otherwise run something unexpected.
struct Package<'a>(&'a Value);

impl Package<'_> {
    fn script(&self, name: &str) -> Option<&str> {
        self.0.get("scripts")?.get(name)?.as_str().map(str::trim).filter(|s| !s.is_empty())
    }

    fn has_entries(&self, field: &str) -> bool {
        self.0.get(field).and_then(Value::as_object).is_some_and(|d| !d.is_empty())
    }

    fn has_dependency(&self, name: &str) -> bool {
        ["dependencies", "devDependencies"].iter().any(|field| self.0.get(field).and_then(|d| d.get(name)).is_some())
    }

    fn main(&self) -> Result<Option<String>, PlanError> {
        match self.0.get("main") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(main)) if !main.trim().is_empty() => {
                if !is_safe_path(main) {
                    return Err(invalid(format!("`main` {main:?} must be a relative path without shell characters")));
                }
                Ok(Some(main.clone()))
            }
            Some(_) => Err(invalid("`main` must be a non-empty string".into())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Npm,
    YarnClassic,
    YarnBerry,
    Pnpm,
}

/// The package manager, its CLI's version when one must be installed, and its lock file.
#[derive(Debug)]
struct Manager {
    kind: Kind,
    /// The CLI to install (npm only when pinned: the toolchain ships one).
    version: Option<String>,
    lockfile: Option<&'static str>,
    /// Yarn berry with Plug'n'Play: no node_modules, so scripts and node run through yarn.
    pnp: bool,
}

impl Manager {
    fn detect(checkout: &Checkout, package: &Package, install_overridden: bool) -> Result<Manager, PlanError> {
        let unsupported =
            |found: &str| Err(PlanError::UnsupportedPackageManager { manager: "bun".into(), found: found.to_owned() });
        let (kind, pinned) = match package_manager_field(package)? {
            Some((name, version)) => match name.as_str() {
                "npm" => (Kind::Npm, version),
                "pnpm" => (Kind::Pnpm, version),
                "yarn" => {
                    let berry = match version.as_deref().and_then(major) {
                        Some(major) => major >= 2,
                        None => yarn_berry_files(checkout),
                    };
                    (if berry { Kind::YarnBerry } else { Kind::YarnClassic }, version)
                }
                "bun" if !install_overridden => return unsupported("package.json `packageManager`"),
                "bun" => (Kind::Npm, None),
                other => {
                    return Err(invalid(format!(
                        "`packageManager` names {other:?}; the platform runs npm, pnpm or yarn: fix or remove the field"
                    )));
                }
            },
            None => {
                let kind = if checkout.is_file("pnpm-lock.yaml") {
                    Kind::Pnpm
                } else if checkout.is_file("yarn.lock") {
                    if yarn_berry_files(checkout) { Kind::YarnBerry } else { Kind::YarnClassic }
                } else if checkout.first_file(&["package-lock.json", "npm-shrinkwrap.json"]).is_some() {
                    Kind::Npm
                } else if let Some(bun) =
                    checkout.first_file(&["bun.lock", "bun.lockb"]).filter(|_| !install_overridden)
                {
                    return unsupported(bun);
                } else {
                    Kind::Npm
                };
                (kind, None)
            }
        };
        let lockfile = match kind {
            Kind::Npm => checkout.first_file(&["package-lock.json", "npm-shrinkwrap.json"]),
            Kind::YarnClassic | Kind::YarnBerry => checkout.first_file(&["yarn.lock"]),
            Kind::Pnpm => checkout.first_file(&["pnpm-lock.yaml"]),
        };
        let version = match kind {
            Kind::Npm => pinned,
            Kind::YarnClassic => Some(pinned.unwrap_or_else(|| YARN_CLASSIC_VERSION.to_owned())),
            Kind::YarnBerry => Some(pinned.unwrap_or_else(|| YARN_BERRY_VERSION.to_owned())),
            Kind::Pnpm => Some(pinned.unwrap_or_else(|| pnpm_for_lockfile(checkout).to_owned())),
        };
        let pnp = kind == Kind::YarnBerry && !yarn_node_modules_linker(checkout);
        Ok(Manager { kind, version, lockfile, pnp })
    }

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Npm => "npm",
            Kind::YarnClassic | Kind::YarnBerry => "yarn",
            Kind::Pnpm => "pnpm",
        }
    }

    fn tool(&self) -> Option<PackageTool> {
        let name = if self.kind == Kind::YarnBerry { YARN_BERRY_PACKAGE } else { self.name() };
        let version = self.version.clone()?;
        Some(PackageTool { name: name.to_owned(), version, registry: ToolRegistry::Npm })
    }

    /// With `NODE_ENV=production`, npm, yarn 1 and pnpm would skip dev dependencies: the build needs them.
    fn install(&self) -> String {
        let locked = self.lockfile.is_some();
        match (self.kind, locked) {
            (Kind::Npm, true) => "npm ci --include=dev",
            (Kind::Npm, false) => "npm install --include=dev",
            (Kind::YarnClassic, true) => "yarn install --frozen-lockfile --production=false",
            (Kind::YarnClassic, false) => "yarn install --production=false",
            (Kind::YarnBerry, true) => "yarn install --immutable",
            (Kind::YarnBerry, false) => "yarn install",
            (Kind::Pnpm, true) => "pnpm install --frozen-lockfile --prod=false",
            (Kind::Pnpm, false) => "pnpm install --prod=false",
        }
        .to_owned()
    }

    /// Drops the dev dependencies after the build. Yarn berry has no prune that keeps its install state intact.
    fn prune(&self) -> Option<String> {
        let command = match self.kind {
            Kind::Npm => "npm prune --omit=dev".to_owned(),
            Kind::YarnClassic if self.lockfile.is_some() => {
                "yarn install --production=true --frozen-lockfile --ignore-scripts --prefer-offline".to_owned()
            }
            Kind::YarnClassic => "yarn install --production=true --ignore-scripts --prefer-offline".to_owned(),
            Kind::YarnBerry => return None,
            // pnpm 8.15.6 added --ignore-scripts to prune.
            Kind::Pnpm if self.version.as_deref().is_some_and(|v| at_least(v, &[8, 15, 6])) => {
                "pnpm prune --prod --ignore-scripts".to_owned()
            }
            Kind::Pnpm => "pnpm prune --prod".to_owned(),
        };
        Some(command)
    }

    fn run(&self, script: &str) -> String {
        format!("{} run {script}", self.name())
    }

    fn start(&self) -> String {
        if self.pnp { "yarn start".to_owned() } else { "npm start".to_owned() }
    }

    fn node(&self, entry: &str) -> String {
        if self.pnp { format!("yarn node {entry}") } else { format!("node {entry}") }
    }

    fn outputs(&self) -> Vec<String> {
        let outputs: &[&str] = if self.kind == Kind::YarnBerry {
            &["node_modules", ".yarn/cache", ".yarn/unplugged", ".yarn/install-state.gz", ".pnp.cjs", ".pnp.loader.mjs"]
        } else {
            &["node_modules"]
        };
        outputs.iter().map(|s| (*s).to_owned()).collect()
    }
}

/// `packageManager`: `pnpm@9.15.0+sha512.abc…` → (`pnpm`, `9.15.0`).
fn package_manager_field(package: &Package) -> Result<Option<(String, Option<String>)>, PlanError> {
    let Some(field) = package.0.get("packageManager") else { return Ok(None) };
    let Some(text) = field.as_str().map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(invalid("`packageManager` must be a string like \"pnpm@9.15.0\"".into()));
    };
    let (name, version) = match text.split_once('@') {
        Some((name, rest)) => (name, Some(rest.split('+').next().unwrap_or(""))),
        None => (text, None),
    };
    if let Some(version) = version.filter(|v| !is_safe_word(v) || !v.starts_with(|c: char| c.is_ascii_digit())) {
        return Err(invalid(format!(
            "`packageManager` {text:?} has the version {version:?}: give an exact version like \"{name}@9.15.0\""
        )));
    }
    Ok(Some((name.to_owned(), version.map(str::to_owned))))
}

/// A berry project: `.yarnrc.yml` (classic reads `.yarnrc`), or a berry lock file (it has `__metadata:`).
fn yarn_berry_files(checkout: &Checkout) -> bool {
    checkout.is_file(".yarnrc.yml") || checkout.skim("yarn.lock", 4096).is_some_and(|lock| lock.contains("__metadata:"))
}

/// `.yarnrc.yml` says `nodeLinker: node-modules` (or `pnpm`): berry writes node_modules, no Plug'n'Play.
fn yarn_node_modules_linker(checkout: &Checkout) -> bool {
    checkout.skim(".yarnrc.yml", 64 * 1024).is_some_and(|rc| {
        rc.lines().any(|line| {
            let Some((key, value)) = line.split_once(':') else { return false };
            let value = value.trim().trim_matches(['"', '\'']);
            key.trim() == "nodeLinker" && (value == "node-modules" || value == "pnpm")
        })
    })
}

/// The pnpm that reads the lock file: older `lockfileVersion`s get the last release of their major.
fn pnpm_for_lockfile(checkout: &Checkout) -> &'static str {
    let Some(lock) = checkout.skim("pnpm-lock.yaml", 1024) else { return PNPM_VERSION };
    let version =
        lock.lines().find_map(|line| line.strip_prefix("lockfileVersion:")).map(|v| v.trim().trim_matches(['"', '\'']));
    let Some(version) = version else { return PNPM_VERSION };
    PNPM_FOR_LOCKFILE.iter().find(|(prefix, _)| version.starts_with(prefix)).map_or(PNPM_VERSION, |(_, pnpm)| pnpm)
}

fn major(version: &str) -> Option<u64> {
    version.split('.').next()?.parse().ok()
}

/// `version` ≥ `minimum`, comparing the numeric components (a prerelease suffix is ignored).
fn at_least(version: &str, minimum: &[u64]) -> bool {
    let parts: Vec<u64> = version.split(['.', '-']).take(minimum.len()).map(|p| p.parse().unwrap_or(0)).collect();
    parts.as_slice() >= minimum
}

/// The framework, for its start command and static output.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Framework {
    /// `export`: `output: 'export'` (or `next export`) writes a static site to `out`.
    Next {
        export: bool,
    },
    Nuxt,
    /// `node_server`: the @astrojs/node adapter; any adapter or `output: 'server'` makes it a server.
    Astro {
        server: bool,
        node_server: bool,
    },
    /// `static_site`: @sveltejs/adapter-static; `node`: @sveltejs/adapter-node.
    SvelteKit {
        static_site: bool,
        node: bool,
    },
    Cra,
    VueCli,
    Vite,
    Other,
}

impl Framework {
    fn detect(checkout: &Checkout, package: &Package) -> Framework {
        let build = package.script("build").unwrap_or("");
        if package.has_dependency("next") {
            let config =
                first_config(checkout, &["next.config.js", "next.config.mjs", "next.config.ts", "next.config.cjs"]);
            return Framework::Next { export: build.contains("next export") || sets(&config, "output", "export") };
        }
        if package.has_dependency("nuxt") {
            return Framework::Nuxt;
        }
        if package.has_dependency("astro") || build.contains("astro build") {
            let config =
                first_config(checkout, &["astro.config.mjs", "astro.config.ts", "astro.config.js", "astro.config.mts"]);
            let adapters = ["@astrojs/node", "@astrojs/vercel", "@astrojs/netlify", "@astrojs/cloudflare"];
            let server = adapters.iter().any(|a| package.has_dependency(a)) || sets(&config, "output", "server");
            return Framework::Astro { server, node_server: package.has_dependency("@astrojs/node") };
        }
        if package.has_dependency("@sveltejs/kit") {
            return Framework::SvelteKit {
                static_site: package.has_dependency("@sveltejs/adapter-static"),
                node: package.has_dependency("@sveltejs/adapter-node"),
            };
        }
        if package.has_dependency("react-scripts") {
            return Framework::Cra;
        }
        if package.has_dependency("@vue/cli-service") {
            return Framework::VueCli;
        }
        if package.has_dependency("vite") || build.contains("vite build") {
            return Framework::Vite;
        }
        Framework::Other
    }

    /// A start script that runs a static framework's dev or preview server: not how the site is served.
    fn is_dev_server(&self, script: &str) -> bool {
        let cli = match self {
            Framework::Vite | Framework::SvelteKit { static_site: true, .. } => "vite",
            Framework::Cra => "react-scripts",
            Framework::VueCli => "vue-cli-service",
            Framework::Astro { server: false, .. } => "astro",
            Framework::Next { export: true } => "next",
            _ => return false,
        };
        script.split_whitespace().next() == Some(cli)
    }

    fn output_dir(&self, checkout: &Checkout, package: &Package) -> String {
        let configured = match self {
            Framework::Vite => {
                let config = first_config(
                    checkout,
                    &["vite.config.ts", "vite.config.js", "vite.config.mjs", "vite.config.mts", "vite.config.cjs"],
                );
                quoted_after(&config, "outDir")
                    .or_else(|| flag_value(package.script("build").unwrap_or(""), "--outDir"))
            }
            Framework::Astro { .. } => {
                let config = first_config(
                    checkout,
                    &["astro.config.mjs", "astro.config.ts", "astro.config.js", "astro.config.mts"],
                );
                quoted_after(&config, "outDir")
            }
            _ => None,
        };
        let default = match self {
            Framework::Next { .. } => "out",
            Framework::Cra | Framework::SvelteKit { .. } => "build",
            _ => "dist",
        };
        configured
            .map(|dir| dir.trim_start_matches("./").trim_end_matches('/').to_owned())
            .filter(|dir| !dir.is_empty() && dir != "." && is_safe_path(dir))
            .unwrap_or_else(|| default.to_owned())
    }
}

/// The first of a framework's config files, skimmed; "" when there is none.
fn first_config(checkout: &Checkout, files: &[&str]) -> String {
    checkout.first_file(files).and_then(|f| checkout.skim(f, SKIM_SOURCE)).unwrap_or_default()
}

/// Whether a JS config sets `key: 'value'` (any quotes, any spacing).
fn sets(config: &str, key: &str, value: &str) -> bool {
    let compact: String = config.chars().filter(|c| !c.is_whitespace()).collect();
    ['\'', '"', '`'].iter().any(|q| compact.contains(&format!("{key}:{q}{value}{q}")))
}

/// The string after `key:` in a JS config (`outDir: 'build'` → `build`).
fn quoted_after(config: &str, key: &str) -> Option<String> {
    config.match_indices(key).find_map(|(at, _)| {
        let rest = config[at + key.len()..].trim_start().strip_prefix(':')?.trim_start();
        let quote = rest.chars().next().filter(|q| ['\'', '"', '`'].contains(q))?;
        let value = &rest[1..];
        Some(value[..value.find(quote)?].to_owned())
    })
}

/// The value of `--flag value` or `--flag=value` in a script.
fn flag_value(script: &str, flag: &str) -> Option<String> {
    let mut words = script.split_whitespace();
    while let Some(word) = words.next() {
        if word == flag {
            return words.next().map(|v| v.trim_end_matches([';', '&']).to_owned());
        }
        if let Some(value) = word.strip_prefix(flag).and_then(|rest| rest.strip_prefix('=')) {
            return Some(value.trim_end_matches([';', '&']).to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{app, env_has};
    use super::*;
    use crate::plan::Overrides;
    use toolchains::Request;

    fn node(constraint: &str, from: &str) -> Request {
        Request { tool: Tool::Node, constraint: Some(constraint.into()), from: Some(from.into()) }
    }

    fn tool(name: &str, version: &str) -> PackageTool {
        PackageTool { name: name.into(), version: version.into(), registry: ToolRegistry::Npm }
    }

    // Start and build

    #[test]
    fn given_package_json_with_start_when_detect_then_npm_start_with_node_env() {
        let plan = app().file("package.json", r#"{"scripts": {"start": "node server.js"}}"#).detect().unwrap();
        assert_eq!(plan.provider, Provider::Node);
        assert_eq!(plan.start.as_deref(), Some("npm start"));
        assert_eq!((&plan.install, &plan.package_manager, &plan.deps, &plan.prune), (&None, &None, &None, &None));
        assert_eq!(plan.toolchains, [Request { tool: Tool::Node, constraint: None, from: None }]);
        assert!(env_has(&plan, "NODE_ENV", "production") && env_has(&plan, "HOST", "0.0.0.0"));
        assert_eq!(plan.path, ["/app/node_modules/.bin"]);
        assert_eq!(plan.describe(), "node: start `npm start`");
    }

    #[test]
    fn given_dependencies_and_lockfile_when_detect_then_npm_ci_with_dev_build_and_prune() {
        let app = app()
            .file(
                "package.json",
                r#"{"dependencies": {"express": "^5"}, "devDependencies": {"typescript": "5"},
                    "scripts": {"build": "tsc", "start": "node dist/index.js"}}"#,
            )
            .file("package-lock.json", "{}")
            .file(".npmrc", "engine-strict=true\n");
        let plan = app.detect().unwrap();
        assert_eq!(plan.install.as_deref(), Some("npm ci --include=dev"));
        assert_eq!(plan.build.as_deref(), Some("npm run build"));
        assert_eq!(plan.prune.as_deref(), Some("npm prune --omit=dev"));
        assert_eq!(plan.tools, []);
        let deps = plan.deps.clone().unwrap();
        assert_eq!(deps.inputs, ["package.json", "package-lock.json", ".npmrc"]);
        assert_eq!(deps.outputs, ["node_modules"]);
        assert_eq!(
            plan.describe(),
            "node, npm: install `npm ci --include=dev`, build `npm run build`, prune `npm prune --omit=dev`, \
             start `npm start`"
        );
    }

    #[test]
    fn given_dependencies_without_lockfile_or_dev_dependencies_when_detect_then_npm_install_and_no_prune() {
        let app = app().file("package.json", r#"{"dependencies": {"x": "1"}, "scripts": {"start": "node a.js"}}"#);
        let plan = app.detect().unwrap();
        assert_eq!(plan.install.as_deref(), Some("npm install --include=dev"));
        assert_eq!(plan.prune, None);
        assert_eq!(plan.deps.unwrap().inputs, ["package.json"]);
    }

    #[test]
    fn given_empty_dependencies_when_detect_then_no_install() {
        let app = app()
            .file("package.json", r#"{"dependencies": {}, "devDependencies": {}, "scripts": {"start": "node a.js"}}"#)
            .file("package-lock.json", "{}");
        assert_eq!(app.detect().unwrap().install, None);
    }

    #[test]
    fn given_an_install_script_when_detect_then_dependencies_are_not_cacheable() {
        let app = app()
            .file(
                "package.json",
                r#"{"dependencies": {"x": "1"}, "scripts": {"postinstall": "prisma generate", "start": "node a.js"}}"#,
            )
            .file("package-lock.json", "{}");
        assert_eq!(app.detect().unwrap().deps, None);
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
    fn given_invalid_package_json_when_detect_then_error_names_file_and_parse_error() {
        let app = app().file("package.json", "{\"scripts\": {\"start\": \"node a.js\",}}");
        let err = app.detect().unwrap_err();
        assert!(matches!(&err, PlanError::InvalidFile { file, .. } if file == "package.json"), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("package.json") && message.contains("line 1"), "{message}");
    }

    #[test]
    fn given_package_json_that_is_not_an_object_when_detect_then_invalid_file() {
        assert!(matches!(app().file("package.json", "[1, 2]").detect(), Err(PlanError::InvalidFile { .. })));
    }

    #[test]
    fn given_main_with_shell_syntax_or_climbing_out_when_detect_then_invalid_file() {
        for main in ["a.js; rm -rf /", "../outside.js"] {
            let app = app().file("package.json", serde_json::json!({ "main": main }).to_string());
            assert!(matches!(app.detect(), Err(PlanError::InvalidFile { .. })), "{main}");
        }
    }

    #[test]
    fn given_node_app_with_nothing_to_start_when_detect_then_no_start_command() {
        let err = app().file("package.json", r#"{"name": "lib"}"#).detect().unwrap_err();
        assert!(matches!(err, PlanError::NoStartCommand { provider: Provider::Node, .. }), "{err:?}");
        assert!(err.to_string().contains("start_command"), "{err}");
    }

    // Toolchain

    #[test]
    fn given_version_files_when_detect_then_the_first_found_wins() {
        let app = app()
            .file("package.json", r#"{"engines": {"node": ">=18 <21 || ^22"}, "scripts": {"start": "node a.js"}}"#)
            .file(".nvmrc", "# team default\nv20.11.0 # LTS\n")
            .file(".node-version", "22\n");
        assert_eq!(app.detect().unwrap().toolchains, [node("v20.11.0", ".nvmrc")]);
        std::fs::remove_file(app.0.join(".nvmrc")).unwrap();
        assert_eq!(app.detect().unwrap().toolchains, [node("22", ".node-version")]);
        std::fs::remove_file(app.0.join(".node-version")).unwrap();
        let plan = app.detect().unwrap();
        assert_eq!(plan.toolchains, [node(">=18 <21 || ^22", "package.json engines.node")]);
        assert_eq!(plan.describe(), "node >=18 <21 || ^22 (package.json engines.node): start `npm start`");
    }

    // Package managers

    #[test]
    fn given_package_manager_pnpm_with_a_hash_when_detect_then_that_pnpm_runs_every_step() {
        let app = app()
            .file(
                "package.json",
                r#"{"packageManager": "pnpm@9.15.0+sha512.76e2379760a4328ec4415815bcd6628dee727af3779aaa4c914e3944156c4299",
                    "dependencies": {"express": "5"}, "devDependencies": {"tsx": "4"},
                    "scripts": {"build": "tsc", "start": "node dist/server.js"}}"#,
            )
            .file("pnpm-lock.yaml", "lockfileVersion: '9.0'\n")
            .file("package-lock.json", "{}");
        let plan = app.detect().unwrap();
        assert_eq!(plan.tools, [tool("pnpm", "9.15.0")]);
        assert_eq!(plan.package_manager.as_deref(), Some("pnpm"));
        assert_eq!(plan.install.as_deref(), Some("pnpm install --frozen-lockfile --prod=false"));
        assert_eq!(plan.build.as_deref(), Some("pnpm run build"));
        assert_eq!(plan.prune.as_deref(), Some("pnpm prune --prod --ignore-scripts"));
        assert_eq!(plan.start.as_deref(), Some("npm start"));
        assert_eq!(plan.deps.as_ref().unwrap().inputs, ["package.json", "pnpm-lock.yaml"]);
        assert!(plan.describe().starts_with("node, pnpm 9.15.0: install"), "{}", plan.describe());
    }

    #[test]
    fn given_a_pnpm_lock_without_the_field_when_detect_then_pnpm_by_lockfile_version() {
        let package =
            r#"{"dependencies": {"a": "1"}, "devDependencies": {"b": "1"}, "scripts": {"start": "node a.js"}}"#;
        let app = app().file("package.json", package).file("pnpm-lock.yaml", "lockfileVersion: '6.0'\n\nsettings:\n");
        let plan = app.detect().unwrap();
        assert_eq!(plan.tools, [tool("pnpm", "8.15.9")]);
        assert_eq!(plan.prune.as_deref(), Some("pnpm prune --prod --ignore-scripts"));
        let app = app.file("pnpm-lock.yaml", "lockfileVersion: 5.3\n");
        let plan = app.detect().unwrap();
        assert_eq!((plan.tools[0].version.as_str(), plan.prune.as_deref()), ("6.35.1", Some("pnpm prune --prod")));
        let app = app.file("pnpm-lock.yaml", "lockfileVersion: '9.0'\n");
        assert_eq!(app.detect().unwrap().tools, [tool("pnpm", PNPM_VERSION)]);
    }

    #[test]
    fn given_a_classic_yarn_lock_when_detect_then_yarn_1_installs_with_dev_and_reinstalls_for_production() {
        let app = app()
            .file("package.json", r#"{"dependencies": {"express": "^5"}, "devDependencies": {"nodemon": "3"}, "scripts": {"start": "node index.js"}}"#)
            .file("yarn.lock", "# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.\n# yarn lockfile v1\n")
            .file(".yarnrc", "network-timeout 600000\n");
        let plan = app.detect().unwrap();
        assert_eq!(plan.tools, [tool("yarn", YARN_CLASSIC_VERSION)]);
        assert_eq!(plan.install.as_deref(), Some("yarn install --frozen-lockfile --production=false"));
        assert_eq!(
            plan.prune.as_deref(),
            Some("yarn install --production=true --frozen-lockfile --ignore-scripts --prefer-offline")
        );
        assert_eq!(plan.start.as_deref(), Some("npm start"));
        assert_eq!(plan.deps.unwrap().inputs, ["package.json", "yarn.lock", ".yarnrc"]);
    }

    #[test]
    fn given_yarn_berry_with_plug_n_play_when_detect_then_yarn_runs_the_app_and_nothing_is_pruned() {
        let app = app()
            .file("package.json", r#"{"dependencies": {"express": "^5"}, "devDependencies": {"x": "1"}, "scripts": {"start": "node index.js"}}"#)
            .file("yarn.lock", "__metadata:\n  version: 8\n")
            .file(".yarnrc.yml", "enableTelemetry: false\n");
        let plan = app.detect().unwrap();
        assert_eq!(plan.tools, [tool(YARN_BERRY_PACKAGE, YARN_BERRY_VERSION)]);
        assert_eq!(plan.package_manager.as_deref(), Some("yarn"));
        assert_eq!(plan.install.as_deref(), Some("yarn install --immutable"));
        assert_eq!((plan.prune.as_deref(), plan.start.as_deref()), (None, Some("yarn start")));
        assert!(plan.deps.as_ref().unwrap().outputs.contains(&".pnp.cjs".to_owned()));
        assert!(
            plan.describe().starts_with(&format!("node, yarn {YARN_BERRY_VERSION}: install")),
            "{}",
            plan.describe()
        );
    }

    #[test]
    fn given_package_manager_yarn_4_with_node_modules_linker_when_detect_then_berry_with_npm_start() {
        let app = app()
            .file(
                "package.json",
                r#"{"packageManager": "yarn@4.5.0", "dependencies": {"a": "1"}, "scripts": {"start": "node s.js"}}"#,
            )
            .file("yarn.lock", "# yarn lockfile v1\n")
            .file(".yarnrc.yml", "nodeLinker: \"node-modules\"\n");
        let plan = app.detect().unwrap();
        assert_eq!(plan.tools, [tool(YARN_BERRY_PACKAGE, "4.5.0")]);
        assert_eq!(
            (plan.install.as_deref(), plan.start.as_deref()),
            (Some("yarn install --immutable"), Some("npm start"))
        );
    }

    #[test]
    fn given_package_manager_yarn_1_when_detect_then_classic_even_with_a_yarnrc_yml() {
        let app = app()
            .file(
                "package.json",
                r#"{"packageManager": "yarn@1.22.19", "dependencies": {"a": "1"}, "scripts": {"start": "node s.js"}}"#,
            )
            .file(".yarnrc.yml", "");
        let plan = app.detect().unwrap();
        assert_eq!(plan.tools, [tool("yarn", "1.22.19")]);
        assert_eq!(plan.install.as_deref(), Some("yarn install --production=false"));
    }

    #[test]
    fn given_package_manager_npm_when_detect_then_that_npm_is_installed() {
        let app = app()
            .file(
                "package.json",
                r#"{"packageManager": "npm@10.9.0", "dependencies": {"a": "1"}, "scripts": {"start": "node s.js"}}"#,
            )
            .file("yarn.lock", "");
        let plan = app.detect().unwrap();
        assert_eq!(plan.tools, [tool("npm", "10.9.0")]);
        assert_eq!(plan.install.as_deref(), Some("npm install --include=dev"));
    }

    #[test]
    fn given_a_bun_lock_when_detect_then_unsupported_with_what_to_do_unless_install_is_overridden() {
        let app = app()
            .file("package.json", r#"{"dependencies": {"a": "1"}, "scripts": {"start": "node s.js"}}"#)
            .file("bun.lockb", b"\x00bin");
        let err = app.detect().unwrap_err();
        assert_eq!(err, PlanError::UnsupportedPackageManager { manager: "bun".into(), found: "bun.lockb".into() });
        let message = err.to_string();
        assert!(message.contains("package-lock.json") && message.contains("`install_command`"), "{message}");
        let overrides = Overrides { install_command: Some("npm install".into()), ..Overrides::default() };
        assert_eq!(app.detect_with(overrides).unwrap().install.as_deref(), Some("npm install"));
    }

    #[test]
    fn given_package_manager_bun_when_detect_then_unsupported() {
        let app = app().file("package.json", r#"{"packageManager": "bun@1.1.0", "scripts": {"start": "node s.js"}}"#);
        assert!(matches!(app.detect(), Err(PlanError::UnsupportedPackageManager { .. })));
    }

    #[test]
    fn given_a_malformed_package_manager_when_detect_then_invalid_file() {
        for field in [r#""pnpm@latest""#, r#""pnpm@9;rm -rf /""#, r#""deno@2.0.0""#, "42"] {
            let app =
                app().file("package.json", format!(r#"{{"packageManager": {field}, "scripts": {{"start": "x"}}}}"#));
            assert!(matches!(app.detect(), Err(PlanError::InvalidFile { .. })), "{field}");
        }
    }

    #[test]
    fn given_a_huge_package_lock_when_detect_then_only_its_presence_matters() {
        let lock = format!("{{\"lockfileVersion\": 3, \"x\": \"{}\"}}", "x".repeat(3 * 1024 * 1024));
        let app = app()
            .file("package.json", r#"{"dependencies": {"a": "1"}, "scripts": {"start": "node s.js"}}"#)
            .file("package-lock.json", lock);
        assert_eq!(app.detect().unwrap().install.as_deref(), Some("npm ci --include=dev"));
    }

    #[test]
    fn given_a_lockfile_symlinked_out_of_the_checkout_when_detect_then_it_is_absent() {
        let outside = app().file("pnpm-lock.yaml", "lockfileVersion: '6.0'\n");
        let app = app()
            .file("package.json", r#"{"dependencies": {"a": "1"}, "scripts": {"start": "node s.js"}}"#)
            .symlink(outside.0.join("pnpm-lock.yaml"), "pnpm-lock.yaml");
        assert_eq!(app.detect().unwrap().install.as_deref(), Some("npm install --include=dev"));
    }

    // Frameworks

    #[test]
    fn given_build_script_and_nothing_to_run_when_detect_then_static_dist() {
        let app = app()
            .file("package.json", r#"{"devDependencies": {"vite": "5"}, "scripts": {"build": "vite build"}}"#)
            .file("index.html", "<script src=/src/main.ts>");
        let plan = app.detect().unwrap();
        assert_eq!(plan.provider, Provider::Static);
        assert_eq!(plan.install.as_deref(), Some("npm install --include=dev"));
        assert_eq!((plan.build.as_deref(), plan.start, plan.prune), (Some("npm run build"), None, None));
        assert_eq!(plan.static_root.as_deref(), Some("dist"));
    }

    #[test]
    fn given_vite_with_a_preview_start_script_and_an_out_dir_when_detect_then_static_from_that_dir() {
        let app = app()
            .file("package.json", r#"{"devDependencies": {"vite": "6"}, "scripts": {"build": "tsc && vite build", "start": "vite preview --port $PORT"}}"#)
            .file("vite.config.ts", "export default defineConfig({\n  build: { outDir : \"site/\" },\n})\n");
        let plan = app.detect().unwrap();
        assert_eq!((plan.provider, plan.static_root.as_deref()), (Provider::Static, Some("site")));
        let app = app.file("vite.config.ts", "export default {}\n").file(
            "package.json",
            r#"{"devDependencies": {"vite": "6"}, "scripts": {"build": "vite build --outDir=public_html"}}"#,
        );
        assert_eq!(app.detect().unwrap().static_root.as_deref(), Some("public_html"));
    }

    #[test]
    fn given_an_out_dir_climbing_out_when_detect_then_the_default_is_served() {
        let app = app()
            .file("package.json", r#"{"devDependencies": {"vite": "6"}, "scripts": {"build": "vite build"}}"#)
            .file("vite.config.js", "export default { build: { outDir: '../../etc' } }\n");
        assert_eq!(app.detect().unwrap().static_root.as_deref(), Some("dist"));
    }

    #[test]
    fn given_create_react_app_when_detect_then_static_build_dir_despite_its_dev_start_script() {
        let app = app()
            .file(
                "package.json",
                r#"{"dependencies": {"react-scripts": "5"}, "scripts": {"start": "react-scripts start", "build": "react-scripts build"}}"#,
            )
            .file("public/index.html", "");
        let plan = app.detect().unwrap();
        assert_eq!((plan.provider, plan.static_root.as_deref()), (Provider::Static, Some("build")));
    }

    #[test]
    fn given_vue_cli_and_static_astro_when_detect_then_dist() {
        let vue = app().file("package.json", r#"{"devDependencies": {"@vue/cli-service": "5"}, "scripts": {"build": "vue-cli-service build", "start": "vue-cli-service serve"}}"#);
        assert_eq!(vue.detect().unwrap().static_root.as_deref(), Some("dist"));
        let astro = app()
            .file(
                "package.json",
                r#"{"dependencies": {"astro": "5"}, "scripts": {"build": "astro build", "start": "astro dev"}}"#,
            )
            .file("astro.config.mjs", "export default defineConfig({ site: 'https://x' })\n");
        let plan = astro.detect().unwrap();
        assert_eq!((plan.provider, plan.static_root.as_deref()), (Provider::Static, Some("dist")));
    }

    #[test]
    fn given_astro_with_the_node_adapter_when_detect_then_its_server_runs() {
        let app = app().file(
            "package.json",
            r#"{"dependencies": {"astro": "5", "@astrojs/node": "9"}, "scripts": {"build": "astro build"}}"#,
        );
        let plan = app.detect().unwrap();
        assert_eq!((plan.provider, plan.start.as_deref()), (Provider::Node, Some("node ./dist/server/entry.mjs")));
    }

    #[test]
    fn given_next_with_next_start_script_when_detect_then_npm_start_bound_to_all_interfaces() {
        let app = app()
            .file("package.json", r#"{"dependencies": {"next": "15", "react": "19"}, "scripts": {"build": "next build", "start": "next start"}}"#)
            .file("package-lock.json", "{}");
        let plan = app.detect().unwrap();
        assert_eq!((plan.provider, plan.start.as_deref()), (Provider::Node, Some("npm start")));
        assert!(env_has(&plan, "HOSTNAME", "0.0.0.0") && env_has(&plan, "NEXT_TELEMETRY_DISABLED", "1"));
    }

    #[test]
    fn given_next_without_a_start_script_when_detect_then_npx_next_start() {
        let app = app().file("package.json", r#"{"dependencies": {"next": "15"}, "scripts": {"build": "next build"}}"#);
        assert_eq!(app.detect().unwrap().start.as_deref(), Some("npx next start"));
    }

    #[test]
    fn given_next_static_export_when_detect_then_static_out() {
        let app = app()
            .file(
                "package.json",
                r#"{"dependencies": {"next": "15"}, "scripts": {"build": "next build", "start": "next start"}}"#,
            )
            .file("next.config.mjs", "const nextConfig = {\n  output: \"export\",\n};\nexport default nextConfig;\n");
        let plan = app.detect().unwrap();
        assert_eq!((plan.provider, plan.static_root.as_deref()), (Provider::Static, Some("out")));
        let app = app.file("next.config.mjs", "export default {}").file(
            "package.json",
            r#"{"dependencies": {"next": "13"}, "scripts": {"build": "next build && next export"}}"#,
        );
        assert_eq!(app.detect().unwrap().static_root.as_deref(), Some("out"));
    }

    #[test]
    fn given_nuxt_or_sveltekit_node_when_detect_then_their_node_servers_run() {
        let nuxt = app().file("package.json", r#"{"dependencies": {"nuxt": "3"}, "scripts": {"build": "nuxt build"}}"#);
        assert_eq!(nuxt.detect().unwrap().start.as_deref(), Some("node .output/server/index.mjs"));
        let kit = app().file(
            "package.json",
            r#"{"devDependencies": {"@sveltejs/kit": "2", "@sveltejs/adapter-node": "5", "vite": "6"}, "scripts": {"build": "vite build"}}"#,
        );
        assert_eq!(kit.detect().unwrap().start.as_deref(), Some("node build"));
        let kit = kit.file(
            "package.json",
            r#"{"devDependencies": {"@sveltejs/kit": "2", "@sveltejs/adapter-static": "3", "vite": "6"}, "scripts": {"build": "vite build", "start": "vite preview"}}"#,
        );
        assert_eq!(kit.detect().unwrap().static_root.as_deref(), Some("build"));
    }

    #[test]
    fn given_versions_when_compared_then_numeric_components_decide() {
        assert!(at_least("8.15.6", &[8, 15, 6]) && at_least("10.0.0-rc.1", &[8, 15, 6]) && at_least("9", &[8, 15, 6]));
        assert!(!at_least("8.15.5", &[8, 15, 6]) && !at_least("7.33.7", &[8, 15, 6]));
    }
}
