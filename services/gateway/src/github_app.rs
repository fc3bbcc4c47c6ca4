//! GitHub through the platform's GitHub App: linking an account to an installation, webhooks,
//! and `github.com` repositories.
//!
//! Linking: `connect_github` hands out the App's install URL with a signed `state` naming the
//! account; GitHub sends the browser back to `/github/setup` with the installation id and that
//! state, and the link is recorded after GitHub confirms the installation. Webhooks are verified
//! over the raw body (HMAC-SHA256, constant time) before anything is parsed; a push becomes the
//! same `PushReceived` as a push to the internal git server, deduplicated by repo + ref + commit
//! (and repeated deliveries are also recognised by `X-GitHub-Delivery`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use cqrs_es::AggregateError;
use domain::{AccountCommand, Claim, ClaimCommand, Rejection};
use events::{ClaimKind, Intent, PushReceived, RepoId, UserId};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use store::Commands;

use crate::AppState;

/// The GitHub App of this platform, when configured.
#[derive(Clone)]
pub struct GithubConfig {
    pub app: github::GithubApp,
    pub webhook_secret: String,
    /// Signs the `state` of install links.
    pub state_secret: Vec<u8>,
}

impl GithubConfig {
    /// The state key is derived from the webhook secret (domain-separated), so one secret
    /// configures both.
    pub fn new(app: github::GithubApp, webhook_secret: String) -> Self {
        let mut mac = HmacSha256::new_from_slice(webhook_secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(b"deploy-mcp install state v1");
        let state_secret = mac.finalize().into_bytes().to_vec();
        Self { app, webhook_secret, state_secret }
    }
}

impl std::fmt::Debug for GithubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GithubConfig(..)")
    }
}

/// Deliveries seen recently (GitHub redelivers on timeouts), bounded.
#[derive(Default)]
pub struct Deliveries {
    inner: Mutex<(HashSet<String>, VecDeque<String>)>,
}

const DELIVERIES_KEPT: usize = 100_000;

impl Deliveries {
    fn seen(&self, id: &str) -> bool {
        self.inner.lock().expect("lock").0.contains(id)
    }

    fn remember(&self, id: &str) {
        let mut guard = self.inner.lock().expect("lock");
        let (set, order) = &mut *guard;
        if set.insert(id.to_owned()) {
            order.push_back(id.to_owned());
            if order.len() > DELIVERIES_KEPT
                && let Some(old) = order.pop_front()
            {
                set.remove(&old);
            }
        }
    }
}

/// GitHub's repository id → ours: immutable once linked, so cached forever.
#[derive(Default)]
pub struct RepoMap(RwLock<HashMap<u64, RepoId>>);

/// Shared GitHub state of the gateway.
#[derive(Clone, Default)]
pub struct GithubState {
    pub config: Option<GithubConfig>,
    pub deliveries: Arc<Deliveries>,
    pub repos: Arc<RepoMap>,
}

impl std::fmt::Debug for GithubState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubState").field("configured", &self.config.is_some()).finish()
    }
}

type HmacSha256 = Hmac<Sha256>;

/// `<user>.<expiry unix seconds>.<hex HMAC>`: binds an install link to one account for a while.
pub fn sign_state(secret: &[u8], user: UserId, expires_unix: i64) -> String {
    let payload = format!("{user}.{expires_unix}");
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    format!("{payload}.{}", hex::encode(mac.finalize().into_bytes()))
}

/// The account a state names, when its signature holds and it has not expired.
pub fn verify_state(secret: &[u8], state: &str, now_unix: i64) -> Option<UserId> {
    let (payload, signature) = state.rsplit_once('.')?;
    let (user, expires) = payload.split_once('.')?;
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(payload.as_bytes());
    mac.verify_slice(&hex::decode(signature).ok()?).ok()?;
    (expires.parse::<i64>().ok()? > now_unix).then_some(())?;
    user.parse().ok()
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "github: a dependency failed");
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "unavailable", "message": "retry in a moment"})))
        .into_response()
}

/// Records that `installation_id` belongs to `owner` (one account per installation).
pub async fn link(
    commands: &Commands,
    owner: UserId,
    installation_id: u64,
    account_login: &str,
) -> Result<(), LinkError> {
    let claim_id = ClaimKind::GithubInstallation.claim_id(&installation_id.to_string());
    let cmd = ClaimCommand::Claim {
        kind: ClaimKind::GithubInstallation,
        name: installation_id.to_string(),
        owner,
        target: owner.to_string(),
        now: Utc::now(),
    };
    match commands.claims.execute(&claim_id, cmd).await {
        Ok(()) => {}
        Err(AggregateError::UserError(Rejection::Taken { .. })) => return Err(LinkError::OtherAccount),
        Err(e) => return Err(LinkError::Unavailable(e.to_string())),
    }
    let cmd = AccountCommand::LinkGithub { installation_id, account_login: account_login.to_owned(), now: Utc::now() };
    commands.accounts.execute(&owner.to_string(), cmd).await.map_err(|e| LinkError::Unavailable(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("this GitHub installation is already connected to another account")]
    OtherAccount,
    #[error("{0}")]
    Unavailable(String),
}

/// Removes the link of a deleted installation (idempotent).
async fn unlink(commands: &Commands, installation_id: u64) -> Result<(), String> {
    let claim_id = ClaimKind::GithubInstallation.claim_id(&installation_id.to_string());
    let claim: Claim = commands.load(&claim_id).await.map_err(|e| e.to_string())?;
    let Some(holder) = claim.holder else { return Ok(()) };
    let cmd = AccountCommand::UnlinkGithub { installation_id, now: Utc::now() };
    commands.accounts.execute(&holder.owner.to_string(), cmd).await.map_err(|e| e.to_string())?;
    let release = ClaimCommand::Release { owner: holder.owner, now: Utc::now() };
    commands.claims.execute(&claim_id, release).await.map_err(|e| e.to_string())
}

/// Our repository for a GitHub repository id, if one of ours is it.
pub async fn repo_for(state: &AppState, github_id: u64) -> Result<Option<RepoId>, String> {
    if let Some(id) = state.github.repos.0.read().expect("lock").get(&github_id) {
        return Ok(Some(*id));
    }
    let claim: Claim = state
        .commands
        .load(&ClaimKind::GithubRepo.claim_id(&github_id.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    let Some(holder) = claim.holder else { return Ok(None) };
    let repo: RepoId = holder.target.parse()?;
    state.github.repos.0.write().expect("lock").insert(github_id, repo);
    Ok(Some(repo))
}

/// Claims a GitHub repository for one of our repositories (a GitHub repo is linked once).
pub async fn claim_repo(commands: &Commands, owner: UserId, github_id: u64, repo: RepoId) -> Result<bool, String> {
    let cmd = ClaimCommand::Claim {
        kind: ClaimKind::GithubRepo,
        name: github_id.to_string(),
        owner,
        target: repo.to_string(),
        now: Utc::now(),
    };
    match commands.claims.execute(&ClaimKind::GithubRepo.claim_id(&github_id.to_string()), cmd).await {
        Ok(()) => Ok(true),
        Err(AggregateError::UserError(Rejection::Taken { .. })) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
pub struct SetupQuery {
    installation_id: Option<u64>,
    state: Option<String>,
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><main><h1>{title}</h1><p>{body}</p></main></body></html>"
    );
    (status, Html(html)).into_response()
}

/// Where GitHub sends the browser after the App was installed.
pub async fn setup(State(state): State<AppState>, Query(q): Query<SetupQuery>) -> Response {
    let Some(config) = &state.github.config else {
        return page(StatusCode::NOT_FOUND, "GitHub is not configured", "This platform has no GitHub App.");
    };
    let (Some(installation_id), Some(signed)) = (q.installation_id, q.state) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Missing installation",
            "Open the link from connect_github again: it carries what this page needs.",
        );
    };
    let Some(owner) = verify_state(&config.state_secret, &signed, Utc::now().timestamp()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Link expired or invalid",
            "Ask your agent to call connect_github again and open the new link.",
        );
    };
    let installation = match config.app.installation(installation_id).await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(installation_id, error = %e, "github: installation not confirmed");
            return page(StatusCode::BAD_REQUEST, "Installation not found", "GitHub does not know this installation.");
        }
    };
    match link(&state.commands, owner, installation_id, &installation.account_login).await {
        Ok(()) => page(
            StatusCode::OK,
            "GitHub connected",
            &format!("Repositories can now be created in {}. You can close this page.", installation.account_login),
        ),
        Err(LinkError::OtherAccount) => {
            page(StatusCode::CONFLICT, "Already connected", &LinkError::OtherAccount.to_string())
        }
        Err(LinkError::Unavailable(e)) => unavailable(e),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /webhooks/github`.
pub async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(config) = &state.github.config else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "github_not_configured"}))).into_response();
    };
    // Nothing is parsed before the signature over the raw bytes holds.
    if !github::verify_signature(config.webhook_secret.as_bytes(), &body, header(&headers, "x-hub-signature-256")) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad_signature"}))).into_response();
    }
    let delivery = header(&headers, "x-github-delivery").unwrap_or_default().to_owned();
    if !delivery.is_empty() && state.github.deliveries.seen(&delivery) {
        return (StatusCode::OK, Json(json!({"status": "duplicate"}))).into_response();
    }
    let event = header(&headers, "x-github-event").unwrap_or_default();
    let parsed = match github::parse_webhook(event, &body) {
        Ok(p) => p,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": "bad_payload", "message": e.to_string()})))
                .into_response();
        }
    };
    let status = match parsed {
        github::WebhookEvent::Push(push) => match repo_for(&state, push.repository_id).await {
            Err(e) => return unavailable(e),
            Ok(None) => "ignored: repository not connected",
            Ok(Some(repo)) => {
                let intent = Intent::PushReceived(PushReceived {
                    repo,
                    git_ref: push.git_ref,
                    before: push.before,
                    after: push.after,
                    pusher: push.pusher,
                    received_at: Utc::now(),
                });
                match state.bus.publish_intent(&intent).await {
                    Ok(false) => "accepted",
                    Ok(true) => "duplicate",
                    Err(e) => return unavailable(e),
                }
            }
        },
        github::WebhookEvent::InstallationDeleted { installation_id } => {
            match unlink(&state.commands, installation_id).await {
                Ok(()) => "unlinked",
                Err(e) => return unavailable(e),
            }
        }
        github::WebhookEvent::InstallationCreated { installation_id, account_login, .. } => {
            // The link itself comes through /github/setup, which knows the account; a created
            // webhook for an installation already claimed refreshes its account name.
            let claim_id = ClaimKind::GithubInstallation.claim_id(&installation_id.to_string());
            match state.commands.load::<Claim>(&claim_id).await {
                Ok(Claim { holder: Some(h) }) => {
                    match link(&state.commands, h.owner, installation_id, &account_login).await {
                        Ok(()) => "linked",
                        Err(e) => return unavailable(e),
                    }
                }
                Ok(_) => "ignored: installation not connected to an account yet",
                Err(e) => return unavailable(e),
            }
        }
        github::WebhookEvent::Ignored { .. } => "ignored",
    };
    if !delivery.is_empty() {
        state.github.deliveries.remember(&delivery);
    }
    (StatusCode::ACCEPTED, Json(json!({"status": status}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_bound_to_their_account_and_expire() {
        let user = UserId::new();
        let s = sign_state(b"k", user, 100);
        assert_eq!(verify_state(b"k", &s, 99), Some(user));
        assert_eq!(verify_state(b"k", &s, 100), None, "expired");
        assert_eq!(verify_state(b"other", &s, 99), None, "another key");
        let forged = s.replacen(&user.to_string(), &UserId::new().to_string(), 1);
        assert_eq!(verify_state(b"k", &forged, 99), None, "another account");
        assert_eq!(verify_state(b"k", "garbage", 0), None);
    }
}
