//! The git server end to end: MCP tools for repos and tokens, real `git push` and `git clone`
//! over HTTP, and the `PushReceived` intents a push produces.

use std::time::Duration;

use deploy_mcp::Components;
use deploy_mcp_tests::{Scratch, TestPlatform, call_tool, commit, eventually, git, mcp_client, tool_err, tool_ok};
use events::PushReceived;
use reqwest::StatusCode;
use serde_json::json;

async fn wait_pushes(p: &TestPlatform, n: usize) -> Vec<PushReceived> {
    eventually(Duration::from_secs(15), "push intents", || async {
        let all = p.push_intents().await;
        (all.len() >= n).then_some(all)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_pushes_and_clones_with_a_token_from_mcp() {
    let p = TestPlatform::start(Components::ALL).await;
    let (key, _) = p.new_key("git@example.test").await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();

    let repo = tool_ok(call_tool(&client, "create_repo", json!({"name": "app", "description": "my app"})).await);
    assert_eq!(repo["created"], true);
    let clone_url = repo["clone_url"].as_str().unwrap().to_owned();
    assert!(clone_url.starts_with(&p.base_url) && clone_url.ends_with("/app.git"), "{clone_url}");
    let again = tool_ok(call_tool(&client, "create_repo", json!({"name": "app"})).await);
    assert_eq!(again["created"], false, "create_repo is safe to retry");

    let creds = tool_ok(call_tool(&client, "get_git_token", json!({"name": "app"})).await);
    let token = creds["token"].as_str().unwrap();
    assert!(token.starts_with("mlg_"));
    let commands: Vec<String> = serde_json::from_value(creds["commands"].clone()).unwrap();
    assert_eq!(commands.len(), 2);

    // Exactly the commands the tool gave.
    let work = Scratch::new();
    git(&work.0, &["init", "-q"]).unwrap();
    let first = commit(&work.0, "index.html", "<h1>v1</h1>");
    for c in &commands {
        let args: Vec<&str> = c.strip_prefix("git ").unwrap().split(' ').collect();
        git(&work.0, &args).unwrap_or_else(|e| panic!("`{c}` failed: {e}"));
    }
    let pushed = wait_pushes(&p, 1).await;
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].git_ref, "refs/heads/main");
    assert_eq!(pushed[0].after, first);
    assert_eq!(pushed[0].before, "0".repeat(40));

    let second = commit(&work.0, "index.html", "<h1>v2</h1>");
    git(&work.0, &["push", "-q", "deploy", "HEAD:main"]).unwrap();
    let pushed = wait_pushes(&p, 2).await;
    assert_eq!((pushed[1].before.as_str(), pushed[1].after.as_str()), (first.as_str(), second.as_str()));

    // Clone it back with the same token.
    let clone = Scratch::new();
    let url = creds["authenticated_url"].as_str().unwrap();
    git(&clone.0, &["clone", "-q", url, "copy"]).unwrap();
    assert_eq!(std::fs::read_to_string(clone.0.join("copy/index.html")).unwrap(), "<h1>v2</h1>");
    assert_eq!(git(&clone.0.join("copy"), &["rev-parse", "HEAD"]).unwrap(), second);
    // Nothing but branches is visible to clients.
    let refs = git(&clone.0, &["ls-remote", url]).unwrap();
    assert!(!refs.contains("refs/published"), "{refs}");

    let listed = tool_ok(call_tool(&client, "list_repos", json!({})).await);
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["repos"][0]["name"], "app");
    assert_eq!(listed["repos"][0]["description"], "my app");
    client.cancel().await.unwrap();
}

async fn info_refs(p: &TestPlatform, path: &str, password: Option<&str>) -> (StatusCode, String) {
    let mut req = reqwest::Client::new().get(format!("{}{path}/info/refs?service=git-upload-pack", p.base_url));
    if let Some(pw) = password {
        req = req.basic_auth("git", Some(pw));
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_per_repository_and_expire() {
    let p = TestPlatform::start(Components::ALL).await;
    let (key, _) = p.new_key("tokens@example.test").await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    let a = tool_ok(call_tool(&client, "create_repo", json!({"name": "a"})).await);
    tool_ok(call_tool(&client, "create_repo", json!({"name": "b"})).await);
    let token_a =
        tool_ok(call_tool(&client, "get_git_token", json!({"name": "a"})).await)["token"].as_str().unwrap().to_owned();
    let token_b =
        tool_ok(call_tool(&client, "get_git_token", json!({"name": "b"})).await)["token"].as_str().unwrap().to_owned();
    let path = a["clone_url"].as_str().unwrap().strip_prefix(&p.base_url).unwrap().to_owned();

    assert_eq!(info_refs(&p, &path, Some(&token_a)).await.0, StatusCode::OK);
    let (status, body) = info_refs(&p, &path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("get_git_token"), "{body}");
    let forged = format!("{}{}", &token_a[..30], "x".repeat(token_a.len() - 30));
    assert_eq!(info_refs(&p, &path, Some(&forged)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(info_refs(&p, &path, Some("hunter2")).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = info_refs(&p, &path, Some(&token_b)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a token of another repo: {body}");

    // git itself reports the refusal.
    let work = Scratch::new();
    let url = format!("{}{path}", p.base_url).replace("://", "://git:wrong@");
    assert!(git(&work.0, &["clone", "-q", &url, "x"]).is_err());

    // A token that expires.
    let commands = p.commands();
    let owner: events::UserId =
        tool_ok(call_tool(&client, "whoami", json!({})).await)["user_id"].as_str().unwrap().parse().unwrap();
    let found = gateway::repos::find(&commands, owner, "a").await.unwrap().unwrap();
    let short = gateway::repos::issue_token(&commands, owner, &found, chrono::Duration::seconds(1), chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(info_refs(&p, &path, Some(&short.token)).await.0, StatusCode::OK);
    let body = eventually(Duration::from_secs(10), "the token to expire", || async {
        let (status, body) = info_refs(&p, &path, Some(&short.token)).await;
        (status == StatusCode::UNAUTHORIZED).then_some(body)
    })
    .await;
    assert!(body.contains("expired"), "{body}");

    let bad_ttl = tool_err(call_tool(&client, "get_git_token", json!({"name": "a", "ttl_minutes": 0})).await);
    assert_eq!(bad_ttl["error"], "invalid_argument");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_names_foreign_repos_and_traversal_are_refused() {
    let p = TestPlatform::start(Components::ALL).await;
    let (key, _) = p.new_key("names@example.test").await;
    let (other_key, _) = p.new_key("other@example.test").await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    let other = mcp_client(&p.mcp_url(), &other_key).await.unwrap();

    let long = "a".repeat(300);
    for bad in ["../x", "a/b", "ünïcödé", long.as_str(), "", ".git", "App", "a b"] {
        let e = tool_err(call_tool(&client, "create_repo", json!({"name": bad})).await);
        assert_eq!(e["error"], "invalid_name", "{bad}");
        assert!(e["message"].as_str().unwrap().contains("lowercase letters"), "{bad}: {e}");
    }
    let gh = tool_err(call_tool(&client, "create_repo", json!({"name": "x", "host": "github.com"})).await);
    assert_eq!(gh["error"], "github_not_configured");

    // Another user's repository is "not found", even by its exact name.
    let mine = tool_ok(call_tool(&client, "create_repo", json!({"name": "secret"})).await);
    let theirs = tool_err(call_tool(&other, "get_git_token", json!({"name": "secret"})).await);
    assert_eq!(theirs["error"], "not_found");
    let made = tool_ok(call_tool(&other, "create_repo", json!({"name": "secret"})).await);
    assert_eq!(made["created"], true, "names are per owner");
    assert_ne!(made["clone_url"], mine["clone_url"]);

    // Paths that try to leave the repository root never reach git.
    let token = tool_ok(call_tool(&client, "get_git_token", json!({"name": "secret"})).await)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let owner = mine["clone_url"].as_str().unwrap().split('/').rev().nth(1).unwrap().to_owned();
    for path in [
        format!("/git/{owner}/..%2F..%2Fetc.git"),
        format!("/git/{owner}/../secret.git"),
        format!("/git/{owner}/secret.git/objects/info/packs"),
        "/git/usr_nobody/secret.git".to_owned(),
        format!("/git/{owner}/%2e%2e.git"),
    ] {
        let (status, _) = info_refs(&p, &path, Some(&token)).await;
        assert!(status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN, "{path}: {status}");
    }
    // Only repository directories named by id exist under the data dir.
    for entry in std::fs::read_dir(p.settings.data_dir.join("git")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(name.ends_with(".git") && name.len() == 30, "{name}");
    }
    client.cancel().await.unwrap();
    other.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_not_announced_before_a_crash_is_announced_by_the_reconciler() {
    let p = TestPlatform::start(Components::ALL).await;
    let (key, _) = p.new_key("crash@example.test").await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    tool_ok(call_tool(&client, "create_repo", json!({"name": "app"})).await);
    let owner: events::UserId =
        tool_ok(call_tool(&client, "whoami", json!({})).await)["user_id"].as_str().unwrap().parse().unwrap();
    let found = gateway::repos::find(&p.commands(), owner, "app").await.unwrap().unwrap();
    let bare = gateway::repos::repo_dir(&p.settings.data_dir, found.repo_id);

    // The refs change without the gateway announcing it, as when it dies right after git
    // updated them.
    let work = Scratch::new();
    git(&work.0, &["init", "-q"]).unwrap();
    let sha = commit(&work.0, "a.txt", "a");
    git(&work.0, &["push", "-q", bare.to_str().unwrap(), "HEAD:main", "HEAD:refs/heads/feature"]).unwrap();
    assert!(p.push_intents().await.is_empty());

    let git = gateway::git::Git::new("git".into(), p.settings.data_dir.clone());
    assert_eq!(git.reconcile_all(&p.adapters.bus).await, 2);
    let pushed = wait_pushes(&p, 2).await;
    let mut refs: Vec<&str> = pushed.iter().map(|x| x.git_ref.as_str()).collect();
    refs.sort();
    assert_eq!(refs, ["refs/heads/feature", "refs/heads/main"]);
    assert!(pushed.iter().all(|x| x.after == sha));
    // Announced once: a second round finds nothing new, and the stream holds no duplicate.
    assert_eq!(git.reconcile_all(&p.adapters.bus).await, 0);
    assert_eq!(p.push_intents().await.len(), 2);
    client.cancel().await.unwrap();
}
