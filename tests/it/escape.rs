//! The escape suite: a hostile tenant tries, from its build and from its running app, to read the
//! host, write outside its directories, take the disk, the process table, the memory and the logs,
//! and reach the host's services, private ranges and the metadata address. Every attempt must fail
//! while a neighbouring tenant's app keeps answering.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deploy_mcp::Components;
use deploy_mcp_tests::{
    Client, Pushed, TestPlatform, call_tool, get_service, get_via_router, mcp_client, router, tool_ok, unique,
    wait_latest,
};
use serde_json::{Value, json};

const LIVE: Duration = Duration::from_secs(180);
/// The hostile app's disk and the builds' (small, so that filling them is quick).
const APP_DISK_MB: u32 = 64;
const BUILD_DISK_MB: u32 = 256;

async fn account(p: &TestPlatform) -> Client {
    let (key, _) = p.new_key(&format!("{}@example.test", unique("tenant"))).await;
    mcp_client(&p.mcp_url(), &key).await.unwrap()
}

async fn get_json(http: &reqwest::Client, p: &TestPlatform, url: &str, path: &str) -> Value {
    let (status, body) = get_via_router(http, router(p), url, path).await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Every attempt of a probe report failed.
fn all_refused(report: &Value, what: &str) {
    let attempts = report["attempts"].as_object().unwrap_or_else(|| panic!("{what}: {report}"));
    assert!(attempts.len() >= 20, "{what}: too few attempts: {report}");
    let escaped: Vec<String> =
        attempts.iter().filter(|(_, o)| o["ok"] == true).map(|(k, o)| format!("{k}: {}", o["detail"])).collect();
    assert!(escaped.is_empty(), "{what}: escaped: {escaped:#?}");
    assert_eq!(report["uid"], 65534, "{what}: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_tenant_reaches_nothing_and_its_neighbour_keeps_answering() {
    let mut p = TestPlatform::start_with(&deploy_mcp_tests::shared_nats_url().await, Components::ALL, |s| {
        s.health_timeout_secs = 60;
        s.app_disk_mb = APP_DISK_MB;
        s.build_disk_mb = BUILD_DISK_MB;
    })
    .await;
    let neighbour = account(&p).await;
    let hostile = account(&p).await;

    Pushed::new(&neighbour, "shop", "python").await;
    let shop = tool_ok(call_tool(&neighbour, "create_service", json!({ "repo": "shop", "name": "shop" })).await);
    let shop_url = shop["url"].as_str().unwrap().to_owned();

    let secret_keys = p.settings.data_dir.join("secret-keys");
    let nats_port = p.settings.nats_url.rsplit(':').next().unwrap().to_owned();
    let api_port = p.base_url.rsplit(':').next().unwrap().to_owned();
    let router_port = router(&p).port().to_string();
    let ports = ["5432", "4222", &nats_port, "15353", "18081", &api_port, &router_port, "22"].join(",");
    let env = json!({
        "PROBE_READ": format!("{},/etc/hostname,/proc/1/root/etc/hostname", secret_keys.display()),
        "PROBE_PORTS": ports,
    });
    Pushed::new(&hostile, "evil", "hostile").await;
    let evil = tool_ok(
        call_tool(
            &hostile,
            "create_service",
            json!({ "repo": "evil", "name": "evil", "build_command": "python3 probe.py build", "env_vars": env }),
        )
        .await,
    );
    let evil_url = evil["url"].as_str().unwrap().to_owned();
    // A build that fills its disk, and a static site whose output is a link to the host's root.
    Pushed::new(&hostile, "filler", "python").await;
    let fill = "dd if=/dev/zero of=big bs=1M count=1024";
    tool_ok(
        call_tool(&hostile, "create_service", json!({ "repo": "filler", "name": "filler", "build_command": fill }))
            .await,
    );
    // (A checkout without an index.html of its own, so the site is what the build writes.)
    Pushed::new(&hostile, "rootsite", "python").await;
    let args =
        json!({ "repo": "rootsite", "name": "rootsite", "build_pack": "static", "build_command": "ln -s / dist" });
    tool_ok(call_tool(&hostile, "create_service", args).await);

    let live = wait_latest(&neighbour, "shop", "live", LIVE).await;
    assert_eq!(live["status"], "live", "{live}");
    let live = wait_latest(&hostile, "evil", "live", LIVE).await;
    assert_eq!(live["status"], "live", "{}", live["deployments"][0]);

    // The neighbour is watched from now on: every answer must come, and quickly.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (http, stop, url, rtr) = (http.clone(), stop.clone(), shop_url.clone(), router(&p));
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                match get_via_router(&http, rtr, &url, "/").await {
                    Ok((200, _)) => latencies.push(t0.elapsed()),
                    other => failures.push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (latencies, failures)
        })
    };

    // From the build: the same attempts, kept by the build and served by the app.
    all_refused(&get_json(&http, &p, &evil_url, "/build-probe").await, "build");
    // From the running app.
    all_refused(&get_json(&http, &p, &evil_url, "/probe").await, "app");
    // The disk: writing stops at the app's limit, not the host's.
    let filled = get_json(&http, &p, &evil_url, "/fill").await;
    assert!(filled["written_mb"].as_u64().unwrap() < u64::from(APP_DISK_MB), "{filled}");
    assert!(filled["error"].as_str().unwrap().contains("errno 28"), "ENOSPC expected: {filled}");
    // The process table: a fork bomb stops at the sandbox's pids limit.
    let forked = get_json(&http, &p, &evil_url, "/fork").await;
    assert!(forked["forked"].as_u64().unwrap() < 256, "{forked}");
    // Memory: a child asking for more than the app's limit is killed, the app stays up.
    let memory = get_json(&http, &p, &evil_url, "/memory?mb=2048").await;
    assert_eq!(memory["exit"], -9, "{memory}");
    // The logs: a flood is cut to the rate limit and says so; the neighbour's log is intact.
    get_json(&http, &p, &evil_url, "/flood?lines=200000").await;
    let flooded = deploy_mcp_tests::eventually(Duration::from_secs(30), "the dropped-lines notice", || async {
        let s = tool_ok(
            call_tool(
                &hostile,
                "get_service",
                json!({ "name": "evil", "runtime_log_lines": 200, "deploy_log_lines": 0 }),
            )
            .await,
        );
        s["runtime_log"]["lines"].to_string().contains("dropped").then_some(s)
    })
    .await;
    assert!(flooded["runtime_log"]["total_lines"].as_u64().unwrap() <= 1000, "{}", flooded["runtime_log"]);
    let t0 = Instant::now();
    let shop_logs = tool_ok(
        call_tool(
            &neighbour,
            "get_service",
            json!({ "name": "shop", "runtime_log_lines": 50, "deploy_log_lines": 50 }),
        )
        .await,
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "the neighbour's logs took {:?}", t0.elapsed());
    assert!(shop_logs["build_log"]["lines"].to_string().contains("plan: python"), "{shop_logs}");

    // The build that filled its disk failed typed; the static site that pointed at / did not build.
    let filler = wait_latest(&hostile, "filler", "failed", LIVE).await;
    assert_eq!(filler["deployments"][0]["failure"]["kind"], "disk_quota_exceeded", "{filler}");
    assert_eq!(filler["deployments"][0]["failure"]["limit_mb"], BUILD_DISK_MB);
    let rootsite = wait_latest(&hostile, "rootsite", "failed", LIVE).await;
    let failure = rootsite["deployments"][0]["failure"].to_string();
    assert!(failure.contains("symlink"), "{failure}");

    stop.store(true, Ordering::Relaxed);
    let (mut latencies, failures) = watcher.await.unwrap();
    assert!(failures.is_empty(), "the neighbour failed {} times: {failures:?}", failures.len());
    assert!(latencies.len() > 20, "too few samples: {}", latencies.len());
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    // Its normal latency is milliseconds; a second is far beyond it, and far below a starved app.
    assert!(p99 < Duration::from_secs(1), "the neighbour's p99 was {p99:?}");
    let host_name = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let report = get_service(&hostile, "evil", 0).await;
    assert!(host_name.is_empty() || !report.to_string().contains(host_name.trim()), "the host's name leaked");
    p.stop().await;
}
