//! A fake of GitHub's OAuth web application flow for sign-in tests: `/login/oauth/authorize`,
//! `/login/oauth/access_token`, `/user` and `/user/emails`, with GitHub's JSON shapes and its
//! token-endpoint errors (HTTP 200 with an `error` field). A "browser signed in on GitHub" is
//! simulated by [`FakeGithubLogin::sign_in_as`]: the authorize page then approves at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use rand::RngExt as _;
use serde_json::{Value, json};

/// A GitHub user the fake knows.
#[derive(Debug, Clone)]
pub struct FakeUser {
    pub id: u64,
    pub login: String,
    /// (address, primary, verified)
    pub emails: Vec<(String, bool, bool)>,
}

#[derive(Default)]
struct State_ {
    users: HashMap<u64, FakeUser>,
    signed_in: Option<u64>,
    /// code → (user id, redirect URI)
    codes: HashMap<String, (u64, String)>,
    /// token → user id
    tokens: HashMap<String, u64>,
}

type Shared = Arc<Mutex<State_>>;

fn lock(s: &Shared) -> MutexGuard<'_, State_> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake on `127.0.0.1`; stops when dropped.
pub struct FakeGithubLogin {
    url: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGithubLogin {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const ERRORS_DOC: &str =
    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors";

fn random(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("{prefix}{tail}")
}

impl FakeGithubLogin {
    pub const CLIENT_ID: &str = "Iv23liFAKEclient01";
    pub const CLIENT_SECRET: &str = "fake-client-secret-0123456789abcdef";

    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("a bound address"));
        let shared: Shared = Arc::default();
        let app = Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .route("/user", get(user))
            .route("/user/emails", get(emails))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, server }
    }

    /// Both the web and the API base in tests.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn add_user(&self, user: FakeUser) {
        lock(&self.shared).users.insert(user.id, user);
    }

    /// The browser is signed in on GitHub as this user (and approves the app).
    pub fn sign_in_as(&self, id: u64) {
        lock(&self.shared).signed_in = Some(id);
    }
}

fn page(status: StatusCode, text: &str) -> Response {
    (status, axum::response::Html(format!("<!doctype html><title>GitHub</title><p>{text}</p>"))).into_response()
}

async fn authorize(State(shared): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    if q.get("client_id").map(String::as_str) != Some(FakeGithubLogin::CLIENT_ID) {
        return page(StatusCode::NOT_FOUND, "The client_id is not known to GitHub.");
    }
    let Some(redirect_uri) = q.get("redirect_uri").cloned() else {
        return page(StatusCode::BAD_REQUEST, "The redirect_uri is missing.");
    };
    let mut state = lock(&shared);
    let Some(user) = state.signed_in else { return page(StatusCode::OK, "Sign in to GitHub to continue.") };
    let code = random("", 20);
    state.codes.insert(code.clone(), (user, redirect_uri.clone()));
    let mut target = url::Url::parse(&redirect_uri).expect("a redirect URI");
    target.query_pairs_mut().append_pair("code", &code);
    if let Some(s) = q.get("state") {
        target.query_pairs_mut().append_pair("state", s);
    }
    Redirect::to(target.as_str()).into_response()
}

fn token_error(error: &str, description: &str, anchor: &str) -> Response {
    axum::Json(json!({"error": error, "error_description": description, "error_uri": format!("{ERRORS_DOC}#{anchor}")}))
        .into_response()
}

async fn access_token(State(shared): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != FakeGithubLogin::CLIENT_ID || get("client_secret") != FakeGithubLogin::CLIENT_SECRET {
        return token_error(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
            "incorrect-client-credentials",
        );
    }
    let mut state = lock(&shared);
    let Some((user, redirect_uri)) = state.codes.remove(get("code")) else {
        return token_error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
            "bad-verification-code",
        );
    };
    if !get("redirect_uri").is_empty() && get("redirect_uri") != redirect_uri {
        return token_error(
            "redirect_uri_mismatch",
            "The redirect_uri MUST match the registered callback URL for this application.",
            "redirect-uri-mismatch",
        );
    }
    let token = random("gho_", 36);
    state.tokens.insert(token.clone(), user);
    let json = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("json"));
    if json {
        axum::Json(json!({"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}))
            .into_response()
    } else {
        // GitHub's default answer is form-encoded.
        format!("access_token={token}&scope=read%3Auser%2Cuser%3Aemail&token_type=bearer").into_response()
    }
}

fn api_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(
            json!({"message": message, "documentation_url": "https://docs.github.com/rest", "status": status.as_str()}),
        ),
    )
        .into_response()
}

/// The user of the bearer token, or GitHub's 401 message.
fn who(shared: &Shared, headers: &HeaderMap) -> Result<FakeUser, &'static str> {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(auth) = auth else { return Err("Requires authentication") };
    let token = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("token ")).unwrap_or("");
    let state = lock(shared);
    state.tokens.get(token).and_then(|id| state.users.get(id)).cloned().ok_or("Bad credentials")
}

async fn user(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    match who(&shared, &headers) {
        Ok(u) => {
            let public_email: Value =
                u.emails.iter().find(|e| e.1).map(|e| Value::from(e.0.clone())).unwrap_or(Value::Null);
            axum::Json(json!({
                "login": u.login,
                "id": u.id,
                "node_id": format!("U_kgDO{}", u.id),
                "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", u.id),
                "html_url": format!("https://github.com/{}", u.login),
                "type": "User",
                "site_admin": false,
                "name": Value::Null,
                "email": public_email,
            }))
            .into_response()
        }
        Err(message) => api_error(StatusCode::UNAUTHORIZED, message),
    }
}

async fn emails(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    match who(&shared, &headers) {
        Ok(u) => {
            let list: Vec<Value> = u
                .emails
                .iter()
                .map(|(email, primary, verified)| {
                    json!({"email": email, "primary": primary, "verified": verified, "visibility": if *primary { Value::from("private") } else { Value::Null }})
                })
                .collect();
            axum::Json(list).into_response()
        }
        Err(message) => api_error(StatusCode::UNAUTHORIZED, message),
    }
}
