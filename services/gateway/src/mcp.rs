//! The MCP server: tools an agent calls. A tool is registered only once its capability works.

use std::sync::Arc;

use chrono::Utc;
use events::UserId;
use rmcp::handler::server::common::Extension;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::ProgressNotificationParam;
use rmcp::model::{CallToolResponse, CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{Json, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Principal;
use crate::github_app::{self, GithubConfig};
use crate::repos::{self, RepoError};
use crate::resources;
use crate::services::{self, DeploymentView, LogTail, ServiceError, ServiceSummary};
use events::LogKind;

const INSTRUCTIONS: &str = "Deploy MCP ships software for you: git hosting, builds, running apps at \
https://<name>.<base-domain>, databases and custom domains, all through these tools. \
Start with `whoami` to see your account and limits. Refer to everything by name; ids are never needed.";

/// One MCP server per request (the transport is stateless); it only holds shared state.
#[derive(Clone)]
pub struct McpServer {
    state: AppState,
    tool_router: ToolRouter<Self>,
}

/// A tool failure an agent can act on: a stable code, what went wrong, and what to do next.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ToolError {
    pub error: &'static str,
    pub message: String,
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        let value = serde_json::to_value(&self).unwrap_or_default();
        Ok(CallToolResult::structured_error(value).into())
    }
}

impl ToolError {
    fn with_message(mut self, message: String) -> Self {
        self.message = message;
        self
    }

    fn unauthenticated() -> Self {
        Self {
            error: "unauthenticated",
            message: "this request carried no verified API key; reconnect with `Authorization: Bearer dk_live_…`"
                .into(),
        }
    }
}

/// The account behind the API key of this request.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WhoAmI {
    /// The account's id (`usr_…`).
    pub user_id: String,
    pub email: String,
    /// Public prefix of the API key in use (the key itself is never shown again).
    pub api_key_prefix: String,
    /// What this account may use.
    pub limits: LimitsView,
    /// The account's place on the platform's git server: its repositories are
    /// `<git_namespace><name>.git` (push with a token from `get_git_token`).
    pub git_namespace: String,
    /// The GitHub App installation linked with `connect_github`, if any.
    pub github: Option<GithubLinkView>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GithubLinkView {
    pub installation_id: u64,
    /// The GitHub user or organization where `github.com` repos are created.
    pub account: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LimitsView {
    pub max_services: u32,
    pub max_repos: u32,
    pub max_resources: u32,
    pub max_api_keys: u32,
    /// Memory one service may ask for, in MiB.
    pub max_memory_mb: u32,
    /// CPU one service may ask for, in thousandths of a core.
    pub max_cpu_millis: u32,
}

fn zone_error(e: crate::zones::ZoneError) -> ToolError {
    use crate::zones::ZoneError as Z;
    let error = match &e {
        Z::Invalid(_) => "invalid_argument",
        Z::Taken(_) => "name_taken",
        Z::NotFound(_) => "not_found",
        Z::Unavailable(_) => "unavailable",
    };
    ToolError { error, message: e.to_string() }
}

fn kind_text(kind: events::ResourceKind) -> String {
    match kind {
        events::ResourceKind::Sqlite => "sqlite".into(),
        events::ResourceKind::Postgres => "postgres".into(),
    }
}

fn unavailable(e: impl std::fmt::Display) -> ToolError {
    ToolError::from(ServiceError::Unavailable(e.to_string()))
}

fn principal(parts: &http::request::Parts) -> Result<Arc<Principal>, ToolError> {
    parts.extensions.get::<Arc<Principal>>().cloned().ok_or_else(ToolError::unauthenticated)
}

fn user_id(p: &Principal) -> Result<UserId, ToolError> {
    p.user_id.parse().map_err(|_| ToolError::unauthenticated())
}

impl From<RepoError> for ToolError {
    fn from(e: RepoError) -> Self {
        let error = match &e {
            RepoError::BadName(_) => "invalid_name",
            RepoError::NotFound(_) => "not_found",
            RepoError::Limit(_) => "limit_reached",
            RepoError::GithubUnavailable => "github_not_configured",
            RepoError::Invalid(_) => "invalid_argument",
            RepoError::Unavailable(_) => "unavailable",
        };
        Self { error, message: e.to_string() }
    }
}

/// Where a repository lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum HostParam {
    /// The platform's own git server (the default).
    #[default]
    #[serde(rename = "internal")]
    Internal,
    /// A repository on GitHub, through the platform's GitHub App.
    #[serde(rename = "github.com")]
    Github,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateRepoParams {
    /// 1-64 characters: lowercase letters, digits, `-` and `_`, starting with a letter or digit.
    pub name: String,
    /// `internal` (default) or `github.com`.
    #[serde(default)]
    pub host: Option<HostParam>,
    /// A one-line description (at most 500 characters).
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GitTokenParams {
    /// The repository's name, as given to create_repo.
    pub name: String,
    /// `internal` (default) or `github.com`.
    #[serde(default)]
    pub host: Option<HostParam>,
    /// How long the token lives, in minutes (1-1440, default 60).
    #[serde(default)]
    pub ttl_minutes: Option<u32>,
}

/// A repository.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RepoView {
    pub name: String,
    pub host: HostParam,
    /// HTTPS clone URL (authenticate with a token from get_git_token).
    pub clone_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// False when the repository already existed (create_repo is safe to retry).
    pub created: bool,
    /// What to do next.
    pub next_step: String,
}

/// A temporary git token and the exact commands to push with it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GitTokenView {
    pub repo: String,
    /// The token (shown once): use it as the HTTP password, with any user name.
    pub token: String,
    pub expires_at: String,
    pub clone_url: String,
    /// The clone URL with the token embedded, for `git remote add`.
    pub authenticated_url: String,
    /// Run these in your working copy to push (the default branch is `main`).
    pub commands: Vec<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RepoSummary {
    pub name: String,
    pub host: String,
    pub clone_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: String,
}

/// How to connect GitHub.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ConnectGithubView {
    /// Open in a browser to install the platform's GitHub App.
    pub install_url: String,
    pub expires_at: String,
    pub next_step: String,
}

/// Your repositories, by name.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RepoList {
    pub repos: Vec<RepoSummary>,
    /// How many repositories you have in all.
    pub total: i64,
    /// True when only the first `repos.len()` are listed.
    pub truncated: bool,
}

/// The most repositories one list_repos answer carries (keeps it within ~2k tokens).
const LIST_LIMIT: i64 = 20;

impl From<ServiceError> for ToolError {
    fn from(e: ServiceError) -> Self {
        let error = match &e {
            ServiceError::Invalid(_) => "invalid_argument",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::Taken(_) => "name_taken",
            ServiceError::Limit(_) => "limit_reached",
            ServiceError::Repo(r) => return ToolError::from(r.clone()),
            ServiceError::Unavailable(_) => "unavailable",
        };
        Self { error, message: e.to_string() }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateServiceParams {
    /// The repository to deploy (a name from create_repo).
    pub repo: String,
    /// Where the repository lives: `internal` (default) or `github.com`.
    #[serde(default)]
    pub host: Option<HostParam>,
    /// The branch to deploy; every push to it redeploys (default `main`).
    #[serde(default)]
    pub branch: Option<String>,
    /// The service's name: 1-63 lowercase letters, digits, `-`. It becomes the URL
    /// `<name>.<base-domain>` (or `<name>-<project>.<base-domain>` outside the default project).
    pub name: String,
    /// A project to group services (default `default`).
    #[serde(default)]
    pub project: Option<String>,
    /// `railpack` (default: detect Node, Python, Go, Rust, static sites, Procfile), `static`, or
    /// `dockerfile`.
    #[serde(default)]
    pub build_pack: Option<events::BuildPack>,
    /// The port the app listens on; the app also gets it as `PORT` (default 8080).
    #[serde(default)]
    pub port: Option<u32>,
    /// Environment variables (stored encrypted; shown only with get_service include_env).
    #[serde(default)]
    pub env_vars: Option<std::collections::BTreeMap<String, String>>,
    /// Memory limit in MiB (default 512).
    #[serde(default)]
    pub memory: Option<u32>,
    /// CPU limit in thousandths of a core (default 1000 = one core).
    #[serde(default)]
    pub cpu: Option<u32>,
    /// Replaces the detected install step (e.g. `npm ci`).
    #[serde(default)]
    pub install_command: Option<String>,
    /// Replaces the detected build step (e.g. `npm run build`).
    #[serde(default)]
    pub build_command: Option<String>,
    /// Replaces the detected start command (e.g. `python3 app.py`); the app must listen on $PORT.
    #[serde(default)]
    pub start_command: Option<String>,
    /// Wait until the first deployment is live or failed (at most 120 s) instead of returning at
    /// once; with a progress token, each phase (queued, building, starting, healthy, live) is
    /// reported as a progress notification meanwhile.
    #[serde(default)]
    pub wait: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ServiceParams {
    /// The service's name.
    pub name: String,
    /// Its project (default `default`).
    #[serde(default)]
    pub project: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RedeployParams {
    /// The service's name.
    pub name: String,
    /// Its project (default `default`).
    #[serde(default)]
    pub project: Option<String>,
    /// Wait until the deployment is live or failed (at most 120 s), reporting its phases as
    /// progress notifications when the request carries a progress token.
    #[serde(default)]
    pub wait: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetServiceParams {
    /// The service's name.
    pub name: String,
    /// Its project (default `default`).
    #[serde(default)]
    pub project: Option<String>,
    /// Show environment variable values (default false: names only).
    #[serde(default)]
    pub include_env: Option<bool>,
    /// Lines of the latest deployment's build log (default 20, max 200).
    #[serde(default)]
    pub deploy_log_lines: Option<u32>,
    /// Lines of the running app's output (default 20, max 200).
    #[serde(default)]
    pub runtime_log_lines: Option<u32>,
}

/// A deployment just requested.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RequestedDeployment {
    pub deployment_id: String,
    pub commit: String,
    /// Always `queued` here: the build runs in the background.
    pub status: String,
}

/// The service created (or found: `created` false).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CreatedService {
    pub name: String,
    pub project: String,
    /// Where the app answers once live.
    pub url: String,
    pub created: bool,
    /// `deploying`, or `waiting_for_push` when the branch has no commit yet.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<RequestedDeployment>,
    pub next_step: String,
}

/// A service in detail, with bounded log tails.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ServiceDetail {
    pub name: String,
    pub project: String,
    pub url: String,
    /// pending (no commit yet), deploying, live, crashed or failed.
    pub status: String,
    pub repo: String,
    pub branch: String,
    pub build_pack: String,
    pub port: u16,
    pub memory_mb: i32,
    pub cpu_millis: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_command: Option<String>,
    /// The deployment serving the URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<DeploymentView>,
    /// The latest deployments, newest first (at most 5).
    pub deployments: Vec<DeploymentView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_log: Option<LogTail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_log: Option<LogTail>,
    /// Variable names, with values only when include_env was true.
    pub env: std::collections::BTreeMap<String, String>,
}

/// Your services.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ServiceList {
    pub services: Vec<ServiceSummary>,
    pub total: i64,
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Redeployed {
    pub name: String,
    pub url: String,
    pub deployment: RequestedDeployment,
    pub next_step: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Deleted {
    pub name: String,
    /// False when there was no such service (deleting twice is fine).
    pub deleted: bool,
    pub message: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateResourceParams {
    /// 1-63 lowercase letters, digits and `-`; services reference it as `${{ resources.<name>.url }}`.
    pub name: String,
    /// `sqlite` (default) or `postgres`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// `small` (default), `medium` or `large`.
    #[serde(default)]
    pub size: Option<String>,
    /// Where the provider should place it, when it has regions.
    #[serde(default)]
    pub region: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ResourceParams {
    /// The resource's name.
    pub name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeleteResourceParams {
    /// The resource's name.
    pub name: String,
    /// Delete even though services reference it (they will fail to deploy until changed).
    #[serde(default)]
    pub force: Option<bool>,
}

/// A resource in a list (no credentials).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ResourceSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub size: String,
    /// provisioning, ready or failed.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ResourceList {
    pub resources: Vec<ResourceSummary>,
    pub total: i64,
    pub truncated: bool,
}

/// A resource created (or found: `created` false).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CreatedResourceView {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub size: String,
    pub status: String,
    pub created: bool,
    pub next_step: String,
}

/// A resource with its connection details.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ResourceDetail {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub size: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// provisioning, ready or failed.
    pub status: String,
    /// Why provisioning failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The connection URL (a secret: it carries the password), once ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The auth token (libSQL), when the provider gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Services whose variables reference it.
    pub used_by: Vec<String>,
    /// How to use it from a service.
    pub usage: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AddDomainParams {
    /// The service's name.
    pub name: String,
    /// Its project (default `default`).
    #[serde(default)]
    pub project: Option<String>,
    /// A name inside one of your active zones, e.g. `api.apps.example.com`.
    pub domain: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RemoveDomainParams {
    /// The custom domain to detach, e.g. `api.apps.example.com`.
    pub domain: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DomainAdded {
    pub domain: String,
    pub service: String,
    /// Where the service answers on this domain (HTTPS with the zone's certificate).
    pub url: String,
    /// False when it was already attached.
    pub added: bool,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Delegations {
    pub zones: Vec<crate::zones::ZoneView>,
    pub next_step: String,
}

const DEFAULT_LOG_LINES: u32 = 20;
const MAX_LOG_LINES: u32 = 200;
const HIDDEN: &str = "(hidden: pass include_env true)";

#[tool_router]
impl McpServer {
    pub fn new(state: AppState) -> Self {
        Self { state, tool_router: Self::tool_router() }
    }

    /// Who am I? Returns the account behind this connection's API key: its id, e-mail, the
    /// key prefix in use and the account's limits (services, repos, databases, keys, memory and
    /// CPU per service). Call it first to check the connection works.
    #[tool(
        name = "whoami",
        annotations(
            title = "Who am I",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn whoami(&self, Extension(parts): Extension<http::request::Parts>) -> Result<Json<WhoAmI>, ToolError> {
        let p = principal(&parts)?;
        let l = &p.limits;
        Ok(Json(WhoAmI {
            user_id: p.user_id.clone(),
            email: p.email.clone(),
            api_key_prefix: p.key_prefix.clone(),
            limits: LimitsView {
                max_services: l.max_services,
                max_repos: l.max_repos,
                max_resources: l.max_resources,
                max_api_keys: l.max_api_keys,
                max_memory_mb: l.max_memory_mb,
                max_cpu_millis: l.max_cpu_millis,
            },
            git_namespace: format!("{}/git/{}/", self.state.public_url, p.user_id),
            github: p.github.clone().map(|(installation_id, account)| GithubLinkView { installation_id, account }),
        }))
    }

    /// Create a git repository to push code to. Hosted on the platform's own git server
    /// (host `internal`, the default). Safe to retry: an existing repository of yours with the
    /// same name is returned with `created: false`. Next, call `get_git_token` for push
    /// credentials. Names: 1-64 lowercase letters, digits, `-`, `_`.
    #[tool(
        name = "create_repo",
        annotations(
            title = "Create a git repository",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn create_repo(
        &self,
        Parameters(p): Parameters<CreateRepoParams>,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<RepoView>, ToolError> {
        let me = principal(&parts)?;
        let owner = user_id(&me)?;
        let host = p.host.unwrap_or_default();
        let name = repos::validate_name(&p.name)?.to_owned();
        let description = p.description.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty());
        if description.as_ref().is_some_and(|d| d.chars().count() > 500) {
            return Err(RepoError::Invalid("the description is longer than 500 characters: shorten it".into()).into());
        }
        if host == HostParam::Github {
            return self.create_github_repo(&me, owner, &name, description).await.map(Json);
        }
        let (_, total) =
            self.state.store.repos_of(&me.user_id, 0).await.map_err(|e| RepoError::Unavailable(e.to_string()))?;
        if total >= i64::from(me.limits.max_repos) && repos::find(&self.state.commands, owner, &name).await?.is_none() {
            return Err(RepoError::Limit(format!(
                "you have {total} repositories, the limit of your account: delete one first"
            ))
            .into());
        }
        let (found, created) = repos::create(&self.state.commands, owner, &name, description.clone(), None).await?;
        self.state.git.ensure_bare(found.repo_id).await.map_err(|e| RepoError::Unavailable(e.to_string()))?;
        Ok(Json(RepoView {
            clone_url: self.clone_url(&me.user_id, &found.name),
            name: found.name,
            host,
            description,
            created,
            next_step: "call get_git_token with this name to get a token and the exact git commands to push".into(),
        }))
    }

    /// Get a temporary HTTPS token for one of your repositories (default: valid 60 minutes),
    /// with the exact `git remote add` and `git push` commands to use. The token works for
    /// clone, fetch and push of that repository only. Each push to a branch is picked up by the
    /// platform (services built from that branch redeploy).
    #[tool(
        name = "get_git_token",
        annotations(
            title = "Get a git token",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    pub async fn get_git_token(
        &self,
        Parameters(p): Parameters<GitTokenParams>,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<GitTokenView>, ToolError> {
        let me = principal(&parts)?;
        let owner = user_id(&me)?;
        let name = repos::validate_name(&p.name)?;
        let ttl = p.ttl_minutes.unwrap_or(60);
        if !(1..=1440).contains(&ttl) {
            return Err(RepoError::Invalid(format!("ttl_minutes must be 1-1440, got {ttl}")).into());
        }
        let found = repos::find(&self.state.commands, owner, name)
            .await?
            .ok_or_else(|| RepoError::NotFound(name.to_owned()))?;
        if let Some(gh) = &found.github {
            return self.github_token(name, gh).await.map(Json);
        }
        if p.host == Some(HostParam::Github) {
            return Err(RepoError::Invalid(format!(
                "`{name}` is on the platform's git server: omit host or pass `internal`"
            ))
            .into());
        }
        let issued =
            repos::issue_token(&self.state.commands, owner, &found, chrono::Duration::minutes(ttl.into()), Utc::now())
                .await?;
        let clone_url = self.clone_url(&me.user_id, name);
        let authenticated_url = match clone_url.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://git:{}@{rest}", issued.token),
            None => clone_url.clone(),
        };
        Ok(Json(GitTokenView {
            repo: name.to_owned(),
            commands: vec![
                format!("git remote add deploy {authenticated_url}"),
                "git push deploy HEAD:main".to_owned(),
            ],
            token: issued.token,
            expires_at: issued.expires_at.to_rfc3339(),
            clone_url,
            authenticated_url,
        }))
    }

    /// Connect your GitHub account or organization: returns the link to install the platform's
    /// GitHub App (valid one hour). A person with access on GitHub opens it and approves; then
    /// `whoami` shows `github`, and `create_repo` with host `github.com` creates repositories
    /// there (pushes to them redeploy like pushes to the platform's own git server).
    #[tool(
        name = "connect_github",
        annotations(
            title = "Connect GitHub",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    pub async fn connect_github(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<ConnectGithubView>, ToolError> {
        let me = principal(&parts)?;
        let owner = user_id(&me)?;
        let config = self.github()?;
        let expires = Utc::now() + chrono::Duration::hours(1);
        let state = github_app::sign_state(&config.state_secret, owner, expires.timestamp());
        Ok(Json(ConnectGithubView {
            install_url: config.app.install_url(&state),
            expires_at: expires.to_rfc3339(),
            next_step: "have a person open install_url and install the App; then call whoami to see the link".into(),
        }))
    }

    /// Deploy a repository's branch as a web service. Returns at once with the URL and the queued
    /// deployment; the build and start run in the background (usually a few seconds): call
    /// `get_service` to see the status, the build log and why a deployment failed (or pass
    /// `wait: true` to wait for live or failed, with progress notifications). Every push to
    /// the branch redeploys. The app must listen on the `PORT` environment variable (default
    /// 8080). Safe to retry: an existing service of this name is returned with `created: false`.
    #[tool(
        name = "create_service",
        annotations(
            title = "Create a service",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn create_service(
        &self,
        Parameters(p): Parameters<CreateServiceParams>,
        Extension(parts): Extension<http::request::Parts>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<CreatedService>, ToolError> {
        let wait = p.wait == Some(true);
        let me = principal(&parts)?;
        let owner = user_id(&me)?;
        let new = services::NewService::validate(
            p.repo,
            p.project,
            p.name,
            p.branch,
            p.build_pack,
            p.port,
            p.env_vars,
            p.memory,
            p.cpu,
            [p.install_command, p.build_command, p.start_command],
            &me.limits,
        )?;
        let (_, total) = self.state.store.services_of(&me.user_id, 0).await.map_err(unavailable)?;
        if total >= i64::from(me.limits.max_services)
            && services::find(&self.state, owner, &new.project, &new.name).await?.is_none()
        {
            return Err(ServiceError::Limit(format!(
                "you have {total} services, the limit of your account: delete one first"
            ))
            .into());
        }
        let created = services::create(&self.state, owner, new).await?;
        let spec = created.service.spec.as_ref().expect("a created service has a spec");
        let mut deployment = created.first_deployment.as_ref().map(|(id, sha)| RequestedDeployment {
            deployment_id: id.to_string(),
            commit: sha.chars().take(12).collect(),
            status: "queued".into(),
        });
        let (mut status, mut next_step) = match (&deployment, created.created) {
            (_, false) => ("exists".to_owned(), "the service already exists: call get_service for its status".into()),
            (Some(_), true) => (
                "deploying".to_owned(),
                "call get_service with this name to follow the build; the URL answers once the status is live".into(),
            ),
            (None, true) => (
                "waiting_for_push".to_owned(),
                format!("branch `{}` has no commit yet: push to it and the service deploys by itself", spec.branch),
            ),
        };
        if let (true, Some(d)) = (wait, &created.first_deployment) {
            let outcome = self.follow(&ctx, spec.service_id, d.0).await;
            (status, next_step) = outcome.status_and_next_step();
            if let Some(dep) = deployment.as_mut() {
                dep.status = status.clone();
            }
        }
        Ok(Json(CreatedService {
            url: self.state.apps.url(&spec.hostname),
            name: spec.name.clone(),
            project: spec.project.clone(),
            created: created.created,
            status,
            deployment,
            next_step,
        }))
    }

    /// List your services with their URL and status (at most 20; `total` says how many).
    #[tool(
        name = "list_services",
        annotations(
            title = "List services",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn list_services(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<ServiceList>, ToolError> {
        let me = principal(&parts)?;
        let (rows, total) = self.state.store.services_of(&me.user_id, LIST_LIMIT).await.map_err(unavailable)?;
        let services: Vec<_> = rows.iter().map(|r| services::summary(&self.state, r)).collect();
        Ok(Json(ServiceList { truncated: (services.len() as i64) < total, services, total }))
    }

    /// A service in detail: status, URL, the live deployment, the latest deployments with their
    /// outcome (a failure says why, typed, with a hint), the tail of the latest build log and of
    /// the app's output. Environment values are hidden unless `include_env` is true.
    #[tool(
        name = "get_service",
        annotations(
            title = "Get a service",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn get_service(
        &self,
        Parameters(p): Parameters<GetServiceParams>,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<ServiceDetail>, ToolError> {
        let me = principal(&parts)?;
        let owner = user_id(&me)?;
        let project = p.project.unwrap_or_else(|| services::DEFAULT_PROJECT.to_owned());
        let row = self.service_row(&me.user_id, owner, &project, &p.name).await?;
        let deployments = self.state.store.deployments_of(&row.service_id, 5).await.map_err(unavailable)?;
        // Read again after the deployments, so the status is never older than they are.
        let row =
            self.state.store.service_named(&me.user_id, &project, &p.name).await.map_err(unavailable)?.unwrap_or(row);
        let live_row = match &row.live_deployment {
            Some(id) => match deployments.iter().find(|d| &d.deployment_id == id) {
                Some(d) => Some(d.clone()),
                None => self.state.store.deployment(id).await.map_err(unavailable)?,
            },
            None => None,
        };
        let lines = |n: Option<u32>| n.unwrap_or(DEFAULT_LOG_LINES).min(MAX_LOG_LINES) as usize;
        let build_log = match deployments.first() {
            Some(d) => {
                services::log_tail(&self.state, &d.deployment_id, LogKind::Build, lines(p.deploy_log_lines)).await
            }
            None => None,
        };
        let run_dep = live_row.as_ref().or(deployments.first()).map(|d| d.deployment_id.clone());
        let runtime_log = match run_dep {
            Some(d) => services::log_tail(&self.state, &d, LogKind::Run, lines(p.runtime_log_lines)).await,
            None => None,
        };
        let sealed: std::collections::BTreeMap<String, events::Sealed> =
            serde_json::from_value(row.env.clone()).unwrap_or_default();
        let mut env = std::collections::BTreeMap::new();
        for (k, v) in sealed {
            let shown = if p.include_env == Some(true) {
                self.state
                    .apps
                    .keyring
                    .open(&v, &vault::env_context(&row.service_id, &k))
                    .unwrap_or_else(|e| format!("(cannot open: {e})"))
            } else {
                HIDDEN.to_owned()
            };
            env.insert(k, shown);
        }
        let repo_id: events::RepoId = row.repo_id.parse().map_err(|e: String| ServiceError::Unavailable(e))?;
        let repo = repos::load(&self.state.commands, repo_id).await?.map(|r| r.name).unwrap_or_default();
        Ok(Json(ServiceDetail {
            url: self.state.apps.url(&row.hostname),
            name: row.name,
            project: row.project,
            status: row.status,
            repo,
            branch: row.branch,
            build_pack: row.build_pack,
            port: row.port.map(|p| p as u16).unwrap_or(8080),
            memory_mb: row.memory_mb,
            cpu_millis: row.cpu_millis,
            install_command: row.install_command,
            build_command: row.build_command,
            start_command: row.start_command,
            live: live_row.as_ref().map(DeploymentView::from),
            deployments: deployments.iter().map(DeploymentView::from).collect(),
            build_log,
            runtime_log,
            env,
        }))
    }

    /// Deploy the branch's latest commit again (a new build of it is a cache hit when nothing
    /// changed; the app restarts with zero downtime). Returns at once; follow with get_service.
    #[tool(
        name = "redeploy_service",
        annotations(
            title = "Redeploy a service",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    pub async fn redeploy_service(
        &self,
        Parameters(p): Parameters<RedeployParams>,
        Extension(parts): Extension<http::request::Parts>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<Redeployed>, ToolError> {
        let me = principal(&parts)?;
        let owner = user_id(&me)?;
        let project = p.project.unwrap_or_else(|| services::DEFAULT_PROJECT.to_owned());
        let (service, id, sha) = services::redeploy(&self.state, owner, &project, &p.name).await?;
        let spec = service.spec.as_ref().expect("found services have a spec");
        let (mut status, mut next_step) = ("queued".to_owned(), "call get_service to follow the deployment".to_owned());
        if p.wait == Some(true) {
            (status, next_step) = self.follow(&ctx, spec.service_id, id).await.status_and_next_step();
        }
        Ok(Json(Redeployed {
            name: spec.name.clone(),
            url: self.state.apps.url(&spec.hostname),
            deployment: RequestedDeployment {
                deployment_id: id.to_string(),
                commit: sha.chars().take(12).collect(),
                status,
            },
            next_step,
        }))
    }

    /// Delete a service: it stops, its URL answers 404, its name is free again and its build
    /// outputs are removed. Deleting a service that does not exist is not an error.
    #[tool(
        name = "delete_service",
        annotations(
            title = "Delete a service",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn delete_service(
        &self,
        Parameters(p): Parameters<ServiceParams>,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<Deleted>, ToolError> {
        let me = principal(&parts)?;
        let owner = user_id(&me)?;
        let project = p.project.unwrap_or_else(|| services::DEFAULT_PROJECT.to_owned());
        let deleted = services::delete(&self.state, owner, &project, &p.name).await?;
        let message = if deleted {
            "deleted: the app stops within seconds and its URL is free".to_owned()
        } else {
            format!("no service `{}` in project `{project}` (already deleted?)", p.name)
        };
        Ok(Json(Deleted { name: p.name, deleted, message }))
    }

    /// Create a database. `type` is `sqlite` (default) or `postgres`. Returns at once with status
    /// `provisioning`; it becomes `ready` (or `failed`, with the reason) within seconds: check with
    /// `get_resource`. Wire it into a service with env_vars such as
    /// `DATABASE_URL: "${{ resources.<name>.url }}"` (also token, user, password, host, port,
    /// database), resolved at each deployment. Safe to retry.
    #[tool(
        name = "create_resource",
        annotations(
            title = "Create a database",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    pub async fn create_resource(
        &self,
        Parameters(p): Parameters<CreateResourceParams>,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<CreatedResourceView>, ToolError> {
        let me = principal(&parts)?;
        let owner = user_id(&me)?;
        let new = resources::NewResource::validate(p.name, p.kind, p.size, p.region)?;
        let (_, total) = self.state.store.resources_of(&me.user_id, 0).await.map_err(unavailable)?;
        if total >= i64::from(me.limits.max_resources)
            && resources::find(&self.state, owner, &new.name).await.map_err(unavailable)?.is_none()
        {
            return Err(ServiceError::Limit(format!(
                "you have {total} resources, the limit of your account: delete one first"
            ))
            .into());
        }
        let created = resources::create(&self.state, owner, new).await?;
        let spec = created.resource.spec.as_ref().expect("a created resource has a spec");
        let status = match created.resource.status {
            domain::ResourceStatus::Ready => "ready",
            domain::ResourceStatus::Failed => "failed",
            _ => "provisioning",
        };
        Ok(Json(CreatedResourceView {
            name: spec.name.clone(),
            kind: kind_text(spec.kind),
            size: spec.size.clone(),
            status: status.into(),
            created: created.created,
            next_step: format!(
                "call get_resource for its URL once ready; reference it in create_service env_vars as \"${{{{ resources.{}.url }}}}\"",
                spec.name
            ),
        }))
    }

    /// List your resources (databases) with their type and status; no credentials (at most 20).
    #[tool(
        name = "list_resources",
        annotations(
            title = "List resources",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn list_resources(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<ResourceList>, ToolError> {
        let me = principal(&parts)?;
        let (rows, total) = self.state.store.resources_of(&me.user_id, LIST_LIMIT).await.map_err(unavailable)?;
        let resources: Vec<_> = rows
            .into_iter()
            .map(|r| ResourceSummary { name: r.name, kind: r.kind, size: r.size, status: r.status })
            .collect();
        Ok(Json(ResourceList { truncated: (resources.len() as i64) < total, resources, total }))
    }

    /// A resource with its connection URL and credentials (secrets: keep them out of logs and
    /// commits; prefer `${{ resources.<name>.url }}` in a service's env_vars), its status, and
    /// which services use it.
    #[tool(
        name = "get_resource",
        annotations(
            title = "Get a resource",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn get_resource(
        &self,
        Parameters(p): Parameters<ResourceParams>,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<ResourceDetail>, ToolError> {
        let me = principal(&parts)?;
        let owner = user_id(&me)?;
        let not_found = || {
            ToolError::from(ServiceError::NotFound(p.name.chars().take(80).collect())).with_message(format!(
                "no resource named `{}`: list_resources shows yours",
                p.name.chars().take(80).collect::<String>()
            ))
        };
        let mut row = None;
        for attempt in 0..40 {
            row = self.state.store.resource_named(&me.user_id, &p.name).await.map_err(unavailable)?;
            if row.is_some() {
                break;
            }
            if attempt == 0 && resources::find(&self.state, owner, &p.name).await.map_err(unavailable)?.is_none() {
                return Err(not_found());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let row = row.ok_or_else(not_found)?;
        let credentials: Option<::resources::Credentials> = match &row.credentials {
            Some(sealed) => {
                let sealed: events::Sealed = serde_json::from_value(sealed.clone()).map_err(unavailable)?;
                let clear = self
                    .state
                    .apps
                    .keyring
                    .open(&sealed, &vault::resource_context(&row.resource_id))
                    .map_err(unavailable)?;
                Some(serde_json::from_str(&clear).map_err(unavailable)?)
            }
            None => None,
        };
        let used_by = self.state.store.services_using(&me.user_id, &row.name).await.map_err(unavailable)?;
        let c = credentials.as_ref();
        let field = |f: fn(&::resources::Credentials) -> Option<String>| c.and_then(f);
        Ok(Json(ResourceDetail {
            usage: format!(
                "in create_service env_vars: {{\"DATABASE_URL\": \"${{{{ resources.{}.url }}}}\"}}",
                row.name
            ),
            name: row.name,
            kind: row.kind,
            size: row.size,
            region: row.region,
            status: row.status,
            failure: row.failure,
            url: c.map(|c| c.url.clone()),
            host: field(|c| c.host.clone()),
            port: c.and_then(|c| c.port),
            database: field(|c| c.database.clone()),
            user: field(|c| c.user.clone()),
            password: field(|c| c.password.clone()),
            token: field(|c| c.token.clone()),
            used_by,
        }))
    }

    /// Delete a resource and its data, for real. Refused while services reference it unless
    /// `force` is true. Deleting one that does not exist is not an error.
    #[tool(
        name = "delete_resource",
        annotations(
            title = "Delete a resource",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    pub async fn delete_resource(
        &self,
        Parameters(p): Parameters<DeleteResourceParams>,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<Deleted>, ToolError> {
        let me = principal(&parts)?;
        let owner = user_id(&me)?;
        let deleted = resources::delete(&self.state, owner, &p.name, p.force == Some(true)).await?;
        let message = if deleted {
            "deleted: its data is being removed and the name is free".to_owned()
        } else {
            format!("no resource `{}` (already deleted?)", p.name.chars().take(80).collect::<String>())
        };
        Ok(Json(Deleted { name: p.name, deleted, message }))
    }

    /// Your DNS zones delegated to the platform: each with its status (pending, verified, active,
    /// expired), the TXT record and name servers to publish, what is still missing, and expiry.
    /// Zones are delegated by a person on the /dns page (or `POST /api/zones`).
    #[tool(
        name = "list_delegations",
        annotations(
            title = "List delegated zones",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn list_delegations(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<Delegations>, ToolError> {
        let me = principal(&parts)?;
        let zones = crate::zones::list(&self.state, &me.user_id).await.map_err(zone_error)?;
        let next_step = if zones.iter().any(|z| z.status == "active") {
            "call add_custom_domain with a service and a name inside an active zone".into()
        } else {
            "have a person delegate a zone (the /dns page or POST /api/zones), publish its TXT and NS records, then wait for active".into()
        };
        Ok(Json(Delegations { zones, next_step }))
    }

    /// Attach a custom domain to one of your services: the domain must lie inside one of your
    /// active zones (see list_delegations). It answers over HTTPS with the zone's wildcard
    /// certificate within seconds. Safe to retry.
    #[tool(
        name = "add_custom_domain",
        annotations(
            title = "Add a custom domain",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn add_custom_domain(
        &self,
        Parameters(p): Parameters<AddDomainParams>,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<DomainAdded>, ToolError> {
        let me = principal(&parts)?;
        let owner = user_id(&me)?;
        let project = p.project.unwrap_or_else(|| services::DEFAULT_PROJECT.to_owned());
        let service = services::find(&self.state, owner, &project, &p.name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(p.name.chars().take(80).collect()))?;
        let spec = service.spec.as_ref().expect("found services have a spec");
        let (domain, added) =
            crate::zones::add_domain(&self.state, owner, spec.service_id, &p.domain).await.map_err(zone_error)?;
        Ok(Json(DomainAdded {
            url: crate::zones::https_url(&self.state.zones, &domain),
            domain,
            service: spec.name.clone(),
            added,
        }))
    }

    /// Detach a custom domain from its service: its DNS record and route are removed. Removing
    /// one that is not attached is not an error.
    #[tool(
        name = "remove_custom_domain",
        annotations(
            title = "Remove a custom domain",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn remove_custom_domain(
        &self,
        Parameters(p): Parameters<RemoveDomainParams>,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<Deleted>, ToolError> {
        let me = principal(&parts)?;
        let owner = user_id(&me)?;
        let deleted = crate::zones::remove_domain(&self.state, owner, &p.domain).await.map_err(zone_error)?;
        let message = if deleted {
            "removed: the name stops resolving and routing within seconds".into()
        } else {
            "that domain is not attached to any of your services".into()
        };
        Ok(Json(Deleted { name: p.domain, deleted, message }))
    }

    /// List your git repositories by name (at most 20; `total` says how many you have).
    #[tool(
        name = "list_repos",
        annotations(
            title = "List repositories",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn list_repos(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<RepoList>, ToolError> {
        let me = principal(&parts)?;
        let (rows, total) = self
            .state
            .store
            .repos_of(&me.user_id, LIST_LIMIT)
            .await
            .map_err(|e| RepoError::Unavailable(e.to_string()))?;
        let repos: Vec<RepoSummary> = rows
            .into_iter()
            .map(|r| RepoSummary {
                clone_url: self.clone_url(&me.user_id, &r.name),
                name: r.name,
                host: r.host,
                description: r.description,
                created_at: r.created_at.to_rfc3339(),
            })
            .collect();
        Ok(Json(RepoList { truncated: (repos.len() as i64) < total, repos, total }))
    }
}

/// Where a followed deployment ended up.
enum Followed {
    Live,
    Failed(String),
    StillRunning(&'static str),
}

impl Followed {
    fn status_and_next_step(self) -> (String, String) {
        match self {
            Self::Live => ("live".into(), "the URL answers now; get_service shows the logs".into()),
            Self::Failed(kind) => {
                (format!("failed: {kind}"), "call get_service for the reason, the log tail and a hint".into())
            }
            Self::StillRunning(phase) => {
                (phase.to_owned(), "still deploying after the wait: call get_service to follow it".into())
            }
        }
    }
}

/// The longest a tool waits for a deployment when asked to.
const FOLLOW_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

impl McpServer {
    /// Follows a deployment to live or failed (bounded), reporting each phase as a progress
    /// notification when the request carries a progress token. Reads the event store, so it sees
    /// each phase the moment it is committed.
    async fn follow(
        &self,
        ctx: &RequestContext<RoleServer>,
        service: events::ServiceId,
        id: events::DeploymentId,
    ) -> Followed {
        use domain::Status;
        const TOTAL: f64 = 5.0;
        let token = ctx.meta.get_progress_token();
        let mut reported = 0.0;
        let deadline = tokio::time::Instant::now() + FOLLOW_LIMIT;
        let mut phase;
        loop {
            let state: Option<domain::Service> = self.state.commands.load(&service.to_string()).await.ok();
            let d = state.as_ref().and_then(|s| s.deployments.get(&id));
            let (step, name, done) = match d.map(|d| d.status) {
                None | Some(Status::Queued) => (1.0, "queued", None),
                Some(Status::Building | Status::Built) => (2.0, "building", None),
                Some(Status::Starting) => (3.0, "starting", None),
                Some(Status::Live | Status::Crashed) => (5.0, "live", Some(Followed::Live)),
                Some(Status::Failed) => {
                    let kind = self.failure_kind(id).await;
                    (reported, "failed", Some(Followed::Failed(kind)))
                }
            };
            phase = name;
            if let Some(token) = &token {
                // Live implies the health check passed: report both phases.
                let steps: &[(f64, &str)] =
                    if step == 5.0 { &[(4.0, "healthy"), (5.0, "live")] } else { &[(step, name)] };
                for (n, message) in steps {
                    if *n > reported {
                        reported = *n;
                        let note =
                            ProgressNotificationParam::new(token.clone(), *n).with_total(TOTAL).with_message(*message);
                        let _ = ctx.peer.notify_progress(note).await;
                    }
                }
            }
            if let Some(done) = done {
                return done;
            }
            if tokio::time::Instant::now() >= deadline {
                return Followed::StillRunning(phase);
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                _ = ctx.ct.cancelled() => return Followed::StillRunning(phase),
            }
        }
    }

    /// The failure kind of a deployment, as the read model states it (e.g. `build_failed`).
    async fn failure_kind(&self, id: events::DeploymentId) -> String {
        for _ in 0..20 {
            if let Ok(Some(d)) = self.state.store.deployment(&id.to_string()).await
                && let Some(kind) = d.failure.as_ref().and_then(|f| f["kind"].as_str())
            {
                return kind.to_owned();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        "see get_service".into()
    }

    /// The service's read-model row. A service created a moment ago may not be projected yet:
    /// the command side says whether it exists, and the read is retried briefly.
    async fn service_row(
        &self,
        user: &str,
        owner: UserId,
        project: &str,
        name: &str,
    ) -> Result<store::rows::ServiceRow, ToolError> {
        let not_found = || ToolError::from(ServiceError::NotFound(name.chars().take(80).collect()));
        for attempt in 0..40 {
            if let Some(row) = self.state.store.service_named(user, project, name).await.map_err(unavailable)? {
                return Ok(row);
            }
            if attempt == 0 && services::find(&self.state, owner, project, name).await?.is_none() {
                return Err(not_found());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(ServiceError::Unavailable("the service's details are not readable yet".into()).into())
    }

    fn clone_url(&self, owner: &str, name: &str) -> String {
        format!("{}/git/{owner}/{name}.git", self.state.public_url)
    }

    fn github(&self) -> Result<&GithubConfig, RepoError> {
        self.state.github.config.as_ref().ok_or(RepoError::GithubUnavailable)
    }

    /// Creates (in an organization) or links (for a user account) the repository on GitHub.
    async fn create_github_repo(
        &self,
        me: &Principal,
        owner: UserId,
        name: &str,
        description: Option<String>,
    ) -> Result<RepoView, ToolError> {
        let config = self.github()?;
        if let Some(found) = repos::find(&self.state.commands, owner, name).await? {
            let Some(gh) = found.github else {
                return Err(RepoError::Invalid(format!(
                    "you already have `{name}` on the platform's git server: choose another name for the GitHub repo"
                ))
                .into());
            };
            return Ok(github_view(found.name, gh.clone_url, description, false));
        }
        // The link is read from the event store, not the (slightly older) cached principal.
        let account: domain::Account =
            self.state.commands.load(&me.user_id).await.map_err(|e| RepoError::Unavailable(e.to_string()))?;
        let Some((installation_id, _)) = account.github else {
            return Err(RepoError::Invalid(
                "GitHub is not connected to your account: call connect_github, have its link opened, then retry".into(),
            )
            .into());
        };
        let gh = config
            .app
            .create_or_link_repo(installation_id, name, description.as_deref())
            .await
            .map_err(github_error)?;
        if github_app::repo_for(&self.state, gh.id).await.map_err(RepoError::Unavailable)?.is_some() {
            return Err(RepoError::Invalid(format!("{} is already connected to a repo here", gh.full_name)).into());
        }
        let reference = events::GithubRepoRef {
            id: gh.id,
            full_name: gh.full_name.clone(),
            installation_id,
            clone_url: gh.clone_url.clone(),
        };
        let (found, created) =
            repos::create(&self.state.commands, owner, name, description.clone(), Some(reference)).await?;
        if !github_app::claim_repo(&self.state.commands, owner, gh.id, found.repo_id)
            .await
            .map_err(RepoError::Unavailable)?
        {
            return Err(RepoError::Invalid(format!("{} is already connected to a repo here", gh.full_name)).into());
        }
        Ok(github_view(found.name, gh.clone_url, description, created))
    }

    /// A fresh installation token (never stored) and the commands to push to GitHub with it.
    async fn github_token(&self, name: &str, gh: &events::GithubRepoRef) -> Result<GitTokenView, ToolError> {
        let config = self.github()?;
        let token = config.app.installation_token(gh.installation_id).await.map_err(github_error)?;
        let authenticated_url = github::authenticated_clone_url(&gh.clone_url, &token.token);
        Ok(GitTokenView {
            repo: name.to_owned(),
            commands: vec![
                format!("git remote add deploy {authenticated_url}"),
                "git push deploy HEAD:main".to_owned(),
            ],
            token: token.token,
            expires_at: token.expires_at.to_rfc3339(),
            clone_url: gh.clone_url.clone(),
            authenticated_url,
        })
    }
}

fn github_view(name: String, clone_url: String, description: Option<String>, created: bool) -> RepoView {
    RepoView {
        name,
        host: HostParam::Github,
        clone_url,
        description,
        created,
        next_step: "call get_git_token with this name and host github.com for a token and the git commands".into(),
    }
}

fn github_error(e: github::Error) -> ToolError {
    let message = e.to_string();
    match e {
        github::Error::CannotCreateForUser { .. } => ToolError { error: "github_user_account", message },
        github::Error::InvalidName(_) | github::Error::Api { status: 422, .. } => {
            ToolError { error: "invalid_argument", message }
        }
        github::Error::NotFound => ToolError {
            error: "not_found",
            message: "GitHub does not show this to the platform's App: check the installation includes the repository"
                .into(),
        },
        github::Error::Unavailable(_) => {
            tracing::warn!(error = %message, "github: unavailable");
            ToolError { error: "unavailable", message: "GitHub did not answer; retry in a moment".into() }
        }
        _ => {
            tracing::error!(error = %message, "github: the App's calls fail");
            ToolError {
                error: "github_misconfigured",
                message: "the platform's GitHub App was refused by GitHub; the operator must check its settings".into(),
            }
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("deploy-mcp", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}
