//! Real apps (the corpus in `tests/fixtures/apps`): each deploys through MCP and git with its
//! dependencies and toolchain, and answers its own content through the router. Packages come
//! from the registries the test set-up serves on loopback (PyPI, npm, a Go module proxy), as
//! package mirrors behind the builds' egress proxy; only the Rust app uses a public registry
//! (crates.io), through the same proxy.

use std::time::Duration;

use deploy_mcp::Components;
use deploy_mcp_tests::{
    Client, Pushed, TestPlatform, call_tool, get_service, get_via_router, mcp_client, router, tool_ok, unique,
    wait_latest,
};
use serde_json::{Value, json};

/// A cold corpus (toolchains downloaded, Go's standard library compiled) on two cores.
const CORPUS_TIMEOUT: Duration = Duration::from_secs(1200);
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// One app of the corpus: the start command its README gives (where the test passes one, as a
/// user would), a path and what it answers there.
struct App {
    fixture: &'static str,
    start_command: Option<&'static str>,
    path: &'static str,
    answers: &'static str,
}

const CORPUS: &[App] = &[
    App { fixture: "flask", start_command: Some("gunicorn app:app"), path: "/", answers: "flask fixture v1" },
    App {
        fixture: "fastapi",
        start_command: Some("uvicorn main:app --host 0.0.0.0 --port $PORT"),
        path: "/",
        answers: "fastapi fixture v1",
    },
    App { fixture: "django", start_command: None, path: "/", answers: "django fixture v1" },
    App { fixture: "express", start_command: None, path: "/", answers: "express fixture v1" },
    App { fixture: "vite", start_command: None, path: "/", answers: "vite fixture v1" },
    App { fixture: "ssr", start_command: None, path: "/", answers: "ssr fixture v1" },
    App { fixture: "go", start_command: None, path: "/", answers: "go fixture v1: Hello, gopher! (greeting v1.1.0)" },
    App { fixture: "go-pinned", start_command: None, path: "/", answers: "built with go1.25.5" },
    App { fixture: "rust", start_command: None, path: "/", answers: "rust fixture v1" },
    App { fixture: "node-pinned", start_command: None, path: "/", answers: "on Node.js v22." },
];

async fn platform(tweak: impl FnOnce(&mut deploy_mcp::Settings)) -> (TestPlatform, Client) {
    let nats = deploy_mcp_tests::shared_nats_url().await;
    let p = TestPlatform::start_with(&nats, Components::ALL, |s| {
        s.health_timeout_secs = 60;
        tweak(s);
    })
    .await;
    let (key, _) = p.new_key(&format!("{}@example.test", unique("apps"))).await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    (p, client)
}

fn create_args(name: &str, start_command: Option<&str>) -> Value {
    let mut args = json!({ "repo": name, "name": name });
    if let Some(start) = start_command {
        args["start_command"] = json!(start);
    }
    args
}

fn build_log(service: &Value) -> String {
    service["build_log"]["lines"]
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_corpus_of_real_apps_deploys_and_each_answers_its_own_content() {
    let (mut p, client) = platform(|_| {}).await;
    let mut urls = Vec::new();
    for app in CORPUS {
        Pushed::new(&client, app.fixture, app.fixture).await;
        let created = tool_ok(call_tool(&client, "create_service", create_args(app.fixture, app.start_command)).await);
        urls.push(created["url"].as_str().unwrap().to_owned());
    }
    // An app asking for a Python this platform cannot provide fails typed, naming what it can.
    Pushed::new(&client, "py313", "python-unavailable").await;
    tool_ok(call_tool(&client, "create_service", create_args("py313", None)).await);

    let http = reqwest::Client::new();
    let rtr = router(&p);
    let mut failures = Vec::new();
    for (app, url) in CORPUS.iter().zip(&urls) {
        let s = wait_latest(&client, app.fixture, "live", CORPUS_TIMEOUT).await;
        if s["status"] != "live" {
            failures.push(format!(
                "{} did not go live: {:#}\nbuild log:\n{}",
                app.fixture,
                s["deployments"][0],
                build_log(&s)
            ));
            continue;
        }
        match get_via_router(&http, rtr, url, app.path).await {
            Ok((200, body)) if body.contains(app.answers) => {}
            other => failures.push(format!("{} answered {other:?}, expected {:?}", app.fixture, app.answers)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // What the build logs say of the toolchains: downloaded where the host has none of that version.
    let pinned = get_service(&client, "node-pinned", 200).await;
    let log = build_log(&pinned);
    assert!(log.contains("toolchain: node 22."), "{log}");
    assert!(pinned["deployments"][0]["plan"].as_str().unwrap().contains("node 22 (.nvmrc)"), "{pinned}");
    let go = get_service(&client, "go-pinned", 200).await;
    assert!(build_log(&go).contains("toolchain: go 1.25.5"), "{}", build_log(&go));
    // Django's static files are collected at build and served by the app.
    let django = CORPUS.iter().position(|a| a.fixture == "django").unwrap();
    let (status, css) = get_via_router(&http, rtr, &urls[django], "/static/css/site.css").await.unwrap();
    assert_eq!(status, 200, "{css}");

    let failed = wait_latest(&client, "py313", "failed", BUILD_TIMEOUT).await;
    let failure = &failed["deployments"][0]["failure"];
    assert_eq!(failure["kind"], "toolchain_unavailable", "{failed}");
    assert_eq!(failure["tool"], "python");
    assert_eq!(failure["requested"], "3.13");
    assert_eq!(failure["from"], ".python-version");
    let available: Vec<&str> = failure["available"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(available.iter().any(|v| v.starts_with("3.11")), "{available:?}");
    let hint = failed["deployments"][0]["hint"].as_str().unwrap();
    assert!(hint.contains("3.11") && hint.contains(".python-version"), "{hint}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_with_an_unchanged_lockfile_restores_the_dependencies_without_installing() {
    let (mut p, client) = platform(|_| {}).await;
    let code = Pushed::new(&client, "shop", "flask").await;
    let created = tool_ok(call_tool(&client, "create_service", create_args("shop", Some("gunicorn app:app"))).await);
    let url = created["url"].as_str().unwrap().to_owned();
    let first = wait_latest(&client, "shop", "live", BUILD_TIMEOUT).await;
    assert_eq!(first["status"], "live", "{}", build_log(&first));
    assert!(build_log(&first).contains("pip install -r requirements.txt"), "{}", build_log(&first));

    let app = std::fs::read_to_string(code.dir.0.join("app.py")).unwrap();
    let sha = code.write_and_push("app.py", &app.replace("flask fixture v1", "flask fixture v2"));
    let http = reqwest::Client::new();
    deploy_mcp_tests::eventually(BUILD_TIMEOUT, "v2 to be served", || async {
        let (_, body) = get_via_router(&http, router(&p), &url, "/").await.ok()?;
        (body == "flask fixture v2").then_some(())
    })
    .await;
    let second = get_service(&client, "shop", 200).await;
    assert_eq!(second["live"]["commit"], sha[..12]);
    let log = build_log(&second);
    assert!(log.contains("dependencies restored from an earlier build"), "{log}");
    assert!(!log.contains("$ python3 -m venv"), "the install ran again:\n{log}");
    assert!(!log.contains("egress:"), "the rebuild reached for the network:\n{log}");
    p.stop().await;
}

/// A build step probes every way out: through the proxy to hosts that are not allowed, to IP
/// literals (metadata, loopback, private), to an allowlisted name that resolves to loopback; and
/// directly to the host's services and a public address. Each must fail, and the build log must
/// name each refused destination.
const EGRESS_PROBE: &str = r#"
import os, socket
proxy = os.environ["HTTPS_PROXY"][len("http://"):]
host, port = proxy.rsplit(":", 1)
def via_proxy(target):
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    status = s.recv(400).split(b"\r\n")[0].decode()
    s.close()
    return status
def direct(h, p):
    try:
        socket.create_connection((h, p), timeout=3).close()
        return "connected"
    except OSError as e:
        return type(e).__name__
results = {}
for target in ["evil.example:443", "169.254.169.254:80", "127.0.0.1:5432", "10.0.0.1:80", "[::1]:443", "localhost:443"]:
    results["proxy " + target] = via_proxy(target)
for h, p in [(host, 5432), (host, 4222), (host, 14222), (host, 8081), ("169.254.169.254", 80), ("203.0.113.80", 443), ("10.0.0.1", 80)]:
    results[f"direct {h}:{p}"] = direct(h, p)
escaped = [k for k, v in results.items() if v == "connected" or " 200" in v]
for k, v in results.items():
    print("probe", k, "->", v)
print("probe escaped:", escaped)
raise SystemExit(1 if escaped else 0)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_reaches_package_registries_only_and_its_log_names_each_refusal() {
    // `localhost` is allowlisted here to show that a name is still refused when it resolves to a
    // non-public address.
    let (mut p, client) = platform(|s| s.build_egress_allow = Some("default,localhost".into())).await;
    Pushed::new_with(&client, "probe", "python", |dir| {
        std::fs::write(dir.join("egress_probe.py"), EGRESS_PROBE).unwrap()
    })
    .await;
    let args = json!({ "repo": "probe", "name": "probe", "build_command": "python3 egress_probe.py" });
    tool_ok(call_tool(&client, "create_service", args).await);
    let s = wait_latest(&client, "probe", "live", BUILD_TIMEOUT).await;
    let full = get_service(&client, "probe", 200).await;
    let log = build_log(&full);
    assert_eq!(s["status"], "live", "a probe escaped or the build failed:\n{log}");
    assert!(log.contains("probe escaped: []"), "{log}");
    for refused in [
        "refused evil.example:443 — not in the egress allowlist",
        "refused 169.254.169.254:80",
        "refused 127.0.0.1:5432",
        "refused 10.0.0.1:80",
        "refused [::1]:443",
        "refused localhost:443 — it resolves to 127.0.0.1",
    ] {
        assert!(log.contains(&format!("egress: {refused}")), "missing `{refused}` in the build log:\n{log}");
    }
    for line in log.lines().filter(|l| l.starts_with("probe direct")) {
        assert!(line.ends_with("ConnectionRefusedError") || line.ends_with("TimeoutError"), "{line}");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_failures_are_typed_with_the_package_manager_and_the_refused_host() {
    let (mut p, client) = platform(|_| {}).await;
    // A version the index does not have.
    Pushed::new_with(&client, "missing", "flask", |dir| {
        std::fs::write(dir.join("requirements.txt"), "Flask==99.0.0\ngunicorn==27.0.1\n").unwrap()
    })
    .await;
    // A dependency from a host builds may not reach.
    Pushed::new_with(&client, "elsewhere", "flask", |dir| {
        std::fs::write(dir.join("requirements.txt"), "Flask==3.1.3\nhttps://evil.example/pkg-1.0.tar.gz\n").unwrap()
    })
    .await;
    for name in ["missing", "elsewhere"] {
        tool_ok(call_tool(&client, "create_service", create_args(name, Some("gunicorn app:app"))).await);
    }
    let missing = wait_latest(&client, "missing", "failed", BUILD_TIMEOUT).await;
    let failure = &missing["deployments"][0]["failure"];
    assert_eq!(failure["kind"], "dependency_install_failed", "{missing}");
    assert_eq!(failure["package_manager"], "pip");
    let first = failure["first_error"].as_str().unwrap();
    assert!(first.starts_with("ERROR:") && first.contains("Flask==99.0.0"), "{first}");
    let hint = missing["deployments"][0]["hint"].as_str().unwrap();
    assert!(hint.starts_with("pip could not install the dependencies") && hint.contains("Flask==99.0.0"), "{hint}");

    let elsewhere = wait_latest(&client, "elsewhere", "failed", BUILD_TIMEOUT).await;
    let failure = &elsewhere["deployments"][0]["failure"];
    assert_eq!(failure["kind"], "egress_refused", "{elsewhere}");
    assert_eq!(failure["host"], "evil.example:443");
    assert!(failure["reason"].as_str().unwrap().contains("not in the egress allowlist"), "{failure}");
    let hint = elsewhere["deployments"][0]["hint"].as_str().unwrap();
    assert!(hint.contains("evil.example:443") && hint.contains("DEPLOY_MCP_BUILD_EGRESS_ALLOW"), "{hint}");
    p.stop().await;
}
