//! What a build step and the app see: PATH, toolchains, package caches, mirrors, the egress
//! proxy and the host's CA store, as variables and binds.
//!
//! Pure: the builder passes in what it resolved (toolchains, tools, the step's proxy address),
//! and gets back the variables of one step, or of the app at run time. Every package manager is
//! configured here, once, so that plans never name a registry, a cache or a toolchain path.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::plan::Plan;

/// Where the owner's package caches appear in build sandboxes.
pub(crate) const CACHE_GUEST: &str = "/cache";
/// Package-manager CLIs installed by the builder (pnpm, yarn, uv, poetry, pipenv), per owner.
pub(crate) const TOOLS_GUEST: &str = "/cache/tools";
/// What every sandbox has on PATH after the app's own directories.
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The host's CA bundle (bound into sandboxes with /etc/ssl/certs): registries behind a
/// TLS-inspecting proxy, and private mirrors, are trusted like the host trusts them.
pub(crate) const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Mirror names the builder knows how to configure.
pub(crate) const MIRRORS: [&str; 4] = ["pypi", "npm", "go", "cargo"];

/// A toolchain as a step sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolchainEnv {
    pub path: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl From<&toolchains::Toolchain> for ToolchainEnv {
    fn from(t: &toolchains::Toolchain) -> Self {
        ToolchainEnv { path: t.path.clone(), env: t.env.clone() }
    }
}

/// What one step runs with, besides the plan and the toolchains.
#[derive(Debug, Clone)]
pub(crate) struct StepContext<'a> {
    /// The step's egress proxy, as the sandbox reaches it.
    pub proxy: Option<SocketAddr>,
    /// Mirror URLs for this step (`name` → URL the sandbox uses), from the operator's settings.
    pub mirrors: &'a BTreeMap<String, String>,
    /// Bin directories of installed package-manager CLIs.
    pub tool_bins: &'a [String],
    /// Where cargo builds this service (a per-service directory of the owner's cache).
    pub cargo_target: String,
    /// The host has a CA bundle to point tools at.
    pub ca_bundle: bool,
}

/// PATH: the app's directories, then its toolchains, then the system.
fn path(plan: &Plan, toolchains: &[ToolchainEnv], tool_bins: &[String]) -> String {
    plan.path
        .iter()
        .chain(tool_bins)
        .chain(toolchains.iter().flat_map(|t| &t.path))
        .map(String::as_str)
        .chain(std::iter::once(SYSTEM_PATH))
        .collect::<Vec<_>>()
        .join(":")
}

/// The variables the app runs with (recorded in its manifest): PATH and the plan's and
/// toolchains' variables. The service's own variables are added over these at launch.
pub(crate) fn run_env(plan: &Plan, toolchains: &[ToolchainEnv]) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for t in toolchains {
        env.extend(t.env.iter().cloned());
    }
    env.extend(plan.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.insert("PATH".into(), path(plan, toolchains, &[]));
    env.into_iter().collect()
}

/// The variables of one install, build or prune step.
pub(crate) fn step_env(plan: &Plan, toolchains: &[ToolchainEnv], cx: &StepContext<'_>) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    put(&mut env, "CI", "true");
    // Package caches, shared by the owner's builds (never another owner's: a build can write them).
    for (key, dir) in [
        ("PIP_CACHE_DIR", "pip"),
        ("UV_CACHE_DIR", "uv"),
        ("POETRY_CACHE_DIR", "poetry"),
        ("PIPENV_CACHE_DIR", "pipenv"),
        ("npm_config_cache", "npm"),
        ("YARN_CACHE_FOLDER", "yarn"),
        ("YARN_GLOBAL_FOLDER", "yarn-berry"),
        ("npm_config_store_dir", "pnpm-store"),
        ("COREPACK_HOME", "corepack"),
        ("GOPATH", "go"),
        ("GOMODCACHE", "go/pkg/mod"),
        ("GOCACHE", "go/build"),
        ("CARGO_HOME", "cargo"),
        ("XDG_CACHE_HOME", "xdg"),
    ] {
        put(&mut env, key, &format!("{CACHE_GUEST}/{dir}"));
    }
    put(&mut env, "CARGO_TARGET_DIR", &cx.cargo_target);
    // Quiet, non-interactive, no self-updates or telemetry reaching for the network.
    for (k, v) in [
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        ("PIP_NO_INPUT", "1"),
        ("PIP_PROGRESS_BAR", "off"),
        ("npm_config_update_notifier", "false"),
        ("npm_config_fund", "false"),
        ("npm_config_audit", "false"),
        ("npm_config_progress", "false"),
        ("NEXT_TELEMETRY_DISABLED", "1"),
        ("UV_PYTHON_DOWNLOADS", "never"),
        ("COREPACK_ENABLE_DOWNLOAD_PROMPT", "0"),
        ("GOTOOLCHAIN", "local"),
        ("CARGO_TERM_COLOR", "never"),
        ("CARGO_NET_RETRY", "2"),
    ] {
        put(&mut env, k, v);
    }
    env.extend(proxy_env(cx.proxy, cx.ca_bundle));
    if let Some(proxy) = cx.proxy {
        let host = proxy.ip().to_string();
        if let Some(pypi) = cx.mirrors.get("pypi") {
            for k in ["PIP_INDEX_URL", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "PIPENV_PYPI_MIRROR"] {
                put(&mut env, k, pypi);
            }
            // The mirror path is plain HTTP on the sandbox's own link, which these tools refuse by default.
            put(&mut env, "PIP_TRUSTED_HOST", &host);
            put(&mut env, "UV_INSECURE_HOST", &host);
        }
        if let Some(npm) = cx.mirrors.get("npm") {
            for k in ["npm_config_registry", "YARN_REGISTRY", "YARN_NPM_REGISTRY_SERVER", "COREPACK_NPM_REGISTRY"] {
                put(&mut env, k, npm);
            }
            put(&mut env, "YARN_UNSAFE_HTTP_WHITELIST", &host);
        }
        if let Some(go) = cx.mirrors.get("go") {
            put(&mut env, "GOPROXY", go);
        }
    }
    // The plan's and toolchains' own variables come last: they know their tools best.
    for t in toolchains {
        env.extend(t.env.iter().cloned());
    }
    env.extend(plan.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.insert("PATH".into(), path(plan, toolchains, cx.tool_bins));
    env.into_iter().collect()
}

fn put(env: &mut BTreeMap<String, String>, key: &str, value: &str) {
    env.insert(key.to_owned(), value.to_owned());
}

/// The proxy and CA variables every client library reads (also given to `buildah`, which passes
/// them on to a Dockerfile's `RUN` steps).
pub(crate) fn proxy_env(proxy: Option<SocketAddr>, ca_bundle: bool) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let mut set = |k: &str, v: &str| env.push((k.to_owned(), v.to_owned()));
    if ca_bundle {
        for k in [
            "SSL_CERT_FILE",
            "NODE_EXTRA_CA_CERTS",
            "PIP_CERT",
            "REQUESTS_CA_BUNDLE",
            "CARGO_HTTP_CAINFO",
            "GIT_SSL_CAINFO",
        ] {
            set(k, CA_BUNDLE);
        }
        set("UV_NATIVE_TLS", "true");
    }
    if let Some(proxy) = proxy {
        let url = format!("http://{proxy}");
        for k in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
            "npm_config_proxy",
            "npm_config_https_proxy",
            "YARN_HTTP_PROXY",
            "YARN_HTTPS_PROXY",
        ] {
            set(k, &url);
        }
        // Mirrors are served by the proxy itself: reached directly, not through it.
        let host = proxy.ip().to_string();
        set("NO_PROXY", &host);
        set("no_proxy", &host);
    }
    env
}

/// `$CARGO_HOME/config.toml` for a cargo mirror: crates.io replaced by the mirror (a sparse or
/// git registry URL as the operator gave it; cargo reaches it through the egress proxy).
pub(crate) fn cargo_config(mirror: &str) -> String {
    let registry = if mirror.starts_with("sparse+") || mirror.starts_with("git+") {
        mirror.to_owned()
    } else {
        format!("sparse+{}", mirror.trim_end_matches('/').to_owned() + "/")
    };
    format!(
        "# Written by deploy-mcp: crates.io through the operator's mirror.\n\
         [source.crates-io]\nreplace-with = \"deploy-mcp-mirror\"\n\n\
         [source.deploy-mcp-mirror]\nregistry = {}\n",
        toml_string(&registry)
    )
}

/// Yarn 1 downloads every package from the `resolved` URL its lockfile recorded, whatever
/// registry it is told: with an npm mirror, the build's copy of `yarn.lock` points at the mirror
/// instead of the public registry (the integrity hashes stay, so the packages are still checked).
pub(crate) fn yarn_lock_for_mirror(lock: &str, mirror: &str) -> String {
    let mirror = format!("{}/", mirror.trim_end_matches('/'));
    lock.replace("https://registry.yarnpkg.com/", &mirror).replace("https://registry.npmjs.org/", &mirror)
}

fn toml_string(s: &str) -> String {
    let escaped: String = s
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => vec![],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Provider;

    fn python_plan() -> Plan {
        let mut plan = Plan {
            provider: Provider::Python,
            toolchains: vec![],
            tools: vec![],
            package_manager: Some("pip".into()),
            install: Some("python3 -m venv .venv && pip install -r requirements.txt".into()),
            build: None,
            prune: None,
            start: Some("gunicorn app:app".into()),
            static_root: None,
            env: BTreeMap::new(),
            path: vec!["/app/.venv/bin".into()],
            deps: None,
        };
        plan.env.insert("VIRTUAL_ENV".into(), "/app/.venv".into());
        plan
    }

    fn node() -> ToolchainEnv {
        ToolchainEnv { path: vec!["/opt/dmcp/node/bin".into()], env: vec![] }
    }

    fn get<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn given_a_plan_and_toolchains_when_run_env_then_path_puts_the_app_first_then_toolchains_then_system() {
        let env = run_env(&python_plan(), &[node()]);
        assert_eq!(get(&env, "PATH"), Some("/app/.venv/bin:/opt/dmcp/node/bin:/usr/local/bin:/usr/bin:/bin"));
        assert_eq!(get(&env, "VIRTUAL_ENV"), Some("/app/.venv"));
        assert_eq!(get(&env, "HTTPS_PROXY"), None, "apps get no build proxy");
    }

    #[test]
    fn given_a_proxy_and_mirrors_when_step_env_then_every_package_manager_is_pointed_at_them() {
        let mirrors: BTreeMap<String, String> = [
            ("pypi".to_owned(), "http://10.201.0.1:4000/mirror/pypi/".to_owned()),
            ("npm".to_owned(), "http://10.201.0.1:4000/mirror/npm/".to_owned()),
            ("go".to_owned(), "http://10.201.0.1:4000/mirror/go/".to_owned()),
        ]
        .into();
        let tools = vec!["/cache/tools/uv-0.9.0/bin".to_owned()];
        let cx = StepContext {
            proxy: Some("10.201.0.1:4000".parse().unwrap()),
            mirrors: &mirrors,
            tool_bins: &tools,
            cargo_target: "/cache/cargo-target/svc1".into(),
            ca_bundle: true,
        };
        let env = step_env(&python_plan(), &[node()], &cx);
        assert_eq!(get(&env, "HTTPS_PROXY"), Some("http://10.201.0.1:4000"));
        assert_eq!(get(&env, "NO_PROXY"), Some("10.201.0.1"));
        assert_eq!(get(&env, "PIP_INDEX_URL"), Some("http://10.201.0.1:4000/mirror/pypi/"));
        assert_eq!(get(&env, "PIP_TRUSTED_HOST"), Some("10.201.0.1"));
        assert_eq!(get(&env, "npm_config_registry"), Some("http://10.201.0.1:4000/mirror/npm/"));
        assert_eq!(get(&env, "GOPROXY"), Some("http://10.201.0.1:4000/mirror/go/"));
        assert_eq!(get(&env, "PIP_CACHE_DIR"), Some("/cache/pip"));
        assert_eq!(get(&env, "CARGO_TARGET_DIR"), Some("/cache/cargo-target/svc1"));
        assert_eq!(get(&env, "SSL_CERT_FILE"), Some(CA_BUNDLE));
        assert_eq!(
            get(&env, "PATH"),
            Some("/app/.venv/bin:/cache/tools/uv-0.9.0/bin:/opt/dmcp/node/bin:/usr/local/bin:/usr/bin:/bin")
        );
    }

    #[test]
    fn given_no_mirrors_when_step_env_then_the_public_registries_stay_and_only_the_proxy_is_set() {
        let mirrors = BTreeMap::new();
        let cx = StepContext {
            proxy: Some("10.201.0.5:4000".parse().unwrap()),
            mirrors: &mirrors,
            tool_bins: &[],
            cargo_target: "/cache/cargo-target/x".into(),
            ca_bundle: false,
        };
        let env = step_env(&python_plan(), &[], &cx);
        assert_eq!(get(&env, "PIP_INDEX_URL"), None);
        assert_eq!(get(&env, "GOPROXY"), None);
        assert_eq!(get(&env, "SSL_CERT_FILE"), None);
        assert_eq!(get(&env, "http_proxy"), Some("http://10.201.0.5:4000"));
    }

    #[test]
    fn given_the_plan_sets_a_variable_the_platform_sets_when_step_env_then_the_plan_wins() {
        let mut plan = python_plan();
        plan.env.insert("PIP_NO_INPUT".into(), "0".into());
        let mirrors = BTreeMap::new();
        let cx =
            StepContext { proxy: None, mirrors: &mirrors, tool_bins: &[], cargo_target: "/t".into(), ca_bundle: false };
        assert_eq!(get(&step_env(&plan, &[], &cx), "PIP_NO_INPUT"), Some("0"));
    }

    #[test]
    fn given_an_npm_mirror_when_a_yarn_lock_is_prepared_then_resolved_urls_point_at_it_and_hashes_stay() {
        let lock = "express@^5:\n  resolved \"https://registry.yarnpkg.com/express/-/express-5.1.0.tgz#abc\"\n  \
                    integrity sha512-xyz\nx@1:\n  resolved \"https://registry.npmjs.org/x/-/x-1.0.0.tgz\"\n";
        let out = yarn_lock_for_mirror(lock, "http://127.0.0.1:14873");
        assert!(out.contains("resolved \"http://127.0.0.1:14873/express/-/express-5.1.0.tgz#abc\""), "{out}");
        assert!(out.contains("resolved \"http://127.0.0.1:14873/x/-/x-1.0.0.tgz\""), "{out}");
        assert!(out.contains("integrity sha512-xyz"), "{out}");
    }

    #[test]
    fn given_a_cargo_mirror_when_configured_then_crates_io_is_replaced_by_a_sparse_registry() {
        let config = cargo_config("http://127.0.0.1:9000/index");
        assert!(config.contains("replace-with = \"deploy-mcp-mirror\""), "{config}");
        assert!(config.contains("registry = \"sparse+http://127.0.0.1:9000/index/\""), "{config}");
        assert!(cargo_config("sparse+https://m.example/\"x").contains("registry = \"sparse+https://m.example/\\\"x\""));
    }
}
