//! Build and run end to end, driven only through MCP and git: fixtures from
//! `tests/fixtures/apps` are pushed, deployed in sandboxes and reached through the router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use deploy_mcp::Components;
use deploy_mcp_tests::{
    Client, Pushed, Scratch, TestPlatform, call_tool, eventually, mcp_client, router, tool_err, tool_ok, wait_latest,
};
use rmcp::RoleClient;
use serde_json::{Value, json};

async fn get(http: &reqwest::Client, router: SocketAddr, url: &str, path: &str) -> reqwest::Result<(u16, String)> {
    deploy_mcp_tests::get_via_router(http, router, url, path).await
}

async fn service(client: &Client, name: &str) -> Value {
    deploy_mcp_tests::get_service(client, name, 50).await
}

async fn platform() -> (TestPlatform, Client) {
    let (p, client, _) = platform_with_key().await;
    (p, client)
}

async fn platform_with_key() -> (TestPlatform, Client, String) {
    let p = TestPlatform::start(Components::ALL).await;
    let (key, _) = p.new_key(&format!("{}@example.test", deploy_mcp_tests::unique("dev"))).await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    (p, client, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_goes_live_redeploys_on_push_without_a_failed_request_and_is_deleted() {
    let (mut p, client) = platform().await;
    let code = Pushed::new(&client, "shop", "python").await;
    let created = tool_ok(
        call_tool(
            &client,
            "create_service",
            json!({ "repo": "shop", "name": "shop", "env_vars": { "GREETING": "hi there" } }),
        )
        .await,
    );
    assert_eq!(created["status"], "deploying", "{created}");
    assert_eq!(created["deployment"]["status"], "queued");
    let url = created["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("http://shop.localhost:"), "{url}");

    let live = wait_latest(&client, "shop", "live", Duration::from_secs(60)).await;
    assert_eq!(live["status"], "live", "{live}");
    assert_eq!(live["env"]["GREETING"], "(hidden: pass include_env true)");
    let http = reqwest::Client::new();
    let rtr = router(&p);
    assert_eq!(get(&http, rtr, &url, "/").await.unwrap(), (200, "python fixture v1".to_owned()));
    assert_eq!(get(&http, rtr, &url, "/env/GREETING").await.unwrap(), (200, "hi there".to_owned()));
    let shown = tool_ok(call_tool(&client, "get_service", json!({ "name": "shop", "include_env": true })).await);
    assert_eq!(shown["env"]["GREETING"], "hi there");
    let logs = live["build_log"]["lines"].as_array().unwrap();
    assert!(logs.iter().any(|l| l.as_str().unwrap().contains("plan: python")), "{logs:?}");

    // A client polls throughout the switch to the next commit: not one request may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let poller = {
        let (stop, ok, failed, url, http) = (stop.clone(), ok.clone(), failed.clone(), url.clone(), http.clone());
        tokio::spawn(async move {
            let mut seen_v2 = false;
            while !stop.load(Ordering::Relaxed) {
                match get(&http, rtr, &url, "/").await {
                    Ok((200, body)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        seen_v2 |= body == "python fixture v2";
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed request during the switch: {other:?}");
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen_v2
        })
    };
    let sha = code.write_and_push("message.txt", "python fixture v2");
    eventually(Duration::from_secs(60), "the new commit to serve", || async {
        let (_, body) = get(&http, rtr, &url, "/").await.ok()?;
        (body == "python fixture v2").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    assert!(poller.await.unwrap());
    assert_eq!(failed.load(Ordering::Relaxed), 0, "{} requests succeeded", ok.load(Ordering::Relaxed));

    // The push announced once more (a retried announcement) is dropped by JetStream within its
    // duplicate window; past it, the service aggregate drops a commit it has a deployment for
    // (`given_deployed_commit_when_same_push_delivered_again_then_nothing` in crates/domain).
    let intents = p.push_intents().await;
    let push = intents.iter().find(|i| i.after == sha).expect("the push was announced").clone();
    let duplicate = p.adapters.bus.publish_intent(&events::Intent::PushReceived(push)).await.unwrap();
    assert!(duplicate, "the same announcement is recognised as a duplicate");
    let s = service(&client, "shop").await;
    let deployments = s["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 2, "{s}");
    assert_eq!(s["live"]["commit"], sha[..12]);
    assert_eq!(deployments[0]["trigger"], "push");
    assert_eq!(deployments[1]["status"], "replaced");

    let listed = tool_ok(call_tool(&client, "list_services", json!({})).await);
    assert_eq!(listed["services"][0]["name"], "shop");
    assert_eq!(listed["services"][0]["status"], "live");

    let deleted = tool_ok(call_tool(&client, "delete_service", json!({ "name": "shop" })).await);
    assert_eq!(deleted["deleted"], true);
    eventually(Duration::from_secs(20), "the URL to answer 404", || async {
        let (status, _) = get(&http, rtr, &url, "/").await.ok()?;
        (status == 404).then_some(())
    })
    .await;
    let again = tool_ok(call_tool(&client, "delete_service", json!({ "name": "shop" })).await);
    assert_eq!(again["deleted"], false);
    let gone = tool_err(call_tool(&client, "get_service", json!({ "name": "shop" })).await);
    assert_eq!(gone["error"], "not_found");
    // The name and URL are free again.
    let recreated = tool_ok(call_tool(&client, "create_service", json!({ "repo": "shop", "name": "shop" })).await);
    assert_eq!(recreated["created"], true);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn static_and_node_apps_are_served_and_a_redeploy_reuses_the_build() {
    let (mut p, client) = platform().await;
    Pushed::new(&client, "site", "static").await;
    Pushed::new(&client, "api", "node").await;
    let site = tool_ok(call_tool(&client, "create_service", json!({ "repo": "site", "name": "site" })).await);
    let api = tool_ok(call_tool(&client, "create_service", json!({ "repo": "api", "name": "api" })).await);
    wait_latest(&client, "site", "live", Duration::from_secs(60)).await;
    wait_latest(&client, "api", "live", Duration::from_secs(60)).await;
    let http = reqwest::Client::new();
    let rtr = router(&p);
    let (status, body) = get(&http, rtr, site["url"].as_str().unwrap(), "/").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("static fixture v1"), "{body}");
    let (status, body) = get(&http, rtr, site["url"].as_str().unwrap(), "/about/").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&http, rtr, api["url"].as_str().unwrap(), "/").await.unwrap();
    assert_eq!((status, body.trim()), (200, "node fixture v1"));

    tool_ok(call_tool(&client, "redeploy_service", json!({ "name": "api" })).await);
    let s = eventually(Duration::from_secs(60), "the redeploy to go live", || async {
        let s = service(&client, "api").await;
        (s["deployments"][0]["status"] == "live" && s["deployments"].as_array().unwrap().len() == 2).then_some(s)
    })
    .await;
    assert_eq!(s["deployments"][0]["cached"], true, "{s}");
    assert_eq!(s["deployments"][0]["trigger"], "redeploy");

    let unknown = get(&http, rtr, "http://nothing.localhost", "/").await.unwrap();
    assert_eq!(unknown.0, 404);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_typed_failure_says_why() {
    let (mut p, client) = platform().await;
    let cases = [
        ("fail-build", json!({}), "build_failed"),
        ("fail-start", json!({}), "start_command_exited"),
        ("wrong-port", json!({}), "port_not_listened"),
        ("health-timeout", json!({}), "health_check_timed_out"),
        ("oom", json!({ "memory": 64 }), "out_of_memory"),
    ];
    for (name, extra, _) in &cases {
        Pushed::new(&client, name, name).await;
        let mut args = json!({ "repo": name, "name": name });
        args.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        tool_ok(call_tool(&client, "create_service", args).await);
    }
    for (name, _, kind) in &cases {
        let s = wait_latest(&client, name, "failed", Duration::from_secs(90)).await;
        let d = &s["deployments"][0];
        assert_eq!(d["failure"]["kind"], *kind, "{name}: {s}");
        assert!(d["hint"].as_str().is_some_and(|h| !h.is_empty()), "{name}: {d}");
        assert_eq!(s["status"], "failed", "{name}: {s}");
        match *kind {
            "build_failed" => {
                assert_eq!(d["failure"]["exit_code"], 3, "{d}");
                let tail = d["failure"]["log_tail"].to_string();
                assert!(tail.contains("missing semicolon"), "{tail}");
            }
            "start_command_exited" => {
                assert_eq!(d["failure"]["exit_code"], 1, "{d}");
                assert!(d["failure"]["log_tail"].to_string().contains("dmcp_fixture_missing_dependency"), "{d}");
            }
            "port_not_listened" => {
                assert_eq!(d["failure"]["expected"], 8080);
                assert_eq!(d["failure"]["listened"], json!([9999]));
            }
            "out_of_memory" => assert_eq!(d["failure"]["limit_mb"], 64),
            _ => {}
        }
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_actionable_errors() {
    let (mut p, client) = platform().await;
    let bad = [
        (json!({ "repo": "nope", "name": "x" }), "not_found"),
        (json!({ "repo": "r", "name": "Bad_Name" }), "invalid_name"),
        (json!({ "repo": "r", "name": "ok", "port": 70000 }), "invalid_argument"),
        (json!({ "repo": "r", "name": "ok", "memory": 10 }), "invalid_argument"),
        (json!({ "repo": "r", "name": "ok", "env_vars": { "1X": "v" } }), "invalid_argument"),
        (json!({ "repo": "r", "name": "ok", "env_vars": { "PORT": "1" } }), "invalid_argument"),
        (json!({ "repo": "r", "name": "ok", "branch": "../x" }), "invalid_argument"),
    ];
    tool_ok(call_tool(&client, "create_repo", json!({ "name": "r" })).await);
    for (args, code) in bad {
        let e = tool_err(call_tool(&client, "create_service", args.clone()).await);
        let got = e["error"].as_str().unwrap();
        assert!(got == code || (code == "invalid_name" && got == "invalid_argument"), "{args}: {e}");
        assert!(e["message"].as_str().unwrap().len() > 20, "{e}");
    }
    // No commit yet: the service waits for the first push.
    let waiting = tool_ok(call_tool(&client, "create_service", json!({ "repo": "r", "name": "later" })).await);
    assert_eq!(waiting["status"], "waiting_for_push");
    let e = tool_err(call_tool(&client, "redeploy_service", json!({ "name": "later" })).await);
    assert!(e["message"].as_str().unwrap().contains("push"), "{e}");
    // Another user's service is "not found", and its URL name is taken.
    let (other_key, _) = p.new_key("other@example.test").await;
    let other = mcp_client(&p.mcp_url(), &other_key).await.unwrap();
    let e = tool_err(call_tool(&other, "get_service", json!({ "name": "later" })).await);
    assert_eq!(e["error"], "not_found");
    let d = tool_ok(call_tool(&other, "delete_service", json!({ "name": "later" })).await);
    assert_eq!(d["deleted"], false, "{d}");
    assert_eq!(service(&client, "later").await["name"], "later");
    tool_ok(call_tool(&other, "create_repo", json!({ "name": "r" })).await);
    let e = tool_err(call_tool(&other, "create_service", json!({ "repo": "r", "name": "later" })).await);
    assert_eq!(e["error"], "name_taken", "{e}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_cannot_reach_the_platform_or_write_outside_its_directory() {
    let (mut p, client) = platform().await;
    Pushed::new(&client, "probe", "probe").await;
    let secret_file = p.settings.data_dir.join("secret-keys");
    assert!(secret_file.exists(), "the platform's key file is the read target");
    let nats_port = p.settings.nats_url.rsplit(':').next().unwrap().to_owned();
    let gateway_port = p.base_url.rsplit(':').next().unwrap().to_owned();
    let env = json!({
        "PROBE_READ": secret_file.display().to_string(),
        "PROBE_TCP": format!("127.0.0.1:{nats_port},127.0.0.1:{gateway_port}"),
    });
    let created = tool_ok(
        call_tool(&client, "create_service", json!({ "repo": "probe", "name": "probe", "env_vars": env })).await,
    );
    wait_latest(&client, "probe", "live", Duration::from_secs(60)).await;
    let (status, body) = get(&reqwest::Client::new(), router(&p), created["url"].as_str().unwrap(), "/").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["uid"], 65534, "{report}");
    assert!(
        report["cap_eff"].as_str().unwrap().trim_start_matches("CapEff:").trim().chars().all(|c| c == '0'),
        "{report}"
    );
    let attempts = report["attempts"].as_object().unwrap();
    assert!(attempts.len() >= 7, "{report}");
    for (what, outcome) in attempts {
        let allowed = what == "write:/tmp/probe-test";
        assert_eq!(outcome["ok"], allowed, "{what}: {outcome}");
    }
    for needle in
        [format!("tcp:127.0.0.1:{nats_port}"), format!("tcp:127.0.0.1:{gateway_port}"), "tcp:127.0.0.1:5432".into()]
    {
        assert!(attempts.contains_key(&needle), "{needle} was probed: {report}");
    }
    // The variables were stored sealed: their values appear nowhere in the event store.
    assert_eq!(p.adapters.store.events_containing(&format!("127.0.0.1:{nats_port},")).await.unwrap(), 0);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_builder_restarted_mid_build_completes_the_deployment_once() {
    let no_builder = Components { builder: false, ..Components::ALL };
    let mut p = TestPlatform::start(no_builder).await;
    let (key, prefix) = p.new_key("restart@example.test").await;
    let owner = p.adapters.store.api_key_by_prefix(&prefix).await.unwrap().unwrap().user_id;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    let only_builder = Components { builder: true, ..Components::NONE };
    let first = deploy_mcp::start(&p.settings, &p.adapters, only_builder, Default::default()).await.unwrap();
    Pushed::new(&client, "slow", "static").await;
    let args = json!({ "repo": "slow", "name": "slow", "build_command": "echo building; sleep 4; echo built" });
    tool_ok(call_tool(&client, "create_service", args).await);
    wait_latest(&client, "slow", "building", Duration::from_secs(30)).await;
    first.stop().await; // the build dies with it, unacknowledged
    let second = deploy_mcp::start(&p.settings, &p.adapters, only_builder, Default::default()).await.unwrap();
    let s = wait_latest(&client, "slow", "live", Duration::from_secs(60)).await;
    assert_eq!(s["deployments"].as_array().unwrap().len(), 1, "{s}");
    let service_id = p.adapters.store.service_named(&owner, "default", "slow").await.unwrap().unwrap().service_id;
    let types = p.adapters.store.event_types(&service_id).await.unwrap();
    let count = |t: &str| types.iter().filter(|x| *x == t).count();
    assert_eq!((count("BuildSucceeded"), count("DeploymentLive"), count("DeploymentFailed")), (1, 1, 0), "{types:?}");
    second.stop().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_app_is_restarted_and_its_state_shown() {
    let (mut p, client) = platform().await;
    Pushed::new(&client, "flaky", "python").await;
    // The app serves for three seconds, then dies (exit 124), again and again.
    let args = json!({ "repo": "flaky", "name": "flaky", "start_command": "timeout 3 python3 main.py" });
    let created = tool_ok(call_tool(&client, "create_service", args).await);
    wait_latest(&client, "flaky", "live", Duration::from_secs(60)).await;
    let s = eventually(Duration::from_secs(30), "a crash and a restart", || async {
        let s = service(&client, "flaky").await;
        (s["live"]["restarts"].as_i64().unwrap_or(0) >= 1 && s["live"]["status"] == "live").then_some(s)
    })
    .await;
    assert_eq!(s["status"], "live", "{s}");
    let log = s["runtime_log"]["lines"].to_string();
    assert!(log.contains("listening on"), "{log}");
    assert!(log.contains("the app exited"), "{log}");
    let (status, _) = get(&reqwest::Client::new(), router(&p), created["url"].as_str().unwrap(), "/").await.unwrap();
    assert_eq!(status, 200, "served again after the restart");
    p.stop().await;
}

/// An MCP client that records the progress notifications it receives.
#[derive(Clone, Default)]
struct Progress(Arc<std::sync::Mutex<Vec<(f64, String)>>>);

impl rmcp::ClientHandler for Progress {
    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _: rmcp::service::NotificationContext<RoleClient>,
    ) {
        self.0.lock().unwrap().push((params.progress, params.message.unwrap_or_default()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_create_reports_each_phase_as_progress() {
    use rmcp::ServiceExt as _;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

    let (mut p, client, key) = platform_with_key().await;
    Pushed::new(&client, "watch", "python").await;
    let progress = Progress::default();
    let config = StreamableHttpClientTransportConfig::with_uri(p.mcp_url()).auth_header(key);
    let watcher = progress.clone().serve(StreamableHttpClientTransport::from_config(config)).await.unwrap();
    let args = json!({ "repo": "watch", "name": "watch", "wait": true });
    let params =
        rmcp::model::CallToolRequestParams::new("create_service").with_arguments(args.as_object().unwrap().clone());
    let done = tool_ok(watcher.call_tool(params).await.unwrap());
    assert_eq!(done["status"], "live", "{done}");
    assert_eq!(done["deployment"]["status"], "live", "{done}");
    // rmcp's client hands each notification to its own task, so arrival order may differ
    // from the order sent: order by the progress value, which the server makes increase.
    let mut seen = progress.0.lock().unwrap().clone();
    seen.sort_by(|a, b| a.0.total_cmp(&b.0));
    let phases: Vec<&str> = seen.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(phases.first(), Some(&"queued"), "{seen:?}");
    assert_eq!(&phases[phases.len() - 2..], ["healthy", "live"], "{seen:?}");
    let order = ["queued", "building", "starting", "healthy", "live"];
    let positions: Vec<usize> = phases.iter().map(|m| order.iter().position(|o| o == m).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "phases in order, each once: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "one progress value per phase: {seen:?}");
    // Without `wait`, the same client gets its answer at once.
    Pushed::new(&client, "fast", "static").await;
    let quick = tool_ok(call_tool(&client, "create_service", json!({ "repo": "fast", "name": "fast" })).await);
    assert_eq!(quick["status"], "deploying");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduler_restarted_mid_start_completes_once_and_restores_live_apps() {
    let no_scheduler = Components { scheduler: false, ..Components::ALL };
    let mut p = TestPlatform::start(no_scheduler).await;
    let (key, prefix) = p.new_key("sched@example.test").await;
    let owner = p.adapters.store.api_key_by_prefix(&prefix).await.unwrap().unwrap().user_id;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    let only_scheduler = Components { scheduler: true, ..Components::NONE };
    let first = deploy_mcp::start(&p.settings, &p.adapters, only_scheduler, Default::default()).await.unwrap();
    Pushed::new(&client, "slowstart", "python").await;
    let args = json!({ "repo": "slowstart", "name": "slowstart", "start_command": "sleep 3; exec python3 main.py" });
    let created = tool_ok(call_tool(&client, "create_service", args).await);
    wait_latest(&client, "slowstart", "starting", Duration::from_secs(30)).await;
    first.stop().await; // the starting app dies with it; the event is not acknowledged
    let second = deploy_mcp::start(&p.settings, &p.adapters, only_scheduler, Default::default()).await.unwrap();
    wait_latest(&client, "slowstart", "live", Duration::from_secs(60)).await;
    let url = created["url"].as_str().unwrap();
    let http = reqwest::Client::new();
    assert_eq!(get(&http, second.router_addr.unwrap(), url, "/").await.unwrap().0, 200);
    let service_id = p.adapters.store.service_named(&owner, "default", "slowstart").await.unwrap().unwrap().service_id;
    let types = p.adapters.store.event_types(&service_id).await.unwrap();
    let count = |t: &str| types.iter().filter(|x| *x == t).count();
    assert_eq!((count("DeploymentLive"), count("DeploymentFailed")), (1, 0), "{types:?}");

    // A later restart brings the live app back without a new deployment.
    second.stop().await;
    let third = deploy_mcp::start(&p.settings, &p.adapters, only_scheduler, Default::default()).await.unwrap();
    eventually(Duration::from_secs(30), "the live app restored", || async {
        let (status, _) = get(&http, third.router_addr.unwrap(), url, "/").await.ok()?;
        (status == 200).then_some(())
    })
    .await;
    assert_eq!(service(&client, "slowstart").await["deployments"].as_array().unwrap().len(), 1);
    third.stop().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dockerfile_is_built_into_an_image_and_run_with_its_own_root() {
    let (mut p, client) = platform().await;
    Pushed::new_with(&client, "img", "dockerfile", |dir| {
        std::fs::copy("/bin/busybox", dir.join("busybox")).expect("a static busybox (apt-get install busybox-static)");
    })
    .await;
    let args = json!({ "repo": "img", "name": "img", "build_pack": "dockerfile", "env_vars": { "EXTRA": "x" } });
    let created = tool_ok(call_tool(&client, "create_service", args).await);
    let s = wait_latest(&client, "img", "live", Duration::from_secs(90)).await;
    assert_eq!(s["status"], "live", "{s}");
    let log = s["build_log"]["lines"].to_string();
    assert!(log.contains("buildah bud"), "{log}");
    let (status, body) = get(&reqwest::Client::new(), router(&p), created["url"].as_str().unwrap(), "/").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "dockerfile fixture v1"));

    // A hostile Dockerfile: its RUN step is root only inside a user namespace (uid 65534 on the
    // host), and the setuid binary and FIFO it makes never reach the host's artifacts.
    Pushed::new_with(&client, "hostile-image", "dockerfile", |dir| {
        std::fs::write(
            dir.join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             RUN mkdir -p /www && cat /proc/self/uid_map > /www/uid_map && cp /bin/busybox /bin/suid && \
             chmod 4755 /bin/suid && chmod 2755 /bin/busybox && mkfifo /fifo\n\
             CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
        )
        .unwrap();
        std::fs::copy("/bin/busybox", dir.join("busybox")).unwrap();
    })
    .await;
    let args = json!({ "repo": "hostile-image", "name": "hostile-image", "build_pack": "dockerfile" });
    let hostile = tool_ok(call_tool(&client, "create_service", args).await);
    let s = wait_latest(&client, "hostile-image", "live", Duration::from_secs(90)).await;
    assert_eq!(s["status"], "live", "{s}");
    let (status, uid_map) =
        get(&reqwest::Client::new(), router(&p), hostile["url"].as_str().unwrap(), "/uid_map").await.unwrap();
    assert_eq!((status, uid_map.split_whitespace().collect::<Vec<_>>()), (200, vec!["0", "65534", "1"]));
    let artifacts = tree(&p.settings.data_dir.join("artifacts"));
    assert!(artifacts.iter().any(|(path, _)| path.ends_with("rootfs/bin/suid")), "no exported image: {artifacts:?}");
    let special: Vec<_> = artifacts.iter().filter(|(_, meta)| is_special(meta)).collect();
    assert!(special.is_empty(), "setuid/setgid files or FIFOs in the artifacts: {special:?}");

    // A Dockerfile whose base image would have to be pulled fails with the reason.
    Pushed::new_with(&client, "pull", "dockerfile", |dir| {
        std::fs::write(dir.join("Dockerfile"), "FROM debian:12\nCMD [\"true\"]\n").unwrap();
        std::fs::copy("/bin/busybox", dir.join("busybox")).unwrap();
    })
    .await;
    tool_ok(
        call_tool(&client, "create_service", json!({ "repo": "pull", "name": "pull", "build_pack": "dockerfile" }))
            .await,
    );
    let s = wait_latest(&client, "pull", "failed", Duration::from_secs(90)).await;
    let failure = &s["deployments"][0]["failure"];
    assert_eq!(failure["kind"], "build_failed", "{s}");
    assert!(failure["log_tail"].to_string().contains("cannot be pulled"), "{failure}");
    p.stop().await;
}

/// Every entry below `dir`, by lstat (symlinks not followed).
fn tree(dir: &std::path::Path) -> Vec<(std::path::PathBuf, std::fs::Metadata)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            found.push((entry.path(), meta));
        }
    }
    found
}

/// A FIFO, socket or device, or a file with a setuid or setgid bit.
fn is_special(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    let kind = meta.file_type();
    kind.is_fifo() || kind.is_socket() || kind.is_block_device() || kind.is_char_device() || meta.mode() & 0o6000 != 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dockerfile_image_is_pushed_to_the_registry_with_its_digest_recorded() {
    let registry =
        std::env::var("DEPLOY_MCP_TEST_REGISTRY").expect("DEPLOY_MCP_TEST_REGISTRY: run scripts/test --setup-only");
    let address = registry.clone();
    let mut p = TestPlatform::start_with(&deploy_mcp_tests::shared_nats_url().await, Components::ALL, |s| {
        s.registry = Some(address);
        s.registry_insecure = true;
    })
    .await;
    let (key, _) = p.new_key("registry@example.test").await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    Pushed::new_with(&client, "pushed", "dockerfile", |dir| {
        std::fs::copy("/bin/busybox", dir.join("busybox")).unwrap();
    })
    .await;
    let args = json!({ "repo": "pushed", "name": "pushed", "build_pack": "dockerfile", "wait": true });
    let created = tool_ok(call_tool(&client, "create_service", args).await);
    assert_eq!(created["status"], "live", "{created}");
    let s = service(&client, "pushed").await;
    let image = s["deployments"][0]["image"].as_str().unwrap_or_else(|| panic!("no image recorded: {s}")).to_owned();
    let (tag, recorded, served) = registry_digests(&registry, &image).await;
    assert!(image.starts_with(&format!("{registry}/deploy-mcp/svc/")), "{image}");
    assert_eq!(recorded, served, "the event records the registry's digest");
    assert!(tag.starts_with(&s["deployments"][0]["commit"].as_str().unwrap()[..12]), "tagged by commit: {tag}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_plan_is_packaged_onto_its_base_image_and_pushed() {
    let registry =
        std::env::var("DEPLOY_MCP_TEST_REGISTRY").expect("DEPLOY_MCP_TEST_REGISTRY: run scripts/test --setup-only");
    // A base image made here (no registry is reachable): busybox with its applets (sh, httpd).
    let base = format!("localhost/dmcp-test-base:{}", deploy_mcp_tests::unique("b").to_lowercase().replace('_', ""));
    let ctx = Scratch::new();
    std::fs::copy("/bin/busybox", ctx.0.join("busybox")).unwrap();
    std::fs::write(
        ctx.0.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .unwrap();
    let built = std::process::Command::new("buildah")
        .args(["bud", "--isolation", "chroot", "--pull=never", "-q", "-t", &base, "."])
        .current_dir(&ctx.0)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let (address, base_image) = (registry.clone(), base.clone());
    let mut p = TestPlatform::start_with(&deploy_mcp_tests::shared_nats_url().await, Components::ALL, |s| {
        s.registry = Some(address);
        s.registry_insecure = true;
        s.base_images = vec![format!("static={base_image}")];
    })
    .await;
    let (key, _) = p.new_key("package@example.test").await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    Pushed::new(&client, "pkg", "static").await;
    let created =
        tool_ok(call_tool(&client, "create_service", json!({ "repo": "pkg", "name": "pkg", "wait": true })).await);
    assert_eq!(created["status"], "live", "{created}");
    let s = service(&client, "pkg").await;
    let image = s["deployments"][0]["image"].as_str().unwrap_or_else(|| panic!("no image recorded: {s}")).to_owned();
    let (_, recorded, served) = registry_digests(&registry, &image).await;
    assert_eq!(recorded, served, "the event records the registry's digest");
    // A plan without a base image configured fails with the reason.
    Pushed::new(&client, "py", "python").await;
    tool_ok(call_tool(&client, "create_service", json!({ "repo": "py", "name": "py" })).await);
    let failed = wait_latest(&client, "py", "failed", Duration::from_secs(60)).await;
    assert!(failed["deployments"][0]["failure"]["log_tail"].to_string().contains("DEPLOY_MCP_BASE_IMAGES"), "{failed}");
    let _ = std::process::Command::new("buildah").args(["rmi", "-f", &base]).output();
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_interrupted_after_the_service_was_deleted_is_finished_by_the_next_call() {
    let (mut p, client) = platform().await;
    tool_ok(call_tool(&client, "create_repo", json!({ "name": "r" })).await);
    tool_ok(call_tool(&client, "create_service", json!({ "repo": "r", "name": "half" })).await);
    let listed = eventually(Duration::from_secs(10), "the service listed", || async {
        let l = tool_ok(call_tool(&client, "list_services", json!({})).await);
        (l["total"] == 1).then_some(l)
    })
    .await;
    assert_eq!(listed["services"][0]["name"], "half");
    // The service is deleted, but the process died before its names were freed.
    let rows = p.adapters.store.services_of(&owner_of(&client).await, 10).await.unwrap().0;
    let service_id = rows[0].service_id.clone();
    let owner: events::UserId = rows[0].owner.parse().unwrap();
    let delete = domain::ServiceCommand::Delete { owner, now: chrono::Utc::now() };
    p.commands().services.execute(&service_id, delete).await.unwrap();
    // Creating the name again finishes the delete first; a retry then succeeds.
    let e = tool_err(call_tool(&client, "create_service", json!({ "repo": "r", "name": "half" })).await);
    assert_eq!(e["error"], "unavailable", "{e}");
    let again = tool_ok(call_tool(&client, "create_service", json!({ "repo": "r", "name": "half" })).await);
    assert_eq!(again["created"], true, "{again}");
    p.stop().await;
}

/// The owner of the client's key, as stored.
async fn owner_of(client: &Client) -> String {
    tool_ok(call_tool(client, "whoami", json!({})).await)["user_id"].as_str().unwrap().to_owned()
}

/// For a recorded `<registry>/<repository>:<tag>@<digest>`: the tag, the recorded digest, and the
/// digest the registry serves for that tag.
async fn registry_digests(registry: &str, image: &str) -> (String, String, String) {
    let (reference, digest) = image.split_once('@').unwrap();
    let (repo_tag, tag) = reference.rsplit_once(':').unwrap();
    let repository = repo_tag.strip_prefix(&format!("{registry}/")).unwrap();
    let head = reqwest::Client::new()
        .head(format!("http://{registry}/v2/{repository}/manifests/{tag}"))
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 200, "the registry has {reference}");
    let served = head.headers()["docker-content-digest"].to_str().unwrap().to_owned();
    (tag.to_owned(), digest.to_owned(), served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_log_can_be_followed_live() {
    let (mut p, client) = platform().await;
    Pushed::new(&client, "logs", "static").await;
    let args = json!({ "repo": "logs", "name": "logs", "build_command": "sleep 2; echo followed-live-line" });
    let created = tool_ok(call_tool(&client, "create_service", args).await);
    let deployment: events::DeploymentId = created["deployment"]["deployment_id"].as_str().unwrap().parse().unwrap();
    let mut lines = p.adapters.bus.follow_log(deployment, events::LogKind::Build).await.unwrap();
    let line = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = futures::StreamExt::next(&mut lines).await {
            if line.text == "followed-live-line" {
                return line;
            }
        }
        panic!("the log ended without the line");
    })
    .await
    .expect("the line arrives while the build runs");
    assert_eq!(line.stream, "stdout");
    wait_latest(&client, "logs", "live", Duration::from_secs(60)).await;
    p.stop().await;
}
