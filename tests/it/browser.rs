//! The web pages in a real headless Chromium (Debian's `chromium`, driven through
//! `chromedriver` over WebDriver): sign up, create a key, see it listed, revoke it (the key
//! stops working), delegate a zone. Every step leaves a screenshot in
//! `<target>/tmp/screenshots/` (CARGO_TARGET_TMPDIR), printed at the end.
//!
//! Chromium runs with background networking off and a fresh profile, and only ever loads the
//! test gateway on 127.0.0.1.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use deploy_mcp_tests::{TestPlatform, eventually, mcp_status, unique};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::json;

use crate::web::WEB;

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: tokio::process::Child,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

async fn browser() -> (Driver, Client) {
    let bin = std::env::var("DEPLOY_MCP_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let chromium = std::env::var("DEPLOY_MCP_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let port = free_port().await;
    let child = tokio::process::Command::new(&bin)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin} ({e}): scripts/test installs chromium-driver"));
    let url = format!("http://127.0.0.1:{port}");
    let profile = std::env::temp_dir().join(unique("deploy-mcp-chromium-"));
    let driver = Driver { child, profile: profile.clone() };
    let caps = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--disable-default-apps", "--window-size=1100,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }
    });
    let caps = caps.as_object().unwrap().clone();
    let client = eventually(Duration::from_secs(20), "chromedriver to start a session", || {
        let (url, caps) = (url.clone(), caps.clone());
        async move {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(&url)
                .await
                .ok()
        }
    })
    .await;
    (driver, client)
}

/// Saves a screenshot of the page; returns its path.
async fn shot(c: &Client, dir: &std::path::Path, name: &str) -> PathBuf {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 2_000, "{name}: a real PNG");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    path
}

/// Waits until the browser is on `path` (a click's navigation may still be under way), or
/// fails with the page it is on.
async fn arrive(c: &Client, path: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if c.current_url().await.unwrap().path() == path {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!("not on {path}: {}", c.source().await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The element, once the page has it (a click's navigation may still be under way).
async fn element(c: &Client, css: &str) -> fantoccini::elements::Element {
    match c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(css)).await {
        Ok(e) => e,
        Err(e) => panic!("no `{css}` ({e}) on {}", c.source().await.unwrap()),
    }
}

async fn fill(c: &Client, css: &str, text: &str) {
    element(c, css).await.send_keys(text).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    element(c, css).await.click().await.unwrap();
}

async fn text(c: &Client, css: &str) -> String {
    element(c, css).await.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(clippy::print_stdout, reason = "the screenshots' paths are what this test produces for people")]
async fn sign_up_create_list_revoke_a_key_and_delegate_a_zone_in_chromium() {
    let p = TestPlatform::start(WEB).await;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let (_driver, c) = browser().await;
    let mut shots = Vec::new();

    // Not signed in: the settings page sends the browser to sign in first.
    c.goto(&format!("{}/settings", p.base_url)).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/signin");
    shots.push(shot(&c, &dir, "01-sign-in").await);

    fill(&c, "#email", "browser@example.test").await;
    fill(&c, "#password", "correct horse battery").await;
    click(&c, "button[value=sign_up]").await;
    arrive(&c, "/settings").await;
    assert!(c.source().await.unwrap().contains("You have no API keys yet"));
    shots.push(shot(&c, &dir, "02-settings").await);

    fill(&c, "#label", "laptop").await;
    click(&c, "form[action='/settings/keys'] button").await;
    let key = text(&c, "#new-key").await;
    assert!(key.starts_with("dk_live_") && key.len() == 48, "the key is shown: {key}");
    shots.push(shot(&c, &dir, "03-key-created").await);
    assert_eq!(mcp_status(&p.mcp_url(), &key).await, StatusCode::OK, "the new key works");

    c.goto(&format!("{}/settings", p.base_url)).await.unwrap();
    let prefix = &key[..16];
    let listed = c.source().await.unwrap();
    assert!(listed.contains(prefix) && !listed.contains(&key), "listed by prefix, never shown again");
    shots.push(shot(&c, &dir, "04-key-listed").await);

    click(&c, &format!("button[aria-label='Revoke {prefix}']")).await;
    assert!(text(&c, ".notice").await.contains("is revoked"));
    assert!(c.source().await.unwrap().contains("revoked 20"), "the table shows when");
    shots.push(shot(&c, &dir, "05-key-revoked").await);
    eventually(Duration::from_secs(10), "the revoked key refused", || {
        let (p, key) = (&p, key.clone());
        async move { (mcp_status(&p.mcp_url(), &key).await == StatusCode::UNAUTHORIZED).then_some(()) }
    })
    .await;

    click(&c, "a[href='/dns']").await;
    fill(&c, "#zone", "browser-apps.example.test").await;
    click(&c, "form[action='/dns'] button").await;
    assert!(text(&c, ".notice").await.contains("browser-apps.example.test"));
    let page = c.source().await.unwrap();
    for expected in ["_dp-verify.browser-apps.example.test", "pending", "NS records"] {
        assert!(page.contains(expected), "{expected} on the DNS page");
    }
    shots.push(shot(&c, &dir, "06-zone-delegated").await);

    click(&c, "form[action='/signout'] button").await;
    arrive(&c, "/signin").await;
    c.close().await.unwrap();
    for s in &shots {
        println!("screenshot: {}", s.display());
    }
}
