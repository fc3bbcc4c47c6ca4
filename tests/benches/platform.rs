//! Platform benchmarks on real PostgreSQL and NATS. Prints its figures; asserts nothing.
//!
//! `cargo bench -p deploy-mcp-tests` (set DEPLOY_MCP_TEST_DATABASE_URL / DEPLOY_MCP_TEST_NATS_URL
//! as scripts/test does, or run `scripts/test --setup-only` first).
//!
//! 1. authenticated MCP `whoami` calls per second and latency, over HTTP with keep-alive;
//! 2. the auth work per request once a key was verified (in-process, no HTTP);
//! 3. event append → read model visible latency at 1,000 events/s;
//! 4. replay rate of the read models from 100,000 events.

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use deploy_mcp::Components;
use deploy_mcp_tests::TestPlatform;
use domain::AccountCommand;
use events::{AccountEvent, ApiKeyId, Envelope, Limits, UserId};
use tokio::sync::Mutex;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_default();
    let run = |name: &str| filter.is_empty() || name.contains(&filter);
    println!(
        "deploy-mcp platform benchmarks ({} cores)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    if run("whoami") {
        whoami_throughput().await;
    }
    if run("auth") {
        auth_cost().await;
    }
    if run("projection") {
        projection_latency().await;
    }
    if run("replay") {
        replay_rate().await;
    }
    if run("webhook") {
        webhook_throughput().await;
    }
}

/// GitHub push deliveries accepted per second: signature check over the raw body, delivery
/// dedup, repo lookup and the JetStream ack of the `PushReceived`. Every delivery is a new push.
async fn webhook_throughput() {
    const SECRET: &str = "bench-webhook-secret";
    let key_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/github/tests/fixtures/test-app.pem");
    let fake =
        github::fake::FakeGithub::start(include_str!("../../crates/github/tests/fixtures/test-app.pub.pem")).await;
    let p = TestPlatform::start_with(
        &deploy_mcp_tests::shared_nats_url().await,
        Components { gateway: true, relay: true, projector: true, ..Components::NONE },
        |s| {
            s.github_app_id = Some(github::fake::FakeGithub::APP_ID);
            s.github_app_slug = Some("bench".into());
            s.github_private_key_file = Some(key_file.into());
            s.github_webhook_secret = Some(SECRET.into());
            s.github_api_url = fake.url();
        },
    )
    .await;
    let commands = p.commands();
    let owner = gateway::accounts::ensure_account(&commands, "hooks@example.test", Limits::default()).await.unwrap();
    let repo = github::GithubRepo {
        id: 991,
        full_name: "acme/api".into(),
        clone_url: "https://github.com/acme/api.git".into(),
        default_branch: "main".into(),
        private: true,
    };
    assert!(gateway::github_app::claim_repo(&commands, owner, repo.id, events::RepoId::new()).await.unwrap());

    let url = format!("{}/webhooks/github", p.base_url);
    let client = reqwest::Client::builder().pool_max_idle_per_host(128).build().unwrap();
    // 32 connections measured best here (64: more queueing; 16: idle cores).
    let concurrency = 32;
    let per_worker = 4_000;
    let duration = Duration::from_secs(5);
    // Payloads are made and signed before the clock starts: the figure is the server's.
    let placeholder = "f".repeat(40);
    let template = String::from_utf8(github::fake::push_payload(
        &repo,
        "refs/heads/main",
        &"0".repeat(40),
        &placeholder,
        "octocat",
        Some(7),
    ))
    .unwrap();
    let mut work: Vec<Vec<(String, bytes::Bytes, String)>> = Vec::new();
    for worker in 0..concurrency {
        work.push(
            (0..per_worker)
                .map(|i| {
                    let body = template.replace(&placeholder, &format!("{worker:08x}{i:032x}"));
                    let signature = github::sign(SECRET.as_bytes(), body.as_bytes());
                    (format!("{worker}-{i}"), bytes::Bytes::from(body), signature)
                })
                .collect(),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for deliveries in work {
        let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            for (delivery, body, signature) in deliveries {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let t = Instant::now();
                let res = client
                    .post(&url)
                    .header("x-github-event", "push")
                    .header("x-github-delivery", delivery)
                    .header("x-hub-signature-256", signature)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let joined = futures::future::join_all(tasks);
    tokio::pin!(joined);
    let results = tokio::select! {
        r = &mut joined => r,
        _ = tokio::time::sleep(duration) => {
            stop.store(true, Ordering::Relaxed);
            joined.await
        }
    };
    let elapsed = started.elapsed();
    let mut all = Vec::new();
    let mut errors = 0;
    for r in results {
        let (l, e) = r.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort();
    let stored = p.adapters.bus.last_sequence("INTENTS").await.unwrap();
    println!(
        "github push webhooks: {:.0} deliveries/s accepted ({} deliveries, {errors} errors, {concurrency} connections, {} intents stored); p50 {}, p99 {}",
        all.len() as f64 / elapsed.as_secs_f64(),
        all.len(),
        stored,
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
    );
}

async fn whoami_throughput() {
    let p = TestPlatform::start(Components { gateway: true, relay: true, projector: true, ..Components::NONE }).await;
    let (key, _) = p.new_key("bench@example.test").await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let url = p.mcp_url();
    let send = {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        move || {
            client
                .post(&url)
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-06-18")
                .body(body)
                .send()
        }
    };
    let first = send().await.unwrap();
    assert!(first.status().is_success(), "whoami failed: {}", first.status());
    let text = first.text().await.unwrap();
    assert!(text.contains("bench@example.test"), "{text}");

    let concurrency = 32;
    let duration = Duration::from_secs(5);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for _ in 0..concurrency {
        let (send, stop) = (send.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    all.sort();
    println!(
        "whoami over MCP/HTTP: {:.0} calls/s ({} calls, {errors} errors, {concurrency} connections, {:.1} s); p50 {}, p99 {}",
        all.len() as f64 / elapsed.as_secs_f64(),
        all.len(),
        elapsed.as_secs_f64(),
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
    );
}

async fn auth_cost() {
    let p = TestPlatform::start(Components { relay: true, projector: true, ..Components::NONE }).await;
    let (key, _) = p.new_key("auth-bench@example.test").await;
    let auth = gateway::auth::KeyAuth::new(p.adapters.store.clone(), Duration::from_millis(500));
    let header = format!("Bearer {key}");
    let t = Instant::now();
    auth.authenticate(Some(&header)).await.unwrap();
    let first = t.elapsed();
    let n = 200_000u32;
    let t = Instant::now();
    for _ in 0..n {
        auth.authenticate(Some(&header)).await.unwrap();
    }
    let per = t.elapsed() / n;
    println!(
        "auth per request once verified: {:.2} µs (first verification with bcrypt cost 4: {}; includes one re-check of revocation every 500 ms)",
        per.as_secs_f64() * 1e6,
        ms(first)
    );
}

async fn projection_latency() {
    let p = TestPlatform::start(Components { relay: true, projector: true, ..Components::NONE }).await;
    let commands = Arc::new(p.commands());
    let store = p.adapters.store.clone();
    let rate = 1_000u32;
    let seconds = 5u32;
    let pending: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));

    // When each event reached JetStream (a core tail of the stream's subjects).
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let tail = {
        let arrived = arrived.clone();
        let mut tail = Box::pin(p.adapters.bus.tail_events().await.unwrap());
        tokio::spawn(async move {
            use futures::StreamExt as _;
            while let Some(payload) = tail.next().await {
                if let Ok(env) = serde_json::from_slice::<Envelope>(&payload) {
                    arrived.lock().await.insert(env.id.aggregate_id, Instant::now());
                }
            }
        })
    };
    let committed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();

    // Watcher: polls the checkpoints written in the same transaction as the rows.
    let watcher = {
        let (pending, latencies, done, store) = (pending.clone(), latencies.clone(), done.clone(), store.clone());
        tokio::spawn(async move {
            loop {
                let ids: Vec<String> = pending.lock().await.keys().cloned().collect();
                if ids.is_empty() && done.load(Ordering::Relaxed) {
                    break;
                }
                if !ids.is_empty() {
                    let seen = store.checkpointed(&ids).await.unwrap();
                    let now = Instant::now();
                    let mut pending = pending.lock().await;
                    let mut lat = latencies.lock().await;
                    for agg in seen {
                        if let Some(t0) = pending.remove(&agg) {
                            lat.push(now - t0);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut commits = Vec::new();
    let started = Instant::now();
    for _ in 0..rate * seconds {
        ticker.tick().await;
        let (commands, pending, committed) = (commands.clone(), pending.clone(), committed.clone());
        commits.push(tokio::spawn(async move {
            let user = UserId::new();
            let id = user.to_string();
            let cmd = AccountCommand::Open {
                user_id: user,
                email: format!("{id}@bench.test").to_lowercase(),
                limits: Limits::default(),
                now: Utc::now(),
            };
            commands.accounts.execute(&id, cmd).await.unwrap();
            // Latency counts from the commit of the append.
            let now = Instant::now();
            committed.lock().await.insert(id.clone(), now);
            pending.lock().await.insert(id, now);
        }));
    }
    for c in commits {
        c.await.unwrap();
    }
    let appended_in = started.elapsed();
    done.store(true, Ordering::Relaxed);
    if tokio::time::timeout(Duration::from_secs(60), watcher).await.is_err() {
        let left = pending.lock().await.len();
        let outbox = store.outbox_len().await.unwrap_or(-1);
        let stream = p.adapters.bus.last_sequence("EVENTS").await.unwrap_or(0);
        panic!("{left} events still invisible after 60 s (outbox {outbox}, stream {stream})");
    }
    tail.abort();
    let mut lat = latencies.lock().await.clone();
    lat.sort();
    let (committed, arrived) = (committed.lock().await, arrived.lock().await);
    let mut relay: Vec<Duration> =
        committed.iter().filter_map(|(id, c)| arrived.get(id).map(|a| a.saturating_duration_since(*c))).collect();
    relay.sort();
    println!(
        "  of which commit → in JetStream (relay): p50 {}, p99 {}",
        ms(percentile(&relay, 0.5)),
        ms(percentile(&relay, 0.99))
    );
    println!(
        "append → read model visible at {:.0} events/s ({} events): p50 {}, p99 {}, max {} (poll granularity ~1 ms)",
        lat.len() as f64 / appended_in.as_secs_f64(),
        lat.len(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(*lat.last().unwrap_or(&Duration::ZERO)),
    );
}

async fn replay_rate() {
    let p = TestPlatform::start(Components::NONE).await;
    let n_accounts = 50_000;
    let now = Utc::now();
    let t = Instant::now();
    let mut batch = Vec::with_capacity(2_000);
    for i in 0..n_accounts {
        let user = UserId::new();
        let agg = user.to_string();
        batch.push(Envelope::new(
            &agg,
            1,
            now,
            &AccountEvent::AccountOpened {
                user_id: user,
                email: format!("u{i}@replay.test"),
                limits: Limits::default(),
                opened_at: now,
            },
        ));
        batch.push(Envelope::new(
            &agg,
            2,
            now,
            &AccountEvent::ApiKeyCreated {
                key_id: ApiKeyId::new(),
                prefix: format!("dk_live_{i:08}"),
                hash: "$2b$04$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZa".into(),
                label: "bench".into(),
                created_at: now,
                resource: None,
            },
        ));
        if batch.len() >= 2_000 {
            p.adapters.bus.publish_events(&batch).await.unwrap();
            batch.clear();
        }
    }
    p.adapters.bus.publish_events(&batch).await.unwrap();
    let published = t.elapsed();
    let report = projector::rebuild(&p.adapters.store, &p.adapters.bus, "rm_bench", false).await.unwrap();
    println!(
        "replay: {} events rebuilt into read models in {:.2} s = {:.0} events/s (read+fold {:.2} s, write {:.2} s; publishing them took {:.2} s)",
        report.events,
        report.elapsed.as_secs_f64(),
        report.events as f64 / report.elapsed.as_secs_f64(),
        report.fold.as_secs_f64(),
        report.write.as_secs_f64(),
        published.as_secs_f64(),
    );
}
