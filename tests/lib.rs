//! Fixtures for the end-to-end tests and benchmarks: real PostgreSQL and NATS, isolated per
//! test (a fresh database and a fresh subject prefix each), cleaned up on drop.

use std::future::Future;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use deploy_mcp::{Adapters, Components, Running, Settings};
use rmcp::ServiceExt as _;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

/// The Postgres server tests create their databases on.
pub fn pg_admin_url() -> String {
    std::env::var("DEPLOY_MCP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh lower-case unique name.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", ulid::Ulid::generate().to_string().to_lowercase())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{db}")
}

/// Polls `f` until it returns `Some`, failing the test with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs an async clean-up on a thread of its own, with its own runtime and connections, so
/// that it works from `Drop` inside any runtime.
fn cleanup_blocking<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            rt.block_on(f());
        }
    })
    .join();
}

/// A database of its own for one test, dropped afterwards.
pub struct TestDb {
    pub url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        static SWEPT: OnceLock<()> = OnceLock::new();
        let admin = pg_admin_url();
        if SWEPT.set(()).is_ok() {
            sweep_old_databases(&admin).await;
        }
        let url = with_database(&admin, &unique("t_"));
        store::ensure_database(&url).await.expect("create the test database (is PostgreSQL running? run scripts/test)");
        Self { url }
    }
}

/// Drops test databases left by crashed runs more than two hours ago (their names carry a ULID).
async fn sweep_old_databases(admin: &str) {
    let Ok(names) = store::databases_with_prefix(admin, "t_").await else {
        return;
    };
    let cutoff = std::time::SystemTime::now() - Duration::from_secs(7200);
    for name in names {
        let old = ulid::Ulid::from_string(&name[2..].to_uppercase()).is_ok_and(|u| u.datetime() < cutoff);
        if old {
            let _ = store::drop_database(&with_database(admin, &name)).await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let url = self.url.clone();
        cleanup_blocking(move || async move {
            let _ = store::drop_database(&url).await;
        });
    }
}

/// The `nats-server` binary (>= 2.10): `$NATS_SERVER_BIN`, else the first on PATH.
pub fn nats_server_bin() -> PathBuf {
    std::env::var_os("NATS_SERVER_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("nats-server"))
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A nats-server process of the test's own, for tests that stop and restart it.
pub struct NatsProcess {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl NatsProcess {
    pub async fn spawn() -> Self {
        let dir = std::env::temp_dir().join(unique("deploy-mcp-nats-"));
        std::fs::create_dir_all(&dir).expect("nats store dir");
        let mut p = Self { child: None, port: free_port(), dir };
        p.start().await;
        p
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port and store directory.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server (set NATS_SERVER_BIN or run scripts/test)");
        self.child = Some(child);
        let port = self.port;
        eventually(Duration::from_secs(10), "nats-server to listen", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
        })
        .await;
    }

    /// Kills the server (SIGKILL: nothing is flushed gracefully).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shared NATS server of the test run: `$DEPLOY_MCP_TEST_NATS_URL`, else one spawned for
/// this process.
pub async fn shared_nats_url() -> String {
    static SPAWNED: OnceLock<(String, u32)> = OnceLock::new();
    if let Ok(url) = std::env::var("DEPLOY_MCP_TEST_NATS_URL") {
        return url;
    }
    if let Some((url, _)) = SPAWNED.get() {
        return url.clone();
    }
    let mut p = NatsProcess::spawn().await;
    let url = p.url();
    // Keep the server for the whole process: forget the handle (it dies with the test binary's
    // process group only if killed; tests normally run via scripts/test with a shared server).
    let child = p.child.take().expect("running");
    let _ = SPAWNED.set((url.clone(), child.id()));
    std::mem::forget(child);
    url
}

/// Settings for a test: its own database and subject prefix, gateway on port 0.
pub fn test_settings(database_url: &str, nats_url: &str) -> Settings {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        s: Settings,
    }
    let mut s = Wrap::parse_from(["test"]).s;
    s.database_url = database_url.to_owned();
    s.nats_url = nats_url.to_owned();
    s.nats_prefix = unique("t");
    s.listen = "127.0.0.1:0".parse().expect("addr");
    s.public_url = None;
    s.bcrypt_cost = 4;
    s.password_bcrypt_cost = 4;
    s.db_pool = 8;
    s.data_dir = std::env::temp_dir().join(unique("deploy-mcp-data-"));
    s.router_listen = "127.0.0.1:0".parse().expect("addr");
    s.router_tls_listen = "127.0.0.1:0".parse().expect("addr");
    s.health_timeout_secs = 5;
    // Builds take their packages and toolchains from the set-up's local registries.
    let (mirrors, sources) = local_package_sources();
    s.package_mirrors = mirrors;
    s.toolchain_sources = sources;
    s
}

/// The platform (or part of it) running in-process on a database and prefix of its own.
pub struct TestPlatform {
    pub settings: Settings,
    pub adapters: Adapters,
    pub running: Option<Running>,
    pub base_url: String,
    pub db: TestDb,
}

impl TestPlatform {
    pub async fn start(components: Components) -> Self {
        Self::start_on(&shared_nats_url().await, components).await
    }

    pub async fn start_on(nats_url: &str, components: Components) -> Self {
        Self::start_with(nats_url, components, |_| {}).await
    }

    /// Starts with settings adjusted by `tweak` (e.g. a GitHub App pointing at a fake).
    pub async fn start_with(nats_url: &str, components: Components, tweak: impl FnOnce(&mut Settings)) -> Self {
        let db = TestDb::create().await;
        let mut settings = test_settings(&db.url, nats_url);
        tweak(&mut settings);
        let adapters = deploy_mcp::connect(&settings).await.expect("connect to the test database and NATS");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let listeners = deploy_mcp::Listeners { gateway: Some(listener), ..Default::default() };
        let running = deploy_mcp::start(&settings, &adapters, components, listeners).await.expect("start");
        Self { settings, adapters, running: Some(running), base_url, db }
    }

    pub fn commands(&self) -> store::Commands {
        store::Commands::new(&self.adapters.store)
    }

    /// Creates the account of `email` (when new) and a key, and waits until the gateway can
    /// see it. Returns the plaintext key and its prefix.
    pub async fn new_key(&self, email: &str) -> (String, String) {
        let commands = self.commands();
        let user =
            gateway::accounts::ensure_account(&commands, email, events::Limits::default()).await.expect("account");
        let issued = gateway::accounts::create_api_key(&commands, user, "test", 4).await.expect("key");
        let store = self.adapters.store.clone();
        let prefix = issued.key.prefix.clone();
        eventually(Duration::from_secs(10), "the key in the read model", || {
            let (store, prefix) = (store.clone(), prefix.clone());
            async move { store.api_key_by_prefix(&prefix).await.ok().flatten() }
        })
        .await;
        (issued.key.plaintext, issued.key.prefix)
    }

    /// Every message of a stream, in order.
    pub async fn stream_payloads(&self, stream: &str) -> Vec<Vec<u8>> {
        use futures::StreamExt as _;
        let bus = &self.adapters.bus;
        let last = bus.last_sequence(stream).await.expect("stream info");
        if last == 0 {
            return vec![];
        }
        let replay = bus.replay(stream, 1).await.expect("replay");
        tokio::pin!(replay);
        let mut out = Vec::new();
        while let Some(item) = replay.next().await {
            let (seq, payload) = item.expect("message");
            out.push(payload.to_vec());
            if seq >= last {
                break;
            }
        }
        out
    }

    /// Every push intent on INTENTS, in order.
    pub async fn push_intents(&self) -> Vec<events::PushReceived> {
        self.stream_payloads("INTENTS")
            .await
            .iter()
            .map(|p| {
                let events::Intent::PushReceived(push) = serde_json::from_slice(p).expect("an intent");
                push
            })
            .collect()
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base_url)
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

impl Drop for TestPlatform {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.shutdown.cancel();
        }
        let _ = std::fs::remove_dir_all(&self.settings.data_dir);
        let (url, prefix) = (self.settings.nats_url.clone(), self.settings.nats_prefix.clone());
        cleanup_blocking(move || async move {
            if let Ok(bus) = bus::Bus::connect(&url, &prefix).await {
                let _ = bus.delete_streams().await;
            }
        });
    }
}

/// An MCP client of the tests.
pub type Client = RunningService<rmcp::RoleClient, ()>;

/// Calls a tool with JSON arguments.
pub async fn call_tool(client: &Client, name: &'static str, args: serde_json::Value) -> rmcp::model::CallToolResult {
    let args = args.as_object().cloned().unwrap_or_default();
    client
        .call_tool(rmcp::model::CallToolRequestParams::new(name).with_arguments(args))
        .await
        .expect("the tool call is answered")
}

/// The structured output of a successful tool call.
pub fn tool_ok(result: rmcp::model::CallToolResult) -> serde_json::Value {
    assert_ne!(result.is_error, Some(true), "{result:?}");
    result.structured_content.expect("structured output")
}

/// The structured error of a failed tool call.
pub fn tool_err(result: rmcp::model::CallToolResult) -> serde_json::Value {
    assert_eq!(result.is_error, Some(true), "{result:?}");
    result.structured_content.expect("structured error")
}

/// An MCP client over streamable HTTP with a bearer key.
pub async fn mcp_client(url: &str, key: &str) -> anyhow::Result<RunningService<rmcp::RoleClient, ()>> {
    let transport =
        StreamableHttpClientTransport::from_config(StreamableHttpClientTransportConfig::with_uri(url).auth_header(key));
    Ok(().serve(transport).await?)
}

/// The `deploy-mcp` binary built next to this test binary.
pub fn deploy_mcp_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("deploy-mcp")
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("deploy-mcp-git-"));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs git in `dir` with no user or system configuration and no prompts.
pub fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=Agent", "-c", "user.email=agent@example.test", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub fn commit(dir: &Path, file: &str, contents: &str) -> String {
    std::fs::write(dir.join(file), contents).unwrap();
    git(dir, &["add", "."]).unwrap();
    git(dir, &["commit", "-q", "-m", &format!("write {file}")]).unwrap();
    git(dir, &["rev-parse", "HEAD"]).unwrap()
}

/// A fixture app of `tests/fixtures/apps`.
pub fn fixture_app(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/apps").join(name)
}

/// Copies a directory tree (a fixture into a working copy).
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The status of an MCP `tools/list` with this bearer token: whether the gateway takes it.
pub async fn mcp_status(mcp_url: &str, token: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(mcp_url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#)
        .send()
        .await
        .expect("the gateway answers")
        .status()
}

/// A working copy of a fixture app pushed to a new repo of the platform.
pub struct Pushed {
    pub dir: Scratch,
}

impl Pushed {
    /// Creates repo `repo`, commits the fixture and pushes it to `main`.
    pub async fn new(client: &Client, repo: &str, fixture_name: &str) -> Self {
        Self::new_with(client, repo, fixture_name, |_| {}).await
    }

    /// Like `new`, with `prepare` changing the working copy before the first commit.
    pub async fn new_with(client: &Client, repo: &str, fixture_name: &str, prepare: impl FnOnce(&Path)) -> Self {
        tool_ok(call_tool(client, "create_repo", serde_json::json!({ "name": repo })).await);
        let token = tool_ok(call_tool(client, "get_git_token", serde_json::json!({ "name": repo })).await);
        let dir = Scratch::new();
        copy_tree(&fixture_app(fixture_name), &dir.0);
        prepare(&dir.0);
        git(&dir.0, &["init", "-q"]).unwrap();
        git(&dir.0, &["add", "."]).unwrap();
        git(&dir.0, &["commit", "-q", "-m", "fixture"]).unwrap();
        git(&dir.0, &["remote", "add", "deploy", token["authenticated_url"].as_str().unwrap()]).unwrap();
        let me = Self { dir };
        me.push();
        me
    }

    /// Writes `contents` to `file`, commits and pushes; returns the new commit.
    pub fn write_and_push(&self, file: &str, contents: &str) -> String {
        std::fs::write(self.dir.0.join(file), contents).unwrap();
        git(&self.dir.0, &["add", "."]).unwrap();
        git(&self.dir.0, &["commit", "-q", "-m", "change"]).unwrap();
        self.push();
        git(&self.dir.0, &["rev-parse", "HEAD"]).unwrap()
    }

    pub fn push(&self) {
        git(&self.dir.0, &["push", "-q", "deploy", "HEAD:main"]).unwrap();
    }
}

/// The router of a platform whose scheduler runs.
pub fn router(p: &TestPlatform) -> std::net::SocketAddr {
    p.running.as_ref().and_then(|r| r.router_addr).expect("the scheduler's router runs")
}

/// GET `path` through the router with the service's host name, as a browser at the URL would:
/// the status and the trimmed body.
pub async fn get_via_router(
    http: &reqwest::Client,
    router: std::net::SocketAddr,
    url: &str,
    path: &str,
) -> reqwest::Result<(u16, String)> {
    let host = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    let r = http.get(format!("http://{router}{path}")).header("host", host).send().await?;
    Ok((r.status().as_u16(), r.text().await?.trim().to_owned()))
}

/// `get_service` with the last `log_lines` lines of each log.
pub async fn get_service(client: &Client, name: &str, log_lines: u32) -> serde_json::Value {
    tool_ok(call_tool(client, "get_service", serde_json::json!({ "name": name, "deploy_log_lines": log_lines })).await)
}

/// Waits until the latest deployment has `status`; a failure ends the wait early (and is
/// returned for the caller to show).
pub async fn wait_latest(client: &Client, name: &str, status: &str, timeout: Duration) -> serde_json::Value {
    eventually(timeout, &format!("{name}: latest deployment {status}"), || async {
        let s = get_service(client, name, 50).await;
        let latest = s["deployments"][0]["status"].as_str().unwrap_or_default().to_owned();
        (latest == status || (latest == "failed" && status != "failed")).then_some(s)
    })
    .await
}

/// The package mirrors and toolchain sources the test set-up serves on loopback (scripts/lib.sh
/// `setup_package_mirrors`), so builds never need the public registries; None where unset.
pub fn local_package_sources() -> (Option<String>, Option<String>) {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (pypi, npm, go) =
        (var("DEPLOY_MCP_TEST_PYPI_URL"), var("DEPLOY_MCP_TEST_NPM_URL"), var("DEPLOY_MCP_TEST_GOPROXY_URL"));
    let mirrors: Vec<String> = [("pypi", &pypi), ("npm", &npm), ("go", &go)]
        .iter()
        .filter_map(|(name, url)| url.as_ref().map(|u| format!("{name}={u}")))
        .collect();
    let sources: Vec<String> = [("node", "npm", &npm), ("go", "pypi", &pypi)]
        .iter()
        .filter_map(|(tool, kind, url)| url.as_ref().map(|u| format!("{tool}={kind}:{u}")))
        .collect();
    let join = |v: Vec<String>| (!v.is_empty()).then(|| v.join(","));
    (join(mirrors), join(sources))
}
