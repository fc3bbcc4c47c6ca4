//! The gateway: MCP over streamable HTTP (rmcp) behind API-key auth, health endpoints, the
//! RFC 9728 protected-resource metadata and the OAuth 2.1 authorization server (`oauth`),
//! GitHub webhooks and git smart HTTP.

pub mod accounts;
pub mod auth;
mod error;
pub mod git;
pub mod github_app;
pub mod keys;
pub mod mcp;
pub mod oauth;
mod projection;
pub mod repos;
pub mod resources;
pub mod services;
pub mod web;
pub mod zones;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use bus::Bus;
pub use error::ApiError;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use store::{Commands, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::KeyAuth;

/// What the gateway needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen (default 127.0.0.1:8081).
    pub listen: SocketAddr,
    /// The URL clients reach the gateway at, without a trailing slash (`http://127.0.0.1:8081`).
    pub public_url: String,
    /// Extra `Host` values accepted besides loopback and the public URL's host.
    pub allowed_hosts: Vec<String>,
    pub store: Store,
    pub bus: Bus,
    /// How old a verified key's revocation check may get before it is re-checked.
    pub key_recheck: Duration,
    /// The platform's data directory: bare git repositories live in `<data_dir>/git`.
    pub data_dir: PathBuf,
    /// The `git` binary (its `http-backend` serves smart HTTP).
    pub git_bin: PathBuf,
    /// How often the git reconciler announces pushes that were not announced.
    pub reconcile_every: Duration,
    /// Push and repository sizes the git server accepts.
    pub git_limits: git::Limits,
    /// The platform's GitHub App, when configured.
    pub github: Option<github_app::GithubConfig>,
    /// Where apps answer, and the key that seals their variables.
    pub apps: services::AppsConfig,
    /// What delegating users are told (name servers, expiry).
    pub zones: zones::ZonesConfig,
    /// The OAuth authorization server's settings.
    pub oauth: oauth::OAuthConfig,
    /// Sign-in with GitHub on the web pages, when configured.
    pub github_login: Option<github::login::LoginConfig>,
}

/// Shared state of every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub bus: Bus,
    pub auth: Arc<KeyAuth>,
    pub public_url: String,
    /// The command side (aggregates on the event store).
    pub commands: Arc<Commands>,
    pub git: git::Git,
    pub github: github_app::GithubState,
    pub apps: services::AppsConfig,
    pub zones: zones::ZonesConfig,
    /// The OAuth authorization server (clients, codes, refresh families).
    pub oauth: Arc<oauth::OAuth>,
    /// Sign-in with GitHub, when configured.
    pub github_login: Option<github::login::GithubLogin>,
}

impl AppState {
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.public_url)
    }

    fn resource_metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource/mcp", self.public_url)
    }
}

/// Binds `config.listen` and serves until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = TcpListener::bind(config.listen).await?;
    serve(listener, config, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0).
pub async fn serve(listener: TcpListener, config: Config, shutdown: CancellationToken) -> std::io::Result<()> {
    let state = AppState::new(&config);
    // The reconciler shares the handlers' `Git`, so both take the same per-repository locks.
    tokio::spawn(git::reconcile_loop(state.git.clone(), config.bus.clone(), config.reconcile_every, shutdown.clone()));
    let router = app(state, &config, shutdown.clone());
    tracing::info!(addr = %listener.local_addr()?, url = %format!("{}/mcp", config.public_url), "gateway listening");
    // The peer address feeds the per-IP sign-in limit of the OAuth pages.
    let router = router.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    Some(authority.to_owned())
}

impl AppState {
    pub fn new(config: &Config) -> Self {
        Self {
            store: config.store.clone(),
            bus: config.bus.clone(),
            auth: Arc::new(
                KeyAuth::new(config.store.clone(), config.key_recheck)
                    .for_resource(format!("{}/mcp", config.public_url.trim_end_matches('/'))),
            ),
            public_url: config.public_url.trim_end_matches('/').to_owned(),
            commands: Arc::new(Commands::new(&config.store)),
            git: git::Git::new(config.git_bin.clone(), config.data_dir.clone()).with_limits(config.git_limits),
            github: github_app::GithubState { config: config.github.clone(), ..Default::default() },
            apps: config.apps.clone(),
            zones: config.zones.clone(),
            oauth: Arc::new(oauth::OAuth::new(config.oauth.clone(), config.store.clone())),
            github_login: config.github_login.clone().and_then(|c| match github::login::GithubLogin::new(c) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::error!(error = %e, "gateway: GitHub sign-in is off");
                    None
                }
            }),
        }
    }
}

/// The gateway's routes.
pub fn app(state: AppState, config: &Config, shutdown: CancellationToken) -> Router {
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Some(h) = host_of(&state.public_url) {
        hosts.push(h.clone());
        if let Some((name, _port)) = h.rsplit_once(':') {
            hosts.push(name.to_owned());
        }
    }
    hosts.extend(config.allowed_hosts.iter().cloned());
    let mcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        // Stateless JSON: any gateway replica answers any request, and a tool call is one POST.
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_cancellation_token(shutdown.child_token());
    let mcp_state = state.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(mcp::McpServer::new(mcp_state.clone())),
        Arc::new(LocalSessionManager::default()),
        mcp_config,
    );
    let protected = Router::new()
        .nest_service("/mcp", mcp)
        .route("/api/zones", get(zones::get_zones).post(zones::post_zone))
        .layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/.well-known/oauth-protected-resource", get(resource_metadata))
        .route("/.well-known/oauth-protected-resource/mcp", get(resource_metadata))
        .route("/.well-known/oauth-authorization-server", get(oauth::metadata::get_authorization_server))
        .route("/oauth/register", axum::routing::post(oauth::register::post_register))
        .route("/oauth/authorize", get(oauth::flow::get_authorize).post(oauth::flow::post_authorize))
        .route("/oauth/consent", axum::routing::post(oauth::flow::post_consent))
        .route("/oauth/token", axum::routing::post(oauth::token::post_token))
        // No body limit here: git bodies stream, and git::Limits bounds a push as it arrives.
        .route("/git/{owner}/{repo}/{*rest}", any(git::handle))
        .route("/github/setup", get(github_app::setup))
        .route("/webhooks/github", axum::routing::post(github_app::webhook))
        .merge(web::routes())
        .merge(protected)
        .with_state(state)
}

/// Puts the caller's `Principal` in the request, or answers 401 with the RFC 9728 challenge.
async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match state.auth.authenticate(header).await {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(error) => {
            ApiError::Unauthorized { error, resource_metadata: state.resource_metadata_url() }.into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when Postgres and NATS both answer.
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let (pg, nats) = tokio::join!(state.store.ping(), state.bus.ping());
    let body = json!({
        "postgres": pg.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()),
        "nats": nats.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()),
    });
    if pg.is_ok() && nats.is_ok() { Ok(Json(body)) } else { Err(ApiError::NotReady(body)) }
}

/// RFC 9728 protected resource metadata. The authorization server joins it with OAuth.
async fn resource_metadata(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "resource": state.mcp_url(),
        "resource_name": "Deploy MCP",
        "authorization_servers": [state.public_url],
        "bearer_methods_supported": ["header"],
    }))
}
