//! Deploy latency benchmarks, end to end through MCP, git and the router, on real PostgreSQL and
//! NATS with the whole platform in-process. Prints its figures; asserts nothing about timings.
//!
//! `cargo bench -p deploy-mcp-tests --bench deploy` (set DEPLOY_MCP_TEST_DATABASE_URL /
//! DEPLOY_MCP_TEST_NATS_URL as scripts/test does, or eval `scripts/test --setup-only` first).
//! Needs root (the sandboxes). `DEPLOY_BENCH_N` sets the iterations per measurement (10).
//!
//! For the fixtures `static` and `python`:
//! 1. create_service → the first 200 with the fixture's content through the router: a fresh repo
//!    and service each iteration (`s1`, `s2`, … / `p1`, `p2`, …), pushed before the clock starts;
//! 2. git push → the new content live: N pushes to the first service, once it is live, the clock
//!    started right before `git push`, a client of its own polling the router.
//!
//! The router is polled every 5 ms. Afterwards: how many deployments of each service ended
//! `failed` (per get_service), then every service is deleted.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use deploy_mcp::Components;
use deploy_mcp_tests::{Client, Pushed, TestPlatform, call_tool, eventually, git, mcp_client, router, tool_ok, unique};
use serde_json::{Value, json};

/// How often the router is polled.
const POLL: Duration = Duration::from_millis(5);
/// How long one deployment may take before the iteration counts as timed out.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(180);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}

/// A fixture of the benchmark: which files a new version changes and how it is recognised.
#[derive(Clone, Copy)]
struct Fixture {
    name: &'static str,
    /// Prefix of the repo and service names.
    prefix: &'static str,
}

impl Fixture {
    const ALL: [Fixture; 2] = [Fixture { name: "static", prefix: "s" }, Fixture { name: "python", prefix: "p" }];

    /// Writes version `v` into the working copy.
    fn write_version(self, dir: &Path, v: u32) {
        match self.name {
            "static" => {
                let path = dir.join("index.html");
                let html = std::fs::read_to_string(&path).unwrap();
                let start = html.find("static fixture v").expect("the version in index.html");
                let end = start + html[start..].find('<').expect("the end of the version");
                let html = format!("{}static fixture v{v}{}", &html[..start], &html[end..]);
                std::fs::write(path, html).unwrap();
            }
            _ => std::fs::write(dir.join("message.txt"), format!("python fixture v{v}\n")).unwrap(),
        }
    }

    /// Whether a body served at `/` is version `v`.
    fn serves(self, body: &str, v: u32) -> bool {
        match self.name {
            "static" => body.contains(&format!("static fixture v{v}<")),
            _ => body.trim() == format!("python fixture v{v}"),
        }
    }
}

/// GET `/` through the router with the service's host name.
async fn get(http: &reqwest::Client, router: SocketAddr, url: &str) -> reqwest::Result<(u16, String)> {
    let host = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    let r = http.get(format!("http://{router}/")).header("host", host).send().await?;
    Ok((r.status().as_u16(), r.text().await?))
}

/// Polls the router every [`POLL`] until it serves version `v` (200): when it first did, and
/// how many answers before it were not a 200 (refused, 502, …). `None` after the timeout.
async fn first_served(
    http: &reqwest::Client,
    router: SocketAddr,
    url: &str,
    fixture: Fixture,
    v: u32,
) -> (Option<Instant>, u64) {
    let deadline = Instant::now() + DEPLOY_TIMEOUT;
    let mut not_ok = 0;
    while Instant::now() < deadline {
        match get(http, router, url).await {
            Ok((200, body)) if fixture.serves(&body, v) => return (Some(Instant::now()), not_ok),
            Ok((200, _)) => {}
            _ => not_ok += 1,
        }
        tokio::time::sleep(POLL).await;
    }
    (None, not_ok)
}

async fn service(client: &Client, name: &str) -> Value {
    tool_ok(call_tool(client, "get_service", json!({ "name": name, "deploy_log_lines": 0 })).await)
}

/// The final status of every deployment get_service has shown, by deployment (it lists only the
/// latest few, so it is read after each deployment).
#[derive(Default)]
struct Outcomes(BTreeMap<String, BTreeMap<String, String>>);

impl Outcomes {
    async fn record(&mut self, client: &Client, name: &str) -> Value {
        let s = service(client, name).await;
        let seen = self.0.entry(name.to_owned()).or_default();
        for d in s["deployments"].as_array().into_iter().flatten() {
            let id = d["deployment_id"].as_str().unwrap_or_default().to_owned();
            seen.insert(id, d["status"].as_str().unwrap_or_default().to_owned());
        }
        s
    }

    /// Waits (bounded) until the latest deployment of `name` is live or failed, then records.
    async fn settle(&mut self, client: &Client, name: &str) {
        let deadline = Instant::now() + DEPLOY_TIMEOUT;
        loop {
            let s = self.record(client, name).await;
            let latest = s["deployments"][0]["status"].as_str().unwrap_or_default();
            if latest == "live" || latest == "failed" || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What every measurement uses.
struct Bench {
    client: Client,
    /// The client polling after create_service (pushes poll with a client of their own).
    http: reqwest::Client,
    rtr: SocketAddr,
    outcomes: Outcomes,
}

/// The latencies of one measurement; `None` when the iteration timed out.
struct Row {
    fixture: &'static str,
    what: &'static str,
    samples: Vec<Option<Duration>>,
    /// Answers other than a 200 seen by the poller while switching to a new version.
    not_ok: Option<u64>,
}

/// create_service → the first 200 with the fixture's content, a fresh repo and service each time.
async fn create_to_live(b: &mut Bench, fixture: Fixture, n: u32) -> (Row, Option<(String, Pushed)>) {
    let (client, http, rtr) = (&b.client, &b.http, b.rtr);
    let mut samples = Vec::new();
    let mut first = None;
    for i in 1..=n {
        let name = format!("{}{i}", fixture.prefix);
        let code = Pushed::new(client, &name, fixture.name).await;
        let t0 = Instant::now();
        let created = tool_ok(call_tool(client, "create_service", json!({ "repo": name, "name": name })).await);
        let url = created["url"].as_str().expect("the service URL").to_owned();
        let (served, _) = first_served(http, rtr, &url, fixture, 1).await;
        let sample = served.map(|t| t - t0);
        if sample.is_none() {
            eprintln!("{name}: not served within {DEPLOY_TIMEOUT:?}: {}", service(client, &name).await);
        }
        samples.push(sample);
        b.outcomes.settle(client, &name).await;
        if i == 1 {
            first = Some((url, code));
        }
    }
    (Row { fixture: fixture.name, what: "create_service → first 200", samples, not_ok: None }, first)
}

/// git push → the new content served, `n` times on one live service.
async fn push_to_live(b: &mut Bench, fixture: Fixture, name: &str, url: &str, code: &Pushed, n: u32) -> Row {
    let (client, rtr) = (&b.client, b.rtr);
    let mut samples = Vec::new();
    let mut not_ok_total = 0;
    for k in 0..n {
        let v = k + 2;
        fixture.write_version(&code.dir.0, v);
        git(&code.dir.0, &["commit", "-q", "-am", &format!("v{v}")]).unwrap();
        // A client of its own polls from before the push until the new version answers.
        let poller = {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            let url = url.to_owned();
            tokio::spawn(async move { first_served(&http, rtr, &url, fixture, v).await })
        };
        let dir = code.dir.0.clone();
        let t0 = Instant::now();
        tokio::task::spawn_blocking(move || git(&dir, &["push", "-q", "deploy", "HEAD:main"]))
            .await
            .unwrap()
            .expect("git push");
        let (served, not_ok) = poller.await.unwrap();
        not_ok_total += not_ok;
        let sample = served.map(|t| t - t0);
        if sample.is_none() {
            eprintln!("{name}: v{v} not served within {DEPLOY_TIMEOUT:?}: {}", service(client, name).await);
        }
        samples.push(sample);
        b.outcomes.settle(client, name).await;
    }
    Row { fixture: fixture.name, what: "git push → new content", samples, not_ok: Some(not_ok_total) }
}

/// A key of an account whose limits fit every service of the run.
async fn bench_key(p: &TestPlatform, services: u32) -> String {
    let commands = p.commands();
    let limits = events::Limits { max_services: services + 10, max_repos: services + 10, ..events::Limits::default() };
    let email = format!("{}@bench.test", unique("deploy"));
    let user = gateway::accounts::ensure_account(&commands, &email, limits).await.expect("account");
    let issued = gateway::accounts::create_api_key(&commands, user, "bench", 4).await.expect("key");
    let store = p.adapters.store.clone();
    let prefix = issued.key.prefix.clone();
    eventually(Duration::from_secs(10), "the key in the read model", || {
        let (store, prefix) = (store.clone(), prefix.clone());
        async move { store.api_key_by_prefix(&prefix).await.ok().flatten() }
    })
    .await;
    issued.key.plaintext
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<8} {:<28} {:>3} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "fixture", "measurement (ms)", "n", "p50", "p95", "min", "max", "timeouts", "non-200"
    );
    for r in rows {
        let mut ok: Vec<Duration> = r.samples.iter().flatten().copied().collect();
        ok.sort();
        let timeouts = r.samples.len() - ok.len();
        println!(
            "{:<8} {:<28} {:>3} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            r.fixture,
            r.what,
            ok.len(),
            ms(percentile(&ok, 0.5)),
            ms(percentile(&ok, 0.95)),
            ms(ok.first().copied().unwrap_or_default()),
            ms(ok.last().copied().unwrap_or_default()),
            timeouts,
            r.not_ok.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
        );
    }
    for r in rows {
        let all: Vec<String> = r.samples.iter().map(|s| s.map(ms).unwrap_or_else(|| "timeout".into())).collect();
        println!("  {} / {}: {}", r.fixture, r.what, all.join(", "));
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: u32 = std::env::var("DEPLOY_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(10).max(1);
    println!(
        "deploy-mcp deploy benchmarks ({} cores, N = {n}, router polled every {} ms)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        POLL.as_millis()
    );
    let mut p = TestPlatform::start(Components::ALL).await;
    let key = bench_key(&p, n * Fixture::ALL.len() as u32).await;
    let client = mcp_client(&p.mcp_url(), &key).await.expect("an MCP client");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut b = Bench { client, http, rtr: router(&p), outcomes: Outcomes::default() };
    let mut rows = Vec::new();
    let mut names = Vec::new();
    for fixture in Fixture::ALL {
        let (row, first) = create_to_live(&mut b, fixture, n).await;
        println!("{} / {}: done", fixture.name, row.what);
        rows.push(row);
        names.extend((1..=n).map(|i| format!("{}{i}", fixture.prefix)));
        let name = format!("{}1", fixture.prefix);
        let live = service(&b.client, &name).await["status"] == "live";
        match first {
            Some((url, code)) if live => {
                let row = push_to_live(&mut b, fixture, &name, &url, &code, n).await;
                println!("{} / {}: done", fixture.name, row.what);
                rows.push(row);
            }
            _ => eprintln!("{name} is not live: no push measurement for {}", fixture.name),
        }
    }
    print_table(&rows);

    println!();
    println!("deployments ended failed, per service (per get_service):");
    let mut line = Vec::new();
    for name in &names {
        b.outcomes.record(&b.client, name).await;
        let seen = b.outcomes.0.get(name.as_str()).cloned().unwrap_or_default();
        let failed = seen.values().filter(|s| *s == "failed").count();
        line.push(format!("{name}: {failed}/{}", seen.len()));
    }
    println!("  {}", line.join(", "));
    let total: usize = b.outcomes.0.values().map(|m| m.values().filter(|s| *s == "failed").count()).sum();
    println!("  total failed: {total}");

    for name in &names {
        tool_ok(call_tool(&b.client, "delete_service", json!({ "name": name })).await);
    }
    drop(b);
    p.stop().await;
}
