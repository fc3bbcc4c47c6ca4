//! The platform's git server: smart HTTP at `/git/<owner>/<repo>.git/…`, served by
//! `git http-backend`, authorised by a repository token (HTTP Basic, the token as password).
//!
//! Every pushed ref becomes one `PushReceived` intent on JetStream, deduplicated by
//! repo + ref + commit. What was announced is recorded as hidden refs (`refs/published/…`,
//! updated only after JetStream acked), so a crash between a push and its announcement is
//! caught up by the reconciler, which compares the refs with that record.

mod backend;
mod pkt;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::Utc;
use events::{Intent, PushReceived, RepoId, UserId};
use tokio::process::Command;
use tokio::sync::Mutex;

use crate::AppState;
use crate::repos::{self, TokenCheck};

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";
/// Where announced ref values are kept inside each bare repository (hidden from clients).
const PUBLISHED: &str = "refs/published/";

/// Git requests one account may have in flight: each holds a git process, and a clone or a
/// push may last minutes, so a few are plenty for an agent and a bound for the gateway.
pub const MAX_REQUESTS_PER_USER: usize = 4;

/// What one push and one repository may weigh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body (a push's pack, as sent), in bytes.
    pub max_push_bytes: u64,
    /// Largest a repository's objects may grow, in bytes.
    pub max_repo_bytes: u64,
}

impl Limits {
    pub fn from_mb(max_push_mb: u64, max_repo_mb: u64) -> Self {
        Self { max_push_bytes: max_push_mb << 20, max_repo_bytes: max_repo_mb << 20 }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_mb(200, 1024)
    }
}

/// The git side of the gateway's state.
#[derive(Debug, Clone)]
pub struct Git {
    /// `git`, as found on PATH unless configured.
    pub bin: PathBuf,
    /// Root of the bare repositories: `<data_dir>/git/<repo id>.git`.
    pub data_dir: PathBuf,
    /// One reconcile at a time per repository.
    locks: Arc<Mutex<BTreeMap<RepoId, Arc<Mutex<()>>>>>,
    limits: Limits,
    /// Git requests in flight per account (see [`MAX_REQUESTS_PER_USER`]).
    active: Arc<std::sync::Mutex<HashMap<UserId, usize>>>,
}

/// One of an account's places for a git request, given back when the last clone drops.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    _held: Arc<SlotInner>,
}

#[derive(Debug)]
struct SlotInner {
    active: Arc<std::sync::Mutex<HashMap<UserId, usize>>>,
    user: UserId,
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        let mut active = self.active.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = active.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                active.remove(&self.user);
            }
        }
    }
}

impl Git {
    pub fn new(bin: PathBuf, data_dir: PathBuf) -> Self {
        Self { bin, data_dir, locks: Arc::default(), limits: Limits::default(), active: Arc::default() }
    }

    pub fn with_limits(self, limits: Limits) -> Self {
        Self { limits, ..self }
    }

    /// Takes one of `user`'s places for a git request, if one is free.
    fn slot(&self, user: UserId) -> Option<Slot> {
        let mut active = self.active.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = active.entry(user).or_default();
        if *n >= MAX_REQUESTS_PER_USER {
            return None;
        }
        *n += 1;
        Some(Slot { _held: Arc::new(SlotInner { active: self.active.clone(), user }) })
    }

    /// `git` with a clean environment: nothing of the platform's own (secrets included) leaks
    /// into git or its hooks.
    fn command(&self) -> Command {
        self.command_with(&[])
    }

    /// [`Git::command`] with more configuration (`key`, `value`) on top of the platform's own.
    fn command_with(&self, config: &[(&str, String)]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
        let base = [
            // The repositories belong to the platform, whatever user runs it.
            ("safe.directory", "*".to_owned()),
            // Whatever is pushed is checked whole (malformed objects, names git refuses to
            // check out such as `.git`), and refused on the first error.
            ("receive.fsckObjects", "true".to_owned()),
            ("transfer.fsckObjects", "true".to_owned()),
        ];
        let all: Vec<&(&str, String)> = base.iter().chain(config).collect();
        cmd.env("GIT_CONFIG_COUNT", all.len().to_string());
        for (i, (key, value)) in all.iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), key).env(format!("GIT_CONFIG_VALUE_{i}"), value);
        }
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// What a repository's objects take on disk, in bytes (`git count-objects`: loose objects,
    /// packs and garbage such as a failed push's leftovers).
    pub async fn repo_size(&self, dir: &Path) -> std::io::Result<u64> {
        let out = self.run(dir, &["count-objects", "-v"]).await?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(k, _)| matches!(*k, "size" | "size-pack" | "size-garbage"))
            .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
            .sum::<u64>()
            * 1024)
    }

    /// The budget of the next push to `dir`: the push limit, or what is left of the
    /// repository's, whichever is smaller, with the message for a push past it.
    async fn push_budget(&self, dir: &Path) -> std::io::Result<(u64, String)> {
        let used = self.repo_size(dir).await?;
        let Limits { max_push_bytes, max_repo_bytes } = self.limits;
        let room = max_repo_bytes.saturating_sub(used);
        Ok(if room < max_push_bytes {
            (room, repo_full(max_repo_bytes, used))
        } else {
            (max_push_bytes, push_too_large(max_push_bytes))
        })
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

/// `/git/{owner}/{repo}.git/{*rest}`: the smart HTTP endpoints only. Bodies stream both ways;
/// an account has at most [`MAX_REQUESTS_PER_USER`] requests in flight, and a push is held to
/// the size limits while it arrives.
pub async fn handle(
    State(state): State<AppState>,
    UrlPath((owner, repo, rest)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Body,
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
    let Some(slot) = state.git.slot(owner) else {
        let message = format!(
            "too many git requests at once for this account (at most {MAX_REQUESTS_PER_USER}): wait for your \
             other clones, fetches and pushes to finish, then retry"
        );
        let mut res = plain(StatusCode::TOO_MANY_REQUESTS, &message);
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return res;
    };
    let dir = match state.git.ensure_bare(repo_id).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(repo = %repo_id, error = %e, "git: cannot create the bare repository");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "the repository could not be opened");
        }
    };
    let push = if service == "receive" && method == Method::POST {
        let (max_pack, refusal) = match state.git.push_budget(&dir).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(repo = %repo_id, error = %e, "git: cannot measure the repository");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "the repository could not be opened");
            }
        };
        // Announce before the push is reported done; if NATS is down the reconciler announces
        // it later.
        let (git, bus, pusher) = (state.git.clone(), state.bus.clone(), owner.to_string());
        let after = Box::pin(async move {
            if let Err(e) = git.reconcile(&bus, repo_id, &pusher).await {
                tracing::warn!(repo = %repo_id, error = %e, "git: push not announced yet; the reconciler will retry");
            }
        });
        Some(backend::Push { max_pack, refusal, drain: state.git.limits.max_push_bytes, after })
    } else {
        None
    };
    let cgi = CgiRequest { method: &method, rest: &rest, query: query.as_deref(), headers: &headers, user: &owner };
    let cmd = state.git.http_backend(&dir, &cgi, push.as_ref().map(|p| p.max_pack));
    match backend::serve(cmd, body, push, slot).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(repo = %repo_id, error = %e, "git: http-backend failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "git failed to serve the request")
        }
    }
}

/// What of a request `git http-backend` is told (as CGI variables).
struct CgiRequest<'a> {
    method: &'a Method,
    rest: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    user: &'a UserId,
}

impl Git {
    /// `git http-backend` for one request; `max_pack` caps a push's pack (git's own
    /// `receive.maxInputSize`: git refuses a larger one in the protocol).
    fn http_backend(&self, dir: &Path, req: &CgiRequest<'_>, max_pack: Option<u64>) -> Command {
        let root = dir.parent().unwrap_or(dir);
        let leaf = dir.file_name().map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
        let header = |name: header::HeaderName| req.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        // 0 would mean no limit to git: a full repository takes no pack at all.
        let config: Vec<(&str, String)> =
            max_pack.map(|m| ("receive.maxInputSize", m.max(1).to_string())).into_iter().collect();
        let mut cmd = self.command_with(&config);
        cmd.arg("http-backend")
            .env("GIT_PROJECT_ROOT", root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("PATH_INFO", format!("/{leaf}{}", req.rest))
            .env("REQUEST_METHOD", req.method.as_str())
            .env("QUERY_STRING", req.query.unwrap_or(""))
            .env("CONTENT_TYPE", header(header::CONTENT_TYPE))
            .env("HTTP_CONTENT_ENCODING", header(header::CONTENT_ENCODING))
            .env("GIT_PROTOCOL", req.headers.get("git-protocol").and_then(|v| v.to_str().ok()).unwrap_or(""))
            .env("REMOTE_USER", req.user.to_string())
            .env("REMOTE_ADDR", "127.0.0.1");
        // No CONTENT_LENGTH, ever: git then reads its input to the end, which the gateway
        // decides. Given a length and a body that ends short (a client that hangs up, a push cut
        // at its limit), http-backend spins on the early end of its input for ever.
        cmd
    }
}

/// A size for people: `200 MiB`, `2.6 MiB`, `512 KiB`.
fn size(bytes: u64) -> String {
    let mib = bytes as f64 / f64::from(1u32 << 20);
    if bytes < 1 << 20 {
        format!("{} KiB", bytes.div_ceil(1024))
    } else if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{mib:.1} MiB")
    }
}

/// Told to a push larger than the push limit.
fn push_too_large(max: u64) -> String {
    let max = size(max);
    format!(
        "push refused: this push is larger than {max}, the most the platform accepts in one push.\n\
         Remove large files (build output, dependencies, media, data sets, binaries) from the commits \
         you push: keep them out with .gitignore, and if an earlier commit added them, rewrite that history \
         (e.g. `git filter-repo --strip-blobs-bigger-than 10M`, or `git rm --cached <file>` and \
         `git commit --amend`).\n\
         If the history itself is large, push it a few commits at a time."
    )
}

/// Told to a push that would take a repository past its limit.
fn repo_full(max: u64, used: u64) -> String {
    let (max, used) = (size(max), size(used));
    format!(
        "push refused: this repository would grow past {max}, the most the platform keeps per repository \
         (it holds {used}).\n\
         The platform keeps every object pushed, so rewriting history does not shrink this repository: \
         remove large files from the history (e.g. `git filter-repo --strip-blobs-bigger-than 10M`), push \
         it to a new repository (create_repo) and deploy the service from that one."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_sizes_then_they_read_as_people_write_them() {
        assert_eq!(size(200 << 20), "200 MiB");
        assert_eq!(size((2 << 20) + (600 << 10)), "2.6 MiB");
        assert_eq!(size(1000), "1 KiB");
    }

    #[test]
    fn given_a_refusal_then_it_names_the_limit_and_what_to_do() {
        let push = push_too_large(1 << 20);
        assert!(push.contains("larger than 1 MiB") && push.contains("Remove large files"), "{push}");
        let full = repo_full(3 << 20, 2 << 20);
        assert!(full.contains("past 3 MiB") && full.contains("holds 2 MiB") && full.contains("create_repo"), "{full}");
    }

    #[test]
    fn given_an_account_when_it_has_four_requests_in_flight_then_a_fifth_waits() {
        let git = Git::new("git".into(), "/nonexistent".into());
        let (me, other) = (UserId::new(), UserId::new());
        let mut held: Vec<Slot> = (0..MAX_REQUESTS_PER_USER).map(|_| git.slot(me).expect("a place")).collect();
        assert!(git.slot(me).is_none());
        assert!(git.slot(other).is_some(), "other accounts are not held up");
        // A slot shared by the body feeder and the answer is one place, freed by the last.
        let shared = held.pop().unwrap();
        let copy = shared.clone();
        drop(shared);
        assert!(git.slot(me).is_none());
        drop(copy);
        assert!(git.slot(me).is_some());
    }
}
