//! The git server end to end: MCP tools for repos and tokens, real `git push` and `git clone`
//! over HTTP, and the `PushReceived` intents a push produces.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use deploy_mcp::Components;
use deploy_mcp_tests::{Scratch, TestPlatform, call_tool, commit, eventually, git, mcp_client, tool_err, tool_ok};
use events::PushReceived;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

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

/// A repository of a fresh account, with what a test needs to reach it by hand.
struct Repo {
    client: deploy_mcp_tests::Client,
    /// `/git/<owner>/<name>.git`.
    path: String,
    token: String,
    /// The clone URL with the token in it.
    url: String,
    /// The bare repository on disk.
    bare: PathBuf,
}

async fn new_repo(p: &TestPlatform, email: &str, name: &str) -> Repo {
    let (key, _) = p.new_key(email).await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    let made = tool_ok(call_tool(&client, "create_repo", json!({ "name": name })).await);
    let creds = tool_ok(call_tool(&client, "get_git_token", json!({ "name": name })).await);
    let path = made["clone_url"].as_str().unwrap().strip_prefix(&p.base_url).unwrap().to_owned();
    let owner: events::UserId =
        tool_ok(call_tool(&client, "whoami", json!({})).await)["user_id"].as_str().unwrap().parse().unwrap();
    let found = gateway::repos::find(&p.commands(), owner, name).await.unwrap().unwrap();
    Repo {
        client,
        path,
        token: creds["token"].as_str().unwrap().to_owned(),
        url: creds["authenticated_url"].as_str().unwrap().to_owned(),
        bare: gateway::repos::repo_dir(&p.settings.data_dir, found.repo_id),
    }
}

/// A pkt-line of the git protocol.
fn pkt(line: &str) -> String {
    format!("{:04x}{line}", line.len() + 4)
}

/// Opens an HTTP/1.1 request written by hand, so that the test decides when (and whether) its
/// body ends. `headers` are extra header lines, each ending in `\r\n`.
async fn open_request(p: &TestPlatform, method: &str, path: &str, token: &str, headers: &str) -> TcpStream {
    let addr = p.base_url.strip_prefix("http://").unwrap();
    let auth = reqwest::Client::new().get(&p.base_url).basic_auth("git", Some(token)).build().unwrap();
    let auth = auth.headers()[reqwest::header::AUTHORIZATION].to_str().unwrap().to_owned();
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n{headers}\r\n");
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
}

/// A push whose pack never finishes arriving: the commands, then a pack header announcing one
/// object, and nothing more (chunked, without the last chunk).
async fn hold_a_push(p: &TestPlatform, repo: &Repo) -> TcpStream {
    let headers = "Content-Type: application/x-git-receive-pack-request\r\nTransfer-Encoding: chunked\r\n";
    let mut socket = open_request(p, "POST", &format!("{}/git-receive-pack", repo.path), &repo.token, headers).await;
    let zero = "0".repeat(40);
    let new = "1".repeat(40);
    let mut body =
        format!("{}0000", pkt(&format!("{zero} {new} refs/heads/held\0report-status side-band-64k\n"))).into_bytes();
    body.extend_from_slice(b"PACK\0\0\0\x02\0\0\0\x01");
    socket.write_all(format!("{:x}\r\n", body.len()).as_bytes()).await.unwrap();
    socket.write_all(&body).await.unwrap();
    socket.write_all(b"\r\n").await.unwrap();
    socket
}

/// How many processes work inside `dir` (git http-backend, and the commands it runs, enter the
/// repository they serve).
fn processes_in(dir: &Path) -> usize {
    let Ok(dir) = dir.canonicalize() else { return 0 };
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd == dir))
        .count()
}

/// Writes `bytes` random (incompressible) bytes to `file`.
fn random_file(file: &Path, bytes: u64) {
    let mut source = std::fs::File::open("/dev/urandom").unwrap().take(bytes);
    let mut out = std::fs::File::create(file).unwrap();
    std::io::copy(&mut source, &mut out).unwrap();
}

/// Commits `bytes` random bytes as `file` (stored without compression: the data does not
/// compress, and zlib would only cost the test time).
fn commit_random(dir: &Path, file: &str, bytes: u64) -> String {
    random_file(&dir.join(file), bytes);
    git(dir, &["-c", "core.compression=0", "add", file]).unwrap();
    git(dir, &["commit", "-q", "-m", &format!("add {file}")]).unwrap();
    git(dir, &["rev-parse", "HEAD"]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_pushes_and_clones_stream_through_the_gateway() {
    let p = TestPlatform::start(Components::ALL).await;
    let repo = new_repo(&p, "large@example.test", "big").await;

    // A push of 48 MiB of incompressible data goes through.
    let work = Scratch::new();
    git(&work.0, &["init", "-q"]).unwrap();
    let sha = commit_random(&work.0, "blob.bin", 48 << 20);
    git(&work.0, &["-c", "pack.compression=0", "push", "-q", &repo.url, "HEAD:main"]).unwrap();
    assert_eq!(wait_pushes(&p, 1).await[0].after, sha);

    // A push's body reaches git while it is still arriving: a backend works on a push whose
    // pack has not finished (buffered whole, nothing would run until the last byte).
    let held = hold_a_push(&p, &repo).await;
    eventually(Duration::from_secs(10), "a backend serving the unfinished push", || async {
        (processes_in(&repo.bare) > 0).then_some(())
    })
    .await;
    drop(held);
    eventually(Duration::from_secs(10), "the abandoned push's backend to end", || async {
        (processes_in(&repo.bare) == 0).then_some(())
    })
    .await;

    // A clone's pack reaches the client while git still produces it: with the first bytes in
    // hand and the rest left unread, the backend is still running (buffered whole, it would
    // have finished before the first byte left).
    let body = format!("{}0000{}", pkt(&format!("want {sha} side-band-64k ofs-delta\n")), pkt("done\n"));
    let headers = format!("Content-Type: application/x-git-upload-pack-request\r\nContent-Length: {}\r\n", body.len());
    let mut clone = open_request(&p, "POST", &format!("{}/git-upload-pack", repo.path), &repo.token, &headers).await;
    clone.write_all(body.as_bytes()).await.unwrap();
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    while !first.windows(4).any(|w| w == b"\r\n\r\n") || first.len() < 1024 {
        let n =
            tokio::time::timeout(Duration::from_secs(20), clone.read(&mut buf)).await.expect("first bytes").unwrap();
        assert!(n > 0, "the connection closed early: {}", String::from_utf8_lossy(&first));
        first.extend_from_slice(&buf[..n]);
    }
    assert!(first.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first[..200.min(first.len())]));
    assert!(processes_in(&repo.bare) > 0, "the backend had finished before the first bytes of its 48 MiB answer left");
    drop(clone);
    eventually(Duration::from_secs(10), "the abandoned clone's backend to end", || async {
        (processes_in(&repo.bare) == 0).then_some(())
    })
    .await;

    // And a real clone gets all of it.
    let copy = Scratch::new();
    git(&copy.0, &["clone", "-q", &repo.url, "copy"]).unwrap();
    assert_eq!(git(&copy.0.join("copy"), &["rev-parse", "HEAD"]).unwrap(), sha);
    assert_eq!(std::fs::metadata(copy.0.join("copy/blob.bin")).unwrap().len(), 48 << 20);
    repo.client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_runs_at_most_four_git_requests_at_once() {
    let p = TestPlatform::start(Components::ALL).await;
    let repo = new_repo(&p, "greedy@example.test", "app").await;
    let neighbour = new_repo(&p, "neighbour@example.test", "app").await;
    assert_eq!(info_refs(&p, &repo.path, Some(&repo.token)).await.0, StatusCode::OK);

    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(hold_a_push(&p, &repo).await);
    }
    let body = eventually(Duration::from_secs(10), "the fifth request to be refused", || async {
        let (status, body) = info_refs(&p, &repo.path, Some(&repo.token)).await;
        (status == StatusCode::TOO_MANY_REQUESTS).then_some(body)
    })
    .await;
    assert!(body.contains('4') && body.contains("wait"), "{body}");
    // Other users are not held up.
    assert_eq!(info_refs(&p, &neighbour.path, Some(&neighbour.token)).await.0, StatusCode::OK);

    // A request that ends gives its place back.
    drop(held.pop());
    eventually(Duration::from_secs(10), "a place to free up", || async {
        (info_refs(&p, &repo.path, Some(&repo.token)).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    drop(held);
    repo.client.cancel().await.unwrap();
    neighbour.client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_with_a_corrupt_object_is_refused() {
    let p = TestPlatform::start(Components::ALL).await;
    let repo = new_repo(&p, "corrupt@example.test", "app").await;
    let work = Scratch::new();
    git(&work.0, &["init", "-q"]).unwrap();
    std::fs::write(work.0.join("a.txt"), "a").unwrap();
    git(&work.0, &["add", "."]).unwrap();
    let tree = git(&work.0, &["write-tree"]).unwrap();
    // A commit whose author line has no valid date: git refuses to write one, except literally.
    let raw = format!(
        "tree {tree}\nauthor Agent <agent@example.test> not-a-date +0000\n\
         committer Agent <agent@example.test> 1700000000 +0000\n\nbroken\n"
    );
    std::fs::write(work.0.join("commit.raw"), raw).unwrap();
    let bad = git(&work.0, &["hash-object", "-t", "commit", "--literally", "-w", "commit.raw"]).unwrap();

    let err = git(&work.0, &["push", &repo.url, &format!("{bad}:refs/heads/main")])
        .expect_err("a push with a malformed commit must be refused");
    assert!(err.contains("remote rejected") || err.contains("unpack"), "{err}");
    assert!(err.contains("badDate") || err.contains("fsck"), "{err}");
    assert_eq!(git(&work.0, &["ls-remote", &repo.url]).unwrap(), "", "no ref was created");
    assert!(p.push_intents().await.is_empty());
    repo.client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_past_the_size_limits_are_refused_with_instructions() {
    let p = TestPlatform::start_with(&deploy_mcp_tests::shared_nats_url().await, Components::ALL, |s| {
        s.git_max_push_mb = 1;
        s.git_max_repo_mb = 3;
    })
    .await;
    let repo = new_repo(&p, "heavy@example.test", "app").await;

    // One push of 2 MiB, over the 1 MiB a push may carry.
    let work = Scratch::new();
    git(&work.0, &["init", "-q"]).unwrap();
    commit_random(&work.0, "big.bin", 2 << 20);
    let err = git(&work.0, &["push", &repo.url, "HEAD:main"]).expect_err("a push over the limit must be refused");
    assert!(err.contains("remote:") && err.contains("larger than 1 MiB"), "{err}");
    assert!(err.to_lowercase().contains("remove large files"), "{err}");
    assert_eq!(git(&work.0, &["ls-remote", &repo.url]).unwrap(), "", "no ref was created");
    // Far over it: the gateway stops reading, and the refusal still reaches the client.
    commit_random(&work.0, "bigger.bin", 6 << 20);
    let err = git(&work.0, &["push", &repo.url, "HEAD:main"]).expect_err("a push over the limit must be refused");
    assert!(err.contains("remote:") && err.contains("larger than 1 MiB"), "{err}");
    assert_eq!(git(&work.0, &["ls-remote", &repo.url]).unwrap(), "", "no ref was created");

    // Pushes under the push limit fill the repository up to its 3 MiB; the one that would
    // pass it is refused.
    let work = Scratch::new();
    git(&work.0, &["init", "-q"]).unwrap();
    for i in 0..3 {
        commit_random(&work.0, &format!("part{i}.bin"), 900 << 10);
        git(&work.0, &["-c", "pack.compression=0", "push", "-q", &repo.url, "HEAD:main"])
            .unwrap_or_else(|e| panic!("push {i} is within the limits: {e}"));
    }
    let pushed = git(&work.0, &["rev-parse", "HEAD"]).unwrap();
    commit_random(&work.0, "part3.bin", 900 << 10);
    let err = git(&work.0, &["-c", "pack.compression=0", "push", &repo.url, "HEAD:main"])
        .expect_err("a push past the repository limit must be refused");
    assert!(err.contains("remote:") && err.contains("3 MiB"), "{err}");
    assert!(err.contains("create_repo"), "{err}");
    assert!(git(&work.0, &["ls-remote", &repo.url]).unwrap().starts_with(&pushed), "main stayed where it was");
    repo.client.cancel().await.unwrap();
}
