//! A stand-in for Turso's Platform API on 127.0.0.1, for tests: the database endpoints the provider uses, with
//! Turso's JSON shapes and status codes, state in memory, and knobs to make it fail.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::RngExt as _;
use serde::Deserialize;
use serde_json::json;

pub struct FakeTurso {
    addr: SocketAddr,
    state: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    organization: String,
    api_token: String,
    group: String,
    inner: Mutex<Inner>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Inner {
    databases: BTreeMap<String, FakeDatabase>,
    fail_next_token: bool,
}

struct FakeDatabase {
    id: String,
    tokens: Vec<String>,
}

impl FakeTurso {
    /// Serves organization `organization` with one group, accepting only `api_token`.
    pub async fn start(organization: &str, api_token: &str, group: &str) -> std::io::Result<Self> {
        let state = Arc::new(Shared {
            organization: organization.to_owned(),
            api_token: api_token.to_owned(),
            group: group.to_owned(),
            inner: Mutex::default(),
            next_id: AtomicU64::new(1),
        });
        let app = Router::new()
            .route("/v1/organizations/{org}/databases", post(create_database))
            .route("/v1/organizations/{org}/databases/{name}", get(get_database).delete(delete_database))
            .route("/v1/organizations/{org}/databases/{name}/auth/tokens", post(create_token))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "fake Turso stopped");
            }
        });
        Ok(Self { addr, state, server })
    }

    /// The base URL to give `TursoProvider` as its API URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next token request answers 500, as if Turso failed after creating the database.
    pub fn fail_next_token(&self) {
        self.state.inner.lock().unwrap().fail_next_token = true;
    }

    /// Names of the databases that exist now.
    pub fn databases(&self) -> Vec<String> {
        self.state.inner.lock().unwrap().databases.keys().cloned().collect()
    }

    /// The tokens issued for database `name`, oldest first.
    pub fn tokens(&self, name: &str) -> Vec<String> {
        self.state.inner.lock().unwrap().databases.get(name).map(|d| d.tokens.clone()).unwrap_or_default()
    }
}

impl Drop for FakeTurso {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The refusal, if any: Turso checks the bearer token first, then the organization.
fn refuse(state: &Shared, headers: &HeaderMap, org: &str) -> Option<Response> {
    let presented =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(state.api_token.as_str()) {
        return Some(error(StatusCode::UNAUTHORIZED, "token is invalid or expired"));
    }
    if org != state.organization {
        return Some(error(StatusCode::NOT_FOUND, format!("organization {org} not found")));
    }
    None
}

fn hostname(state: &Shared, name: &str) -> String {
    format!("{name}-{}.turso.io", state.organization)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    group: String,
}

async fn create_database(
    State(state): State<Arc<Shared>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Response {
    if let Some(r) = refuse(&state, &headers, &org) {
        return r;
    }
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "body must be JSON with `name` and `group`");
    };
    if !valid_name(&body.name) {
        return error(
            StatusCode::BAD_REQUEST,
            "database name must contain only lowercase letters, numbers, dashes, no longer than 64 characters",
        );
    }
    if body.group != state.group {
        return error(StatusCode::BAD_REQUEST, format!("group {} not found", body.group));
    }
    let mut inner = state.inner.lock().unwrap();
    if inner.databases.contains_key(&body.name) {
        return error(StatusCode::CONFLICT, format!("database {} already exists", body.name));
    }
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    let id = format!("0eb771dd-6906-11ee-8553-{n:012x}");
    inner.databases.insert(body.name.clone(), FakeDatabase { id: id.clone(), tokens: Vec::new() });
    Json(json!({ "database": { "DbId": id, "Hostname": hostname(&state, &body.name), "Name": body.name } }))
        .into_response()
}

async fn get_database(
    State(state): State<Arc<Shared>>,
    Path((org, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refuse(&state, &headers, &org) {
        return r;
    }
    let inner = state.inner.lock().unwrap();
    let Some(db) = inner.databases.get(&name) else {
        return error(StatusCode::NOT_FOUND, format!("database {name} not found"));
    };
    Json(json!({ "database": {
        "Name": name,
        "DbId": db.id,
        "Hostname": hostname(&state, &name),
        "block_reads": false,
        "block_writes": false,
        "regions": ["lhr"],
        "primaryRegion": "lhr",
        "group": state.group,
        "delete_protection": false,
    }}))
    .into_response()
}

async fn delete_database(
    State(state): State<Arc<Shared>>,
    Path((org, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refuse(&state, &headers, &org) {
        return r;
    }
    match state.inner.lock().unwrap().databases.remove(&name) {
        Some(_) => Json(json!({ "database": name })).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("database {name} not found")),
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    authorization: Option<String>,
}

async fn create_token(
    State(state): State<Arc<Shared>>,
    Path((org, name)): Path<(String, String)>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refuse(&state, &headers, &org) {
        return r;
    }
    if !matches!(query.authorization.as_deref(), None | Some("full-access" | "read-only")) {
        return error(StatusCode::BAD_REQUEST, "authorization must be full-access or read-only");
    }
    let mut inner = state.inner.lock().unwrap();
    if std::mem::take(&mut inner.fail_next_token) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    }
    let Some(db) = inner.databases.get_mut(&name) else {
        return error(StatusCode::NOT_FOUND, format!("database {name} not found"));
    };
    let mut rng = rand::rng();
    let signature: String = (0..43).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect();
    let jwt = format!("eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.{}.{signature}", db.id.replace('-', ""));
    db.tokens.push(jwt.clone());
    Json(json!({ "jwt": jwt })).into_response()
}
