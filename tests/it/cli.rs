//! The `deploy-mcp` binary as an operator and `scripts/dev` use it.

use std::process::Stdio;
use std::time::Duration;

use deploy_mcp_tests::{TestDb, deploy_mcp_bin, mcp_client, shared_nats_url, unique};
use rmcp::model::CallToolRequestParams;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn bin(db: &TestDb, nats: &str, prefix: &str) -> Command {
    let path = deploy_mcp_bin();
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build -p deploy-mcp`; scripts/test does)",
        path.display()
    );
    let mut cmd = Command::new(path);
    cmd.env("DEPLOY_MCP_DATABASE_URL", &db.url)
        .env("DEPLOY_MCP_NATS_URL", nats)
        .env("DEPLOY_MCP_NATS_PREFIX", prefix)
        .env("DEPLOY_MCP_BCRYPT_COST", "4")
        .env("DEPLOY_MCP_LISTEN", "127.0.0.1:0")
        .env_remove("DEPLOY_MCP_PUBLIC_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_prints_a_working_mcp_url_key_and_claude_line() {
    let db = TestDb::create().await;
    let nats = shared_nats_url().await;
    let mut child =
        bin(&db, &nats, &unique("t")).arg("dev").stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut key, mut claude) = (None, None, None);
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let line = line.trim().to_owned();
            if let Some(u) = line.strip_prefix("MCP URL:") {
                url = Some(u.trim().to_owned());
            } else if let Some(k) = line.strip_prefix("API key:") {
                key = Some(k.trim().to_owned());
            } else if line.starts_with("claude mcp add") {
                claude = Some(line.clone());
            }
            if url.is_some() && key.is_some() && claude.is_some() {
                break;
            }
        }
    })
    .await
    .expect("deploy-mcp dev prints its connection details");
    let (url, key, claude) = (url.unwrap(), key.unwrap(), claude.unwrap());
    assert!(claude.contains("--transport http") && claude.contains(&url) && claude.contains(&key), "{claude}");

    let client = mcp_client(&url, &key).await.expect("connect with the printed key");
    assert!(client.list_all_tools().await.unwrap().iter().any(|t| t.name == "whoami"));
    let me = client.call_tool(CallToolRequestParams::new("whoami")).await.unwrap();
    assert_eq!(me.structured_content.unwrap()["email"], "dev@deploy-mcp.localhost");
    client.cancel().await.unwrap();
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_create_prints_only_the_key_and_revoke_takes_the_prefix() {
    let db = TestDb::create().await;
    let nats = shared_nats_url().await;
    let prefix = unique("t");
    let out =
        bin(&db, &nats, &prefix).args(["api-key", "create", "--email", "ops@example.test"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "only the key on stdout: {stdout:?}");
    assert!(gateway::keys::parse(key).is_ok(), "{key}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(key), "the key never reaches the logs");

    let key_prefix = gateway::keys::parse(key).unwrap().to_owned();
    let out = bin(&db, &nats, &prefix).args(["api-key", "revoke", &key_prefix]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = bin(&db, &nats, &prefix).args(["api-key", "revoke", "dk_live_missing0"]).output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    let out = bin(&db, &nats, &prefix).args(["api-key", "create", "--email", "not-an-email"]).output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an e-mail address"));

    let stores = store::Store::connect(&db.url, 1).await.unwrap();
    assert_eq!(stores.event_count().await.unwrap(), 5, "claim + account + key claim + key + revocation");
    bus::Bus::connect(&nats, &prefix).await.unwrap().delete_streams().await.unwrap();
}

#[tokio::test]
async fn bad_configuration_exits_64() {
    let out =
        std::process::Command::new(deploy_mcp_bin()).args(["--listen", "not-an-address", "migrate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
}
