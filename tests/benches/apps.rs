//! Build and deploy times of the real-app corpus (`tests/fixtures/apps`), end to end through MCP,
//! git and the router, with packages from the set-up's local registries. Prints its figures;
//! asserts nothing about timings.
//!
//! `cargo bench -p deploy-mcp-tests --bench apps` after `eval "$(scripts/test --setup-only)"`
//! (root: sandboxes). `BENCH_APPS=flask,express` picks apps; `DEPLOY_BENCH_N` repeats the
//! rebuild measurement (3).
//!
//! Per app, as a fresh account (so its package caches and dependency layers start empty):
//! 1. cold build: create_service → the deployment is built (install from the local registries,
//!    build); toolchains come from the shared toolchain cache once downloaded (the log line
//!    says which);
//! 2. create → live: create_service → the app answers its content through the router;
//! 3. cached rebuild: a push changing a file that is not a dependency input → its build is done
//!    (the dependency layer is restored, nothing installed);
//! 4. push → live: the same push → the new commit live (rebuild + restart).

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use deploy_mcp::Components;
use deploy_mcp_tests::{
    Client, Pushed, TestPlatform, call_tool, get_service, get_via_router, mcp_client, router, tool_ok, unique,
};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(900);
const POLL: Duration = Duration::from_millis(50);

/// fixture, start command its README gives, what `/` answers.
const APPS: &[(&str, Option<&str>, &str)] = &[
    ("flask", Some("gunicorn app:app"), "flask fixture v1"),
    ("fastapi", Some("uvicorn main:app --host 0.0.0.0 --port $PORT"), "fastapi fixture v1"),
    ("django", None, "django fixture v1"),
    ("express", None, "express fixture v1"),
    ("vite", None, "vite fixture v1"),
    ("ssr", None, "ssr fixture v1"),
    ("go", None, "go fixture v1"),
    ("go-pinned", None, "go-pinned fixture v1"),
    ("rust", None, "rust fixture v1"),
    ("node-pinned", None, "node-pinned fixture v1"),
];

fn secs(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2}", d.as_secs_f64())).unwrap_or_else(|| "timeout".into())
}

/// Polls `get_service` until `done` says so (or the timeout): the time it took.
async fn until(client: &Client, name: &str, t0: Instant, done: impl Fn(&Value) -> bool) -> Option<Duration> {
    while t0.elapsed() < TIMEOUT {
        let s = get_service(client, name, 0).await;
        if done(&s) {
            return Some(t0.elapsed());
        }
        if s["deployments"][0]["status"] == "failed" {
            eprintln!("{name} failed: {:#}", s["deployments"][0]);
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
    None
}

fn built(s: &Value, commit: Option<&str>) -> bool {
    let latest = &s["deployments"][0];
    commit.is_none_or(|c| latest["commit"] == c)
        && matches!(latest["status"].as_str(), Some("built" | "starting" | "live" | "replaced"))
}

struct Figures {
    app: &'static str,
    cold_build: Option<Duration>,
    create_to_live: Option<Duration>,
    rebuilds: Vec<(Option<Duration>, Option<Duration>)>,
    toolchains: Vec<String>,
}

async fn bench_app(p: &TestPlatform, app: &'static str, start: Option<&str>, answers: &str, n: u32) -> Figures {
    let (key, _) = p.new_key(&format!("{}@bench.test", unique("apps"))).await;
    let client = mcp_client(&p.mcp_url(), &key).await.expect("an MCP client");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let code = Pushed::new(&client, app, app).await;
    let mut args = json!({ "repo": app, "name": app });
    if let Some(start) = start {
        args["start_command"] = json!(start);
    }
    let t0 = Instant::now();
    let created = tool_ok(call_tool(&client, "create_service", args).await);
    let url = created["url"].as_str().unwrap().to_owned();
    let cold_build = until(&client, app, t0, |s| built(s, None)).await;
    let mut create_to_live = None;
    while cold_build.is_some() && t0.elapsed() < TIMEOUT {
        if let Ok((200, body)) = get_via_router(&http, router(p), &url, "/").await
            && body.contains(answers)
        {
            create_to_live = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let log = get_service(&client, app, 200).await;
    let toolchains = log["build_log"]["lines"]
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).filter(|l| l.contains("toolchain: ")).map(str::to_owned).collect())
        .unwrap_or_default();

    let mut rebuilds = Vec::new();
    for i in 0..if create_to_live.is_some() { n } else { 0 } {
        // A file no dependency layer depends on.
        let sha = code.write_and_push("BENCH.md", &format!("rebuild {i}\n"));
        let t1 = Instant::now();
        let short = &sha[..12];
        let build = until(&client, app, t1, |s| built(s, Some(short))).await;
        let live = until(&client, app, t1, |s| s["live"]["commit"] == short).await;
        rebuilds.push((build, live));
    }
    tool_ok(call_tool(&client, "delete_service", json!({ "name": app })).await);
    Figures { app, cold_build, create_to_live, rebuilds, toolchains }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: u32 = std::env::var("DEPLOY_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let only: Option<Vec<String>> =
        std::env::var("BENCH_APPS").ok().map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    println!(
        "deploy-mcp real-app benchmarks ({} cores, rebuilds N = {n}, packages from the local registries)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let nats = deploy_mcp_tests::shared_nats_url().await;
    let mut p = TestPlatform::start_with(&nats, Components::ALL, |s| s.health_timeout_secs = 60).await;
    let mut all = Vec::new();
    for (app, start, answers) in APPS {
        if only.as_ref().is_some_and(|o| !o.iter().any(|a| a == app)) {
            continue;
        }
        let f = bench_app(&p, app, *start, answers, n).await;
        println!("{app}: done");
        all.push(f);
    }
    println!();
    println!(
        "{:<12} {:>10} {:>14} {:>16} {:>14}",
        "app (s)", "cold build", "create→live", "cached rebuild", "push→live"
    );
    for f in &all {
        let mut builds: Vec<Duration> = f.rebuilds.iter().filter_map(|r| r.0).collect();
        let mut lives: Vec<Duration> = f.rebuilds.iter().filter_map(|r| r.1).collect();
        builds.sort();
        lives.sort();
        let median = |v: &[Duration]| v.get(v.len() / 2).copied();
        println!(
            "{:<12} {:>10} {:>14} {:>16} {:>14}",
            f.app,
            secs(f.cold_build),
            secs(f.create_to_live),
            secs(median(&builds)),
            secs(median(&lives))
        );
    }
    println!();
    for f in &all {
        let rebuilds: Vec<String> = f.rebuilds.iter().map(|(b, l)| format!("{}/{}", secs(*b), secs(*l))).collect();
        println!("  {}: rebuild/live {}; {}", f.app, rebuilds.join(", "), f.toolchains.join("; "));
    }
    p.stop().await;
}
