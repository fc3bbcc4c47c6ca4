//! A fake GitHub for tests (GitHub itself is unreachable from tests): a loopback HTTP server
//! answering the REST calls [`crate::GithubApp`] makes with GitHub's real JSON shapes and
//! status codes, checking the App JWT and installation tokens like GitHub does, and recording
//! every request; plus builders for GitHub's webhook payloads.
//!
//! ```ignore
//! let fake = FakeGithub::start(include_str!("…/test-app.pub.pem")).await;
//! fake.add_installation(7, "acme", "Organization");
//! let app = GithubApp::new(AppConfig { app_id: FakeGithub::APP_ID, api_base: fake.url(), .. })?;
//! ```

mod login;
mod shapes;

pub use login::{FakeGithubLogin, FakeUser};

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, Utc};
use octocrab::jsonwebtoken::{self, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::GithubRepo;
use shapes::Bases;

/// GitHub's own documentation link in error bodies.
const DOCS: &str = "https://docs.github.com/rest";
/// GitHub refuses App JWTs that expire more than ten minutes after now.
const MAX_JWT_LIFETIME_SECS: i64 = 600;
/// How long GitHub's installation tokens live.
const TOKEN_LIFETIME: Duration = Duration::hours(1);
/// The largest request body the fake reads; GitHub's REST bodies here are tiny.
const MAX_BODY: usize = 1 << 20;

/// A running fake GitHub on `127.0.0.1`; the server stops when this is dropped.
pub struct FakeGithub {
    url: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

/// One request as the fake saw it, so tests can assert the exact calls made.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// The path without the query.
    pub path: String,
    pub auth: RequestAuth,
    /// The JSON body, or `Null` when there was none (or it was not JSON).
    pub body: Value,
}

/// Who a request authenticated as, judged the way GitHub would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestAuth {
    /// No `Authorization` header.
    None,
    /// A valid App JWT: RS256 under the App's key, `iss` the App id, unexpired, lifetime ≤ 10 min.
    App,
    /// An unexpired installation token the fake issued, for that installation.
    Installation(u64),
    /// Credentials were presented but are not valid.
    Invalid,
}

type Shared = Arc<Mutex<FakeState>>;

struct FakeState {
    app_id: u64,
    key: DecodingKey,
    /// The fake's own URL: the base of every API and web URL in its answers.
    url: String,
    /// The base of `clone_url`.
    git_base: String,
    /// By lower-cased login: GitHub logins are case-insensitive.
    accounts: BTreeMap<String, Account>,
    /// Installation id → lower-cased account login.
    installations: BTreeMap<u64, String>,
    repos: Vec<RepoRecord>,
    /// Issued token → (installation id, expiry).
    tokens: BTreeMap<String, (u64, DateTime<Utc>)>,
    requests: Vec<RecordedRequest>,
    next_repo_id: u64,
    token_seed: u64,
    tokens_issued: u64,
}

struct Account {
    login: String,
    /// `User` or `Organization`.
    kind: String,
    installed_at: DateTime<Utc>,
}

struct RepoRecord {
    id: u64,
    /// Lower-cased owner login.
    owner: String,
    name: String,
    description: Option<String>,
    private: bool,
    created_at: DateTime<Utc>,
}

impl FakeGithub {
    /// The App id [`FakeGithub::start`] accepts in JWTs.
    pub const APP_ID: u64 = 4242;

    /// Starts the fake for the App with id [`FakeGithub::APP_ID`] and public key
    /// `app_public_key_pem` (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`), serving on the
    /// current Tokio runtime. Panics when the key does not parse or no port can be bound,
    /// because it is test infrastructure.
    pub async fn start(app_public_key_pem: &str) -> FakeGithub {
        Self::start_for_app(Self::APP_ID, app_public_key_pem).await
    }

    /// [`FakeGithub::start`] for another App id.
    pub async fn start_for_app(app_id: u64, app_public_key_pem: &str) -> FakeGithub {
        let key = DecodingKey::from_rsa_pem(app_public_key_pem.as_bytes()).expect("the App public key is an RSA PEM");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("a bound address"));
        let shared = Arc::new(Mutex::new(FakeState {
            app_id,
            key,
            url: url.clone(),
            git_base: url.clone(),
            accounts: BTreeMap::new(),
            installations: BTreeMap::new(),
            repos: Vec::new(),
            tokens: BTreeMap::new(),
            requests: Vec::new(),
            next_repo_id: 700_000_001,
            token_seed: RandomState::new().hash_one(app_id),
            tokens_issued: 0,
        }));
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the fake GitHub stopped");
            }
        });
        FakeGithub { url, shared, server }
    }

    /// `http://127.0.0.1:<port>`: the `api_base` to give [`crate::AppConfig`].
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn app_id(&self) -> u64 {
        self.state().app_id
    }

    /// Installs the App on `login`'s account (`account_type` `User` or `Organization`), with
    /// access to all of its repositories.
    pub fn add_installation(&self, id: u64, login: &str, account_type: &str) {
        assert!(
            matches!(account_type, "User" | "Organization"),
            "account_type is `User` or `Organization`, not `{account_type}`"
        );
        let mut state = self.state();
        let account = state.account(login, account_type);
        assert_eq!(account.kind, account_type, "`{login}` is already a {}", account.kind);
        state.installations.insert(id, login.to_ascii_lowercase());
    }

    /// Adds an existing private repository `owner_login/name` (owner a `User` unless it was
    /// installed as an `Organization`), and returns it as the client would. Panics if it exists.
    pub fn add_repo(&self, owner_login: &str, name: &str) -> GithubRepo {
        let mut state = self.state();
        state.account(owner_login, "User");
        let index = state.insert_repo(owner_login, name, None, true);
        state.github_repo(&state.repos[index])
    }

    /// Makes `clone_url` point at `base` (`{base}/{owner}/{name}.git`), e.g. a local
    /// `git http-backend`, instead of the fake itself.
    pub fn set_git_base(&self, base: &str) {
        self.state().git_base = base.trim_end_matches('/').to_owned();
    }

    /// `(method, path)` of every request so far, in arrival order.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.state().requests.iter().map(|r| (r.method.clone(), r.path.clone())).collect()
    }

    /// Every request so far with who it authenticated as and its body, in arrival order.
    pub fn recorded_requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// The repository `owner/name`, created or added, as the client would see it.
    pub fn repo(&self, full_name: &str) -> Option<GithubRepo> {
        let (owner, name) = full_name.split_once('/')?;
        let state = self.state();
        state.find_repo(owner, name).map(|r| state.github_repo(r))
    }

    /// Every repository the fake holds, created or added, in creation order.
    pub fn repos(&self) -> Vec<GithubRepo> {
        let state = self.state();
        state.repos.iter().map(|r| state.github_repo(r)).collect()
    }

    /// The installation an unexpired token was issued for: lets a test's git server accept
    /// exactly the tokens GitHub would.
    pub fn installation_for_token(&self, token: &str) -> Option<u64> {
        self.state().installation_for_token(token)
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        lock(&self.shared)
    }
}

impl std::fmt::Debug for FakeGithub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGithub").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, FakeState> {
    // A panicking test thread must not hide the fake's state from the others.
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FakeState {
    fn bases(&self) -> Bases<'_> {
        Bases { api: &self.url, web: &self.url, git: &self.git_base }
    }

    /// The account `login`, created with `kind` if new.
    fn account(&mut self, login: &str, kind: &str) -> &Account {
        self.accounts.entry(login.to_ascii_lowercase()).or_insert_with(|| Account {
            login: login.to_owned(),
            kind: kind.to_owned(),
            installed_at: Utc::now(),
        })
    }

    fn find_repo(&self, owner: &str, name: &str) -> Option<&RepoRecord> {
        self.repos.iter().find(|r| r.owner.eq_ignore_ascii_case(owner) && r.name.eq_ignore_ascii_case(name))
    }

    /// Adds a repository and returns its index in `repos`.
    fn insert_repo(&mut self, owner: &str, name: &str, description: Option<String>, private: bool) -> usize {
        assert!(self.find_repo(owner, name).is_none(), "{owner}/{name} already exists");
        self.repos.push(RepoRecord {
            id: self.next_repo_id,
            owner: owner.to_ascii_lowercase(),
            name: name.to_owned(),
            description,
            private,
            created_at: Utc::now(),
        });
        self.next_repo_id += 1;
        self.repos.len() - 1
    }

    fn repo_json(&self, record: &RepoRecord, webhook: bool) -> Value {
        let owner = &self.accounts[&record.owner];
        let repo = shapes::Repo {
            id: record.id,
            owner_login: &owner.login,
            owner_kind: &owner.kind,
            name: &record.name,
            description: record.description.as_deref(),
            private: record.private,
            default_branch: "main",
            created_at: record.created_at,
        };
        shapes::repository(&self.bases(), &repo, webhook)
    }

    fn github_repo(&self, record: &RepoRecord) -> GithubRepo {
        serde_json::from_value(self.repo_json(record, false)).expect("a repository object has the client's fields")
    }

    fn installation_for_token(&self, token: &str) -> Option<u64> {
        self.tokens.get(token).filter(|(_, expires)| *expires > Utc::now()).map(|(id, _)| *id)
    }

    /// GitHub's `ghs_` format: 36 alphanumeric characters after the prefix, unguessable
    /// across fakes (random seed) and unique within one (counter).
    fn new_token(&mut self) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        self.tokens_issued += 1;
        let mut token = String::from("ghs_");
        for round in 0u8..2 {
            let mut hasher = Sha256::new();
            hasher.update(self.token_seed.to_be_bytes());
            hasher.update(self.tokens_issued.to_be_bytes());
            hasher.update([round]);
            token.extend(hasher.finalize().iter().take(18).map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char));
        }
        token
    }

    fn classify(&self, headers: &HeaderMap) -> RequestAuth {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return RequestAuth::None;
        };
        let Ok(value) = value.to_str() else {
            return RequestAuth::Invalid;
        };
        let credential = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("token ")).map(str::trim);
        let Some(credential) = credential else {
            return RequestAuth::Invalid;
        };
        if let Some(id) = self.installation_for_token(credential) {
            return RequestAuth::Installation(id);
        }
        if value.starts_with("Bearer ") && self.valid_app_jwt(credential) {
            return RequestAuth::App;
        }
        RequestAuth::Invalid
    }

    fn valid_app_jwt(&self, jwt: &str) -> bool {
        #[derive(Deserialize)]
        struct Claims {
            iss: Value,
            iat: i64,
            exp: i64,
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 0;
        validation.validate_aud = false;
        // `iss` may be a number (octocrab) or a string: checked below, not by the library,
        // which only reads strings.
        validation.required_spec_claims = ["exp".to_owned()].into();
        let Ok(token) = jsonwebtoken::decode::<Claims>(jwt, &self.key, &validation) else {
            return false;
        };
        let claims = token.claims;
        let issuer_ok = match &claims.iss {
            Value::Number(n) => n.as_u64() == Some(self.app_id),
            Value::String(s) => s == &self.app_id.to_string(),
            _ => false,
        };
        let now = Utc::now().timestamp();
        issuer_ok && claims.exp > now && claims.exp <= now + MAX_JWT_LIFETIME_SECS && claims.iat <= now + 60
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/app/installations/{id}", get(get_installation))
        .route("/app/installations/{id}/access_tokens", post(create_token))
        .route("/orgs/{org}/repos", post(create_org_repo))
        .route("/repos/{owner}/{repo}", get(get_repo))
        .fallback(|| async { not_found() })
        .layer(middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

/// Judges the credentials once, hands the verdict to the handler and records the request.
async fn record(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
    };
    let auth = {
        let mut state = lock(&shared);
        let auth = state.classify(&parts.headers);
        state.requests.push(RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            auth,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        });
        auth
    };
    parts.extensions.insert(auth);
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"message": message, "documentation_url": DOCS, "status": status.as_str()})))
        .into_response()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

fn jwt_refused() -> Response {
    error(StatusCode::UNAUTHORIZED, "A JSON web token could not be decoded")
}

/// GitHub's answer to a request that is not from an installation allowed to act.
fn refused(auth: RequestAuth) -> Response {
    match auth {
        RequestAuth::None => error(StatusCode::UNAUTHORIZED, "Requires authentication"),
        RequestAuth::Invalid => error(StatusCode::UNAUTHORIZED, "Bad credentials"),
        RequestAuth::App | RequestAuth::Installation(_) => {
            error(StatusCode::FORBIDDEN, "Resource not accessible by integration")
        }
    }
}

async fn get_installation(
    State(shared): State<Shared>,
    Extension(auth): Extension<RequestAuth>,
    Path(id): Path<String>,
) -> Response {
    if auth != RequestAuth::App {
        return jwt_refused();
    }
    let state = lock(&shared);
    let Some((id, login)) = id.parse::<u64>().ok().and_then(|id| Some((id, state.installations.get(&id)?))) else {
        return not_found();
    };
    let account = &state.accounts[login];
    let body =
        shapes::installation(&state.bases(), id, state.app_id, &account.login, &account.kind, account.installed_at);
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn create_token(
    State(shared): State<Shared>,
    Extension(auth): Extension<RequestAuth>,
    Path(id): Path<String>,
) -> Response {
    if auth != RequestAuth::App {
        return jwt_refused();
    }
    let mut state = lock(&shared);
    let Some(id) = id.parse::<u64>().ok().filter(|id| state.installations.contains_key(id)) else {
        return not_found();
    };
    let token = state.new_token();
    let expires_at = Utc::now() + TOKEN_LIFETIME;
    state.tokens.insert(token.clone(), (id, expires_at));
    let body = json!({
        "token": token,
        "expires_at": shapes::timestamp(expires_at),
        "permissions": shapes::permissions(),
        "repository_selection": "all",
    });
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

#[derive(Deserialize)]
struct CreateRepo {
    name: Option<String>,
    description: Option<String>,
    private: Option<bool>,
    visibility: Option<String>,
}

async fn create_org_repo(
    State(shared): State<Shared>,
    Extension(auth): Extension<RequestAuth>,
    Path(org): Path<String>,
    body: Bytes,
) -> Response {
    let RequestAuth::Installation(installation) = auth else {
        return refused(auth);
    };
    let mut state = lock(&shared);
    let is_org = state.accounts.get(&org.to_ascii_lowercase()).is_some_and(|a| a.kind == "Organization");
    if !is_org {
        return not_found();
    }
    if !state.installations[&installation].eq_ignore_ascii_case(&org) {
        return refused(auth);
    }
    let Ok(request) = serde_json::from_slice::<CreateRepo>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let Some(name) = request.name.filter(|n| !n.is_empty()) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.\n\n\"name\" wasn't supplied.");
    };
    if state.find_repo(&org, &name).is_some() {
        let body = json!({
            "message": "Repository creation failed.",
            "errors": [{"resource": "Repository", "code": "custom", "field": "name",
                        "message": "name already exists on this account"}],
            "documentation_url": "https://docs.github.com/rest/repos/repos#create-an-organization-repository",
            "status": "422",
        });
        return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response();
    }
    let private = request.private.unwrap_or(false) || matches!(request.visibility.as_deref(), Some("private"));
    let index = state.insert_repo(&org, &name, request.description, private);
    (StatusCode::CREATED, axum::Json(state.repo_json(&state.repos[index], false))).into_response()
}

async fn get_repo(
    State(shared): State<Shared>,
    Extension(auth): Extension<RequestAuth>,
    Path((owner, name)): Path<(String, String)>,
) -> Response {
    if auth == RequestAuth::Invalid {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let state = lock(&shared);
    let Some(record) = state.find_repo(&owner, &name) else {
        return not_found();
    };
    let visible = !record.private
        || matches!(auth, RequestAuth::Installation(id) if state.installations.get(&id) == Some(&record.owner));
    if !visible {
        return not_found();
    }
    (StatusCode::OK, axum::Json(state.repo_json(record, false))).into_response()
}

/// The body of a `push` delivery for `repo`, as GitHub sends it: `created` when `before` is
/// all zeros, `deleted` (and no `head_commit`) when `after` is. URLs are derived from
/// `repo.clone_url`.
pub fn push_payload(
    repo: &GithubRepo,
    git_ref: &str,
    before: &str,
    after: &str,
    pusher: &str,
    installation_id: Option<u64>,
) -> Vec<u8> {
    let zero = |sha: &str| !sha.is_empty() && sha.bytes().all(|b| b == b'0');
    let (created, deleted) = (zero(before), zero(after));
    let (owner, name) = repo.full_name.split_once('/').unwrap_or((&repo.full_name, &repo.full_name));
    // `clone_url` is `{web}/{owner}/{name}.git`; GitHub's API lives on another host than its web.
    let web = repo.clone_url.strip_suffix(&format!("/{}.git", repo.full_name)).unwrap_or("https://github.com");
    let api = if web == "https://github.com" { "https://api.github.com" } else { web };
    let bases = Bases { api, web, git: web };
    let html = format!("{web}/{}", repo.full_name);
    let now = Utc::now();
    let record = shapes::Repo {
        id: repo.id,
        owner_login: owner,
        owner_kind: "User",
        name,
        description: None,
        private: repo.private,
        default_branch: &repo.default_branch,
        created_at: now - Duration::days(1),
    };
    let email = format!("{}+{pusher}@users.noreply.github.com", shapes::account_id(pusher));
    let commits: Vec<Value> = if deleted {
        Vec::new()
    } else {
        vec![json!({
            "id": after,
            "tree_id": hex::encode(Sha256::digest(after.as_bytes()))[..40].to_owned(),
            "distinct": true,
            "message": "Update from the fake GitHub",
            "timestamp": shapes::timestamp(now),
            "url": format!("{html}/commit/{after}"),
            "author": {"name": pusher, "email": email, "username": pusher},
            "committer": {"name": pusher, "email": email, "username": pusher},
            "added": [],
            "removed": [],
            "modified": ["README.md"],
        })]
    };
    let short = |sha: &str| sha.get(..12).unwrap_or(sha).to_owned();
    let compare = if created {
        format!("{html}/compare/{}", git_ref.rsplit('/').next().unwrap_or(git_ref))
    } else {
        format!("{html}/compare/{}...{}", short(before), short(after))
    };
    let mut body = json!({
        "ref": git_ref,
        "before": before,
        "after": after,
        "repository": shapes::repository(&bases, &record, true),
        "pusher": {"name": pusher, "email": email},
        "sender": shapes::simple_user(&bases, pusher, "User"),
        "created": created,
        "deleted": deleted,
        "forced": false,
        "base_ref": null,
        "compare": compare,
        "head_commit": commits.first().cloned().unwrap_or(Value::Null),
        "commits": commits,
    });
    if let Some(id) = installation_id {
        body["installation"] = json!({"id": id, "node_id": shapes::node_id("IntegrationInstallation", id)});
    }
    serde_json::to_vec(&body).expect("JSON values serialize")
}

/// The body of an `installation` delivery (`action` `created`, `deleted`, `suspend`, …) for an
/// installation on `login`'s account (`account_type` `User` or `Organization`) by `sender`, as
/// GitHub sends it (with GitHub's own URLs).
pub fn installation_payload(
    action: &str,
    installation_id: u64,
    login: &str,
    account_type: &str,
    sender: &str,
) -> Vec<u8> {
    let bases = Bases { api: "https://api.github.com", web: "https://github.com", git: "https://github.com" };
    let installed_at = Utc::now();
    let body = json!({
        "action": action,
        "installation": shapes::installation(&bases, installation_id, FakeGithub::APP_ID, login, account_type, installed_at),
        "repositories": [],
        "requester": null,
        "sender": shapes::simple_user(&bases, sender, "User"),
    });
    serde_json::to_vec(&body).expect("JSON values serialize")
}
