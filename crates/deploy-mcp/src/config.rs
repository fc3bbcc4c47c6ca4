//! Configuration, read once from flags and `DEPLOY_MCP_*` variables into typed values.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

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
    /// Where the platform keeps its files (bare git repositories under `git/`).
    #[arg(long, env = "DEPLOY_MCP_DATA_DIR", default_value = ".dev/data", global = true)]
    pub data_dir: std::path::PathBuf,
    /// The git binary (2.x with `http-backend`).
    #[arg(long, env = "DEPLOY_MCP_GIT", default_value = "git", global = true)]
    pub git_bin: std::path::PathBuf,
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

    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen)).trim_end_matches('/').to_owned()
    }

    /// How stale a verified key's revocation check may get: revocation takes effect within it
    /// plus the projection delay.
    pub fn key_recheck(&self) -> Duration {
        Duration::from_millis(500)
    }
}
