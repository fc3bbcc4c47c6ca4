//! The platform's git server: smart HTTP at `/git/<owner>/<repo>.git/…`, served by
//! `git http-backend`, authorised by a repository token (HTTP Basic, the token as password).
//!
//! Every pushed ref becomes one `PushReceived` intent on JetStream, deduplicated by
//! repo + ref + commit. What was announced is recorded as hidden refs (`refs/published/…`,
//! updated only after JetStream acked), so a crash between a push and its announcement is
//! caught up by the reconciler, which compares the refs with that record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::Utc;
use events::{Intent, PushReceived, RepoId, UserId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::Mutex;

use crate::AppState;
use crate::repos::{self, TokenCheck};

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";
/// Where announced ref values are kept inside each bare repository (hidden from clients).
const PUBLISHED: &str = "refs/published/";

/// The git side of the gateway's state.
#[derive(Debug, Clone)]
pub struct Git {
    /// `git`, as found on PATH unless configured.
    pub bin: PathBuf,
    /// Root of the bare repositories: `<data_dir>/git/<repo id>.git`.
    pub data_dir: PathBuf,
    /// One reconcile at a time per repository.
    locks: Arc<Mutex<BTreeMap<RepoId, Arc<Mutex<()>>>>>,
}

impl Git {
    pub fn new(bin: PathBuf, data_dir: PathBuf) -> Self {
        Self { bin, data_dir, locks: Arc::default() }
    }

    /// `git` with a clean environment: nothing of the platform's own (secrets included) leaks
    /// into git or its hooks.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
        // The repositories belong to the platform, whatever user runs it.
        cmd.env("GIT_CONFIG_COUNT", "1").env("GIT_CONFIG_KEY_0", "safe.directory").env("GIT_CONFIG_VALUE_0", "*");
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    fn git(&self, dir: &Path) -> Command {
        let mut cmd = self.command();
        cmd.arg("--git-dir").arg(dir);
        cmd
    }

    async fn run(&self, dir: &Path, args: &[&str]) -> std::io::Result<String> {
        let out = self.git(dir).args(args).output().await?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates the bare repository when missing (idempotent).
    pub async fn ensure_bare(&self, repo_id: RepoId) -> std::io::Result<PathBuf> {
        let dir = repos::repo_dir(&self.data_dir, repo_id);
        if !dir.join("HEAD").exists() {
            tokio::fs::create_dir_all(&dir).await?;
            let out =
                self.command().args(["init", "--bare", "--quiet", "--initial-branch=main"]).arg(&dir).output().await?;
            if !out.status.success() {
                return Err(std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()));
            }
            self.run(&dir, &["config", "transfer.hideRefs", PUBLISHED.trim_end_matches('/')]).await?;
            self.run(&dir, &["config", "http.receivepack", "true"]).await?;
        }
        Ok(dir)
    }

    /// The commit at the tip of `branch`, if the branch exists.
    pub async fn head(&self, repo_id: RepoId, branch: &str) -> std::io::Result<Option<String>> {
        let dir = repos::repo_dir(&self.data_dir, repo_id);
        if !dir.join("HEAD").exists() {
            return Ok(None);
        }
        let out = self
            .git(&dir)
            .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("refs/heads/{branch}^{{commit}}"))
            .output()
            .await?;
        let sha = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok((out.status.success() && !sha.is_empty()).then_some(sha))
    }

    async fn lock(&self, repo_id: RepoId) -> Arc<Mutex<()>> {
        self.locks.lock().await.entry(repo_id).or_default().clone()
    }

    /// Announces every ref that changed since the last announcement, then records it. Returns
    /// how many refs were announced.
    pub async fn reconcile(&self, bus: &bus::Bus, repo_id: RepoId, pusher: &str) -> Result<usize, String> {
        let lock = self.lock(repo_id).await;
        let _guard = lock.lock().await;
        let dir = repos::repo_dir(&self.data_dir, repo_id);
        if !dir.join("HEAD").exists() {
            return Ok(0);
        }
        let listing = self
            .run(&dir, &["for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags", PUBLISHED])
            .await
            .map_err(|e| e.to_string())?;
        let mut current = BTreeMap::new();
        let mut published = BTreeMap::new();
        for line in listing.lines() {
            let Some((sha, name)) = line.split_once(' ') else { continue };
            match name.strip_prefix(PUBLISHED) {
                Some(rest) => published.insert(format!("refs/{rest}"), sha.to_owned()),
                None => current.insert(name.to_owned(), sha.to_owned()),
            };
        }
        let mut changes: Vec<(String, String, String)> = Vec::new();
        for (name, sha) in &current {
            let before = published.get(name).cloned().unwrap_or_else(|| ZERO_SHA.to_owned());
            if &before != sha {
                changes.push((name.clone(), before, sha.clone()));
            }
        }
        for (name, sha) in &published {
            if !current.contains_key(name) {
                changes.push((name.clone(), sha.clone(), ZERO_SHA.to_owned()));
            }
        }
        for (name, before, after) in &changes {
            let intent = Intent::PushReceived(PushReceived {
                repo: repo_id,
                git_ref: name.clone(),
                before: before.clone(),
                after: after.clone(),
                pusher: pusher.to_owned(),
                received_at: Utc::now(),
            });
            bus.publish_intent(&intent).await.map_err(|e| e.to_string())?;
            let record = format!("{PUBLISHED}{}", name.trim_start_matches("refs/"));
            if after == ZERO_SHA {
                self.run(&dir, &["update-ref", "-d", &record]).await.map_err(|e| e.to_string())?;
            } else {
                self.run(&dir, &["update-ref", &record, after]).await.map_err(|e| e.to_string())?;
            }
        }
        Ok(changes.len())
    }

    /// Reconciles every repository on disk (at start-up and periodically).
    pub async fn reconcile_all(&self, bus: &bus::Bus) -> usize {
        let mut announced = 0;
        let Ok(mut entries) = tokio::fs::read_dir(self.data_dir.join("git")).await else { return 0 };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".git").and_then(|u| ulid::Ulid::from_string(&u.to_uppercase()).ok())
            else {
                continue;
            };
            match self.reconcile(bus, RepoId(id), "reconciler").await {
                Ok(n) => announced += n,
                Err(e) => tracing::warn!(repo = %RepoId(id), error = %e, "git: reconcile failed; will retry"),
            }
        }
        announced
    }
}

/// Runs the reconciler every `every` until `shutdown`.
pub async fn reconcile_loop(git: Git, bus: bus::Bus, every: Duration, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        let n = git.reconcile_all(&bus).await;
        if n > 0 {
            tracing::info!(refs = n, "git: announced pushes that had not been announced");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

fn plain(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response()
}

fn unauthorized(message: &str) -> Response {
    let mut res = plain(StatusCode::UNAUTHORIZED, message);
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"deploy-mcp git\""));
    res
}

/// The token in a Basic `Authorization` header (any user name, the token as password).
fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_owned())
}

/// `/git/{owner}/{repo}.git/{*rest}`: the smart HTTP endpoints only.
pub async fn handle(
    State(state): State<AppState>,
    UrlPath((owner, repo, rest)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let not_found = || plain(StatusCode::NOT_FOUND, "no such repository: check the clone URL from create_repo");
    let rest = format!("/{rest}");
    let service = match (method.as_str(), rest.as_str()) {
        ("GET", "/info/refs") => match query.as_deref() {
            Some("service=git-upload-pack") => "upload",
            Some("service=git-receive-pack") => "receive",
            _ => {
                return plain(
                    StatusCode::FORBIDDEN,
                    "only the smart HTTP protocol is served: use a git client >= 1.6.6",
                );
            }
        },
        ("POST", "/git-upload-pack") => "upload",
        ("POST", "/git-receive-pack") => "receive",
        _ => return not_found(),
    };
    let Ok(owner) = owner.parse::<UserId>() else { return not_found() };
    let Some(name) = repo.strip_suffix(".git") else { return not_found() };
    if repos::validate_name(name).is_err() {
        return not_found();
    }
    let Some(token) = basic_password(&headers) else {
        return unauthorized("authentication required: use the token from get_git_token as the password");
    };
    let commands = &state.commands;
    let found = match repos::find(commands, owner, name).await {
        Ok(f) => f,
        Err(e) => return plain(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    // Unknown repository and foreign token look the same from outside: check the token first.
    let repo_id = match repos::check_token(commands, &token, found.as_ref().map(|f| f.repo_id), Utc::now()).await {
        Ok(TokenCheck::Valid { .. }) => match &found {
            Some(f) => f.repo_id,
            None => return not_found(),
        },
        Ok(TokenCheck::OtherRepo) => {
            return plain(StatusCode::FORBIDDEN, "this token belongs to another repository: get one for this repo");
        }
        Ok(TokenCheck::Invalid(why)) => return unauthorized(why),
        Err(e) => return plain(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let dir = match state.git.ensure_bare(repo_id).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(repo = %repo_id, error = %e, "git: cannot create the bare repository");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "the repository could not be opened");
        }
    };
    let response = match http_backend(&state.git, &dir, &method, &rest, query.as_deref(), &headers, body, &owner).await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(repo = %repo_id, error = %e, "git: http-backend failed");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "git failed to serve the request");
        }
    };
    if service == "receive" && method == Method::POST {
        // Announce before answering, so that a push reported done is a push announced; if NATS
        // is down the reconciler announces it later.
        if let Err(e) = state.git.reconcile(&state.bus, repo_id, &owner.to_string()).await {
            tracing::warn!(repo = %repo_id, error = %e, "git: push not announced yet; the reconciler will retry");
        }
    }
    response
}

/// Runs `git http-backend` as a CGI for one request.
#[allow(clippy::too_many_arguments)]
async fn http_backend(
    git: &Git,
    dir: &Path,
    method: &Method,
    rest: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
    user: &UserId,
) -> std::io::Result<Response> {
    let root = dir.parent().ok_or_else(|| std::io::Error::other("repository without a parent"))?;
    let leaf = dir.file_name().ok_or_else(|| std::io::Error::other("repository without a name"))?;
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut cmd = git.command();
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{}{rest}", leaf.to_string_lossy()))
        .env("REQUEST_METHOD", method.as_str())
        .env("QUERY_STRING", query.unwrap_or(""))
        .env("CONTENT_TYPE", header(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header(header::CONTENT_ENCODING))
        .env("GIT_PROTOCOL", headers.get("git-protocol").and_then(|v| v.to_str().ok()).unwrap_or(""))
        .env("REMOTE_USER", user.to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
        let _ = stdin.shutdown().await;
    });
    let mut stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
    let mut out = Vec::new();
    stdout.read_to_end(&mut out).await?;
    let status = child.wait().await?;
    let _ = writer.await;
    if !status.success() && out.is_empty() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err).await;
        }
        return Err(std::io::Error::other(format!("http-backend exited with {status}: {}", err.trim())));
    }
    cgi_response(&out)
}

/// Turns CGI output (headers, a blank line, the body) into a response.
fn cgi_response(out: &[u8]) -> std::io::Result<Response> {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)))
        .ok_or_else(|| std::io::Error::other("CGI output without headers"))?;
    let head = String::from_utf8_lossy(&out[..split.0]);
    let mut builder = Response::builder().status(StatusCode::OK);
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(500);
            builder = builder.status(code);
        } else if let (Ok(n), Ok(v)) = (header::HeaderName::try_from(name.trim()), HeaderValue::from_str(value)) {
            builder = builder.header(n, v);
        }
    }
    builder.body(Body::from(out[split.1..].to_vec())).map_err(std::io::Error::other)
}
