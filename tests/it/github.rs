//! GitHub through the App: linking, `github.com` repos, and webhooks, against a fake GitHub that
//! speaks GitHub's REST and webhook formats (GitHub itself is not reachable here).

use std::time::Duration;

use deploy_mcp::Components;
use deploy_mcp_tests::{Client, TestPlatform, call_tool, eventually, mcp_client, shared_nats_url, tool_ok};
use github::fake::FakeGithub;
use reqwest::StatusCode;
use serde_json::{Value, json};

const APP_ID: u64 = 4242;
const SECRET: &str = "webhook-secret-for-tests";
const PUBLIC_KEY: &str = include_str!("../../crates/github/tests/fixtures/test-app.pub.pem");

fn key_file() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/github/tests/fixtures/test-app.pem").to_owned()
}

async fn platform(fake: &FakeGithub) -> TestPlatform {
    let url = fake.url();
    TestPlatform::start_with(&shared_nats_url().await, Components::ALL, move |s| {
        s.github_app_id = Some(APP_ID);
        s.github_app_slug = Some("deploy-mcp-test".into());
        s.github_private_key_file = Some(key_file().into());
        s.github_webhook_secret = Some(SECRET.into());
        s.github_api_url = url;
    })
    .await
}

async fn deliver(
    p: &TestPlatform,
    event: &str,
    delivery: &str,
    body: &[u8],
    signature: Option<String>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/webhooks/github", p.base_url))
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(sig) = signature {
        req = req.header("x-hub-signature-256", sig);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.json().await.unwrap_or(Value::Null))
}

/// Connects the account behind `client` to installation 77 on the organization `acme`.
async fn connect(p: &TestPlatform, client: &Client) {
    let link = tool_ok(call_tool(client, "connect_github", json!({})).await);
    let install_url = link["install_url"].as_str().unwrap();
    assert!(
        install_url.starts_with("https://github.com/apps/deploy-mcp-test/installations/new?state="),
        "{install_url}"
    );
    let state = install_url.split_once("state=").unwrap().1;
    // GitHub sends the browser back with the installation and the state.
    let res =
        reqwest::get(format!("{}/github/setup?installation_id=77&setup_action=install&state={state}", p.base_url))
            .await
            .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
    eventually(Duration::from_secs(10), "whoami to show the link", || async {
        let me = tool_ok(call_tool(client, "whoami", json!({})).await);
        (me["github"]["account"] == "acme").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_connects_github_creates_a_repo_and_pushes_reach_the_platform() {
    let fake = FakeGithub::start(PUBLIC_KEY).await;
    fake.add_installation(77, "acme", "Organization");
    let p = platform(&fake).await;
    let (key, _) = p.new_key("gh@example.test").await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();

    let not_yet = call_tool(&client, "create_repo", json!({"name": "api", "host": "github.com"})).await;
    assert_eq!(not_yet.is_error, Some(true));
    assert!(not_yet.structured_content.unwrap()["message"].as_str().unwrap().contains("connect_github"));

    connect(&p, &client).await;
    let repo = tool_ok(
        call_tool(&client, "create_repo", json!({"name": "api", "host": "github.com", "description": "API"})).await,
    );
    assert_eq!(repo["host"], "github.com");
    assert_eq!(repo["created"], true);
    let clone_url = repo["clone_url"].as_str().unwrap().to_owned();
    assert!(clone_url.ends_with("acme/api.git"), "{clone_url}");
    assert!(fake.requests().iter().any(|(m, path)| m == "POST" && path == "/orgs/acme/repos"), "{:?}", fake.requests());

    // A token is minted per request and never stored.
    let creds = tool_ok(call_tool(&client, "get_git_token", json!({"name": "api", "host": "github.com"})).await);
    let token = creds["token"].as_str().unwrap();
    assert!(token.starts_with("ghs_"), "{token}");
    assert!(creds["authenticated_url"].as_str().unwrap().contains(&format!("x-access-token:{token}@")));
    let before = fake.requests().iter().filter(|(_, path)| path.ends_with("/access_tokens")).count();
    tool_ok(call_tool(&client, "get_git_token", json!({"name": "api", "host": "github.com"})).await);
    let after = fake.requests().iter().filter(|(_, path)| path.ends_with("/access_tokens")).count();
    assert_eq!(after, before + 1, "one installation token per request");
    let events = p.adapters.store.event_count().await.unwrap();
    assert!(events > 0);

    // Pushes on GitHub arrive as webhooks.
    let gh = github::GithubRepo {
        id: repo_github_id(&fake, "acme/api"),
        full_name: "acme/api".into(),
        clone_url,
        default_branch: "main".into(),
        private: true,
    };
    let sha = "1".repeat(40);
    let body = github::fake::push_payload(&gh, "refs/heads/main", &"0".repeat(40), &sha, "octocat", Some(77));
    let signature = github::sign(SECRET.as_bytes(), &body);
    let (status, answer) = deliver(&p, "push", "delivery-1", &body, Some(signature.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "accepted");
    let pushed = eventually(Duration::from_secs(10), "the push intent", || async {
        let all = p.push_intents().await;
        (!all.is_empty()).then_some(all)
    })
    .await;
    assert_eq!(pushed[0].after, sha);
    assert_eq!(pushed[0].git_ref, "refs/heads/main");

    // 1,000 deliveries of the same webhook: one event. GitHub's redeliveries carry the same
    // delivery id; a replay under a new id is the same push by its natural key.
    for i in 0..1_000 {
        let delivery = if i % 2 == 0 { "delivery-1".to_owned() } else { format!("redelivery-{i}") };
        let (status, _) = deliver(&p, "push", &delivery, &body, Some(signature.clone())).await;
        assert!(status.is_success(), "{status}");
    }
    assert_eq!(p.push_intents().await.len(), 1);
    assert_eq!(p.adapters.bus.last_sequence("INTENTS").await.unwrap(), 1);

    // A bad signature is refused and produces nothing.
    let other = github::fake::push_payload(&gh, "refs/heads/main", &sha, &"2".repeat(40), "mallory", Some(77));
    for sig in [None, Some(github::sign(b"wrong", &other)), Some(signature.clone()), Some("sha256=zz".into())] {
        let (status, answer) = deliver(&p, "push", "forged", &other, sig).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    }
    assert_eq!(p.push_intents().await.len(), 1);

    // Uninstalling the App unlinks the account.
    let gone = github::fake::installation_payload("deleted", 77, "acme", "Organization", "octocat");
    let (status, answer) =
        deliver(&p, "installation", "delivery-uninstall", &gone, Some(github::sign(SECRET.as_bytes(), &gone))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    eventually(Duration::from_secs(10), "whoami to drop the link", || async {
        let me = tool_ok(call_tool(&client, "whoami", json!({})).await);
        me["github"].is_null().then_some(())
    })
    .await;
    client.cancel().await.unwrap();
}

/// The GitHub id the fake gave a repository.
fn repo_github_id(fake: &FakeGithub, full_name: &str) -> u64 {
    fake.repo(full_name).expect("the fake has the repo").id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_links_are_bound_to_their_account() {
    let fake = FakeGithub::start(PUBLIC_KEY).await;
    fake.add_installation(77, "acme", "Organization");
    let p = platform(&fake).await;
    let (key, _) = p.new_key("first@example.test").await;
    let (other_key, _) = p.new_key("second@example.test").await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    let other = mcp_client(&p.mcp_url(), &other_key).await.unwrap();

    // A forged or tampered state links nothing.
    for state in ["garbage", "usr_01ARZ3NDEKTSV4RRFFQ69G5FAV.99999999999.00"] {
        let res = reqwest::get(format!("{}/github/setup?installation_id=77&state={state}", p.base_url)).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
    connect(&p, &client).await;
    // The same installation cannot be taken by another account.
    let link = tool_ok(call_tool(&other, "connect_github", json!({})).await);
    let state = link["install_url"].as_str().unwrap().split_once("state=").unwrap().1.to_owned();
    let res = reqwest::get(format!("{}/github/setup?installation_id=77&state={state}", p.base_url)).await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let me = tool_ok(call_tool(&other, "whoami", json!({})).await);
    assert!(me["github"].is_null());
    client.cancel().await.unwrap();
    other.cancel().await.unwrap();
}
