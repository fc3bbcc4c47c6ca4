//! Custom domains end to end: a zone delegated from a parent zone served by the real PowerDNS,
//! verified and activated, a wildcard certificate from pebble over DNS-01, a domain attached
//! to a deployed app, resolved with real DNS queries and fetched over HTTPS through the router.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use deploy_mcp::Components;
use deploy_mcp_tests::{Scratch, TestPlatform, call_tool, eventually, git, mcp_client, tool_err, tool_ok, unique};
use rmcp::RoleClient;
use rmcp::service::RunningService;
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ()>;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run `eval \"$(scripts/test --setup-only)\"` first"))
}

fn pdns() -> dnsops::PowerDns {
    dnsops::PowerDns::new(&env("DEPLOY_MCP_PDNS_URL"), &env("DEPLOY_MCP_PDNS_API_KEY"))
}

fn checker() -> dnsops::Checker {
    dnsops::Checker::new("127.0.0.1:15353".parse().unwrap())
}

/// A parent zone of the test's own on PowerDNS, removed on drop.
struct Parent {
    zone: String,
}

impl Parent {
    async fn new() -> Self {
        let zone = format!("{}.test", unique("p").replace('_', "").to_lowercase());
        pdns().ensure_zone(&zone, &["ns1.parent.test".to_owned()]).await.unwrap();
        Self { zone }
    }

    /// Publishes what the platform asked for (or not) in the parent.
    async fn publish(&self, child: &str, txt: Option<&str>, ns: Option<&[String]>) {
        let p = pdns();
        if let Some(txt) = txt {
            p.set_rrset(&self.zone, &format!("_dp-verify.{child}"), "TXT", 60, &[txt.to_owned()]).await.unwrap();
        }
        if let Some(ns) = ns {
            p.set_rrset(&self.zone, child, "NS", 60, ns).await.unwrap();
        }
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        let zone = self.zone.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async { pdns().delete_zone(&zone).await })
        })
        .join();
    }
}

async fn delegate(p: &TestPlatform, key: &str, zone: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/zones", p.base_url))
        .bearer_auth(key)
        .json(&json!({ "zone": zone }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn zone_status(client: &Client, zone: &str) -> Value {
    let all = tool_ok(call_tool(client, "list_delegations", json!({})).await);
    all["zones"].as_array().unwrap().iter().find(|z| z["zone"] == zone).cloned().unwrap_or(Value::Null)
}

async fn wait_zone(client: &Client, zone: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(60), what, || async {
        let z = zone_status(client, zone).await;
        check(&z).then_some(z)
    })
    .await
}

async fn deploy_static(client: &Client, p: &TestPlatform, name: &str) {
    tool_ok(call_tool(client, "create_repo", json!({ "name": name })).await);
    let token = tool_ok(call_tool(client, "get_git_token", json!({ "name": name })).await);
    let dir = Scratch::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/apps/static/index.html");
    std::fs::copy(fixture, dir.0.join("index.html")).unwrap();
    git(&dir.0, &["init", "-q"]).unwrap();
    git(&dir.0, &["add", "."]).unwrap();
    git(&dir.0, &["commit", "-q", "-m", "site"]).unwrap();
    git(&dir.0, &["push", "-q", token["authenticated_url"].as_str().unwrap(), "HEAD:main"]).unwrap();
    let created =
        tool_ok(call_tool(client, "create_service", json!({ "repo": name, "name": name, "wait": true })).await);
    assert_eq!(created["status"], "live", "{created}");
    let _ = p;
}

/// An HTTPS client that trusts only pebble's issuing root and resolves `host` to the router.
async fn https_client(host: &str, router: SocketAddr) -> reqwest::Client {
    let mgmt = env("DEPLOY_MCP_PEBBLE_MGMT");
    let insecure = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let root = insecure.get(format!("{mgmt}/roots/0")).send().await.unwrap().text().await.unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(root.as_bytes()).unwrap()])
        .resolve(host, router)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delegated_zone_serves_a_custom_domain_over_https_with_a_pebble_certificate() {
    let parent = Parent::new().await;
    let mut p = TestPlatform::start(Components::ALL).await;
    let (key, _) = p.new_key("domains@example.test").await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    let zone = format!("apps.{}", parent.zone);

    let (status, asked) = delegate(&p, &key, &zone).await;
    assert_eq!(status, 201, "{asked}");
    assert_eq!(asked["txt_name"], format!("_dp-verify.{zone}"));
    let nameservers: Vec<String> = serde_json::from_value(asked["nameservers"].clone()).unwrap();
    // The TXT first (the NS records hide names under the zone once they exist), then the NS.
    parent.publish(&zone, asked["txt_value"].as_str(), None).await;
    wait_zone(&client, &zone, "the TXT seen", |z| z["missing"].as_array().is_some_and(|m| m.len() == 1)).await;
    parent.publish(&zone, None, Some(&nameservers)).await;
    let active = wait_zone(&client, &zone, "the zone active with a certificate", |z| {
        z["status"] == "active" && z["certificate_valid_until"].is_string()
    })
    .await;
    assert_eq!(active["missing"], json!([]), "{active}");

    deploy_static(&client, &p, "site").await;
    let domain = format!("www.{zone}");
    let added = tool_ok(call_tool(&client, "add_custom_domain", json!({ "name": "site", "domain": domain })).await);
    let url = added["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("https://{domain}:")), "{added}");
    let ips = eventually(Duration::from_secs(20), "the domain to resolve", || async {
        let ips = checker().a(&domain).await.ok()?;
        (!ips.is_empty()).then_some(ips)
    })
    .await;
    assert_eq!(ips, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);

    let running = p.running.as_ref().unwrap();
    let (tls, plain) = (running.router_tls_addr.unwrap(), running.router_addr.unwrap());
    let https = https_client(&domain, tls).await;
    let body = eventually(Duration::from_secs(20), "the domain served over HTTPS", || async {
        let r = https.get(&url).send().await.ok()?;
        (r.status() == 200).then_some(())?;
        r.text().await.ok()
    })
    .await;
    assert!(body.contains("static fixture v1"), "{body}");
    // Plain HTTP redirects to HTTPS once a certificate covers the host.
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_redirects.get(format!("http://{plain}/a?b=1")).header("host", &domain).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 308);
    assert_eq!(r.headers()["location"].to_str().unwrap(), format!("{url}/a?b=1"));

    // Outside any zone, and a zone of another user.
    let e = tool_err(
        call_tool(&client, "add_custom_domain", json!({ "name": "site", "domain": "www.elsewhere.test" })).await,
    );
    assert_eq!(e["error"], "invalid_argument", "{e}");
    let (other_key, _) = p.new_key("squatter@example.test").await;
    let (status, refused) = delegate(&p, &other_key, &zone).await;
    assert_eq!(status, 409, "{refused}");

    let removed = tool_ok(call_tool(&client, "remove_custom_domain", json!({ "domain": domain })).await);
    assert_eq!(removed["deleted"], true);
    eventually(Duration::from_secs(20), "the record and the route gone", || async {
        let record = pdns().rrset(&zone, &domain, "A").await.ok()?;
        let routed = https.get(&url).send().await.ok()?.status().as_u16();
        (record.is_empty() && routed == 404).then_some(())
    })
    .await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delegation_says_what_is_missing_and_expires_unverified() {
    let parent = Parent::new().await;
    let mut p = TestPlatform::start(Components { builder: false, ..Components::ALL }).await;
    let (key, _) = p.new_key("pending@example.test").await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();

    // A wrong TXT value, then the right one without the NS delegation.
    let zone = format!("wrong.{}", parent.zone);
    let (_, asked) = delegate(&p, &key, &zone).await;
    parent.publish(&zone, Some("deploy-mcp-verify=not-it"), None).await;
    let z = wait_zone(&client, &zone, "the wrong TXT reported", |z| {
        // The wrong value itself is quoted (before it was published, the TXT was only "not visible").
        z["missing"].as_array().is_some_and(|m| m.iter().any(|s| s.as_str().unwrap().contains("not-it")))
    })
    .await;
    assert_eq!(z["status"], "pending", "{z}");
    parent.publish(&zone, asked["txt_value"].as_str(), None).await;
    let z = wait_zone(&client, &zone, "only the NS delegation missing", |z| {
        z["missing"].as_array().is_some_and(|m| m.len() == 1 && m[0].as_str().unwrap().to_lowercase().contains("ns"))
    })
    .await;
    assert_eq!(z["status"], "pending", "{z}");
    assert!(z["missing"][0].as_str().unwrap().contains(asked["nameservers"][0].as_str().unwrap()), "{z}");
    p.stop().await;

    // With no time to verify, a delegation expires and its name is free again.
    let mut p = TestPlatform::start_with(
        &deploy_mcp_tests::shared_nats_url().await,
        Components { builder: false, ..Components::ALL },
        |s| {
            s.zone_expiry_days = 0;
        },
    )
    .await;
    let (key, _) = p.new_key("late@example.test").await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    let zone = format!("late.{}", parent.zone);
    delegate(&p, &key, &zone).await;
    wait_zone(&client, &zone, "the delegation expired", |z| z["status"] == "expired").await;
    let (other, _) = p.new_key("next@example.test").await;
    let (status, again) = delegate(&p, &other, &zone).await;
    assert_eq!(status, 201, "an expired delegation frees the name: {again}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dns_service_restarted_mid_activation_activates_once_with_one_certificate() {
    let parent = Parent::new().await;
    let mut p = TestPlatform::start(Components { builder: false, dns: false, ..Components::ALL }).await;
    let (key, prefix) = p.new_key("restart-dns@example.test").await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    let zone = format!("r.{}", parent.zone);
    let (_, asked) = delegate(&p, &key, &zone).await;
    let nameservers: Vec<String> = serde_json::from_value(asked["nameservers"].clone()).unwrap();
    // Both at once: only the alternative TXT name stays visible under the delegation.
    let alternative = asked["txt_alternative_name"].as_str().unwrap().to_owned();
    pdns()
        .set_rrset(&parent.zone, &alternative, "TXT", 60, &[asked["txt_value"].as_str().unwrap().to_owned()])
        .await
        .unwrap();
    parent.publish(&zone, None, Some(&nameservers)).await;

    let only_dns = Components { dns: true, ..Components::NONE };
    let first = deploy_mcp::start(&p.settings, &p.adapters, only_dns, Default::default()).await.unwrap();
    wait_zone(&client, &zone, "the zone verified", |z| z["status"] != "pending").await;
    first.stop().await; // somewhere in activation or the certificate order
    let second = deploy_mcp::start(&p.settings, &p.adapters, only_dns, Default::default()).await.unwrap();
    wait_zone(&client, &zone, "the zone active and certified", |z| {
        z["status"] == "active" && z["certificate_valid_until"].is_string()
    })
    .await;
    let owner = p.adapters.store.api_key_by_prefix(&prefix).await.unwrap().unwrap().user_id;
    let row = p.adapters.store.zones_of(&owner, 10).await.unwrap().into_iter().find(|z| z.zone == zone).unwrap();
    let types = p.adapters.store.event_types(&row.zone_id).await.unwrap();
    let count = |t: &str| types.iter().filter(|x| *x == t).count();
    assert_eq!((count("ZoneVerified"), count("ZoneActivated"), count("CertificateIssued")), (1, 1, 1), "{types:?}");
    second.stop().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_base_domain_is_served_with_its_own_wildcard_certificate() {
    let base = format!("{}.test", unique("b").replace('_', "").to_lowercase());
    let domain = base.clone();
    let mut p = TestPlatform::start_with(&deploy_mcp_tests::shared_nats_url().await, Components::ALL, |s| {
        s.base_domain = domain;
        s.base_domain_dns = true;
    })
    .await;
    let (key, _) = p.new_key("base@example.test").await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    deploy_static(&client, &p, "home").await;
    let host = format!("home.{base}");
    let ips = eventually(Duration::from_secs(30), "the base zone served", || async {
        let ips = checker().a(&host).await.ok()?;
        (!ips.is_empty()).then_some(ips)
    })
    .await;
    assert_eq!(ips, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
    let tls = p.running.as_ref().unwrap().router_tls_addr.unwrap();
    let https = https_client(&host, tls).await;
    let url = format!("https://{host}:{}/", tls.port());
    let body = eventually(Duration::from_secs(30), "the service over HTTPS on the base domain", || async {
        let r = https.get(&url).send().await.ok()?;
        (r.status() == 200).then_some(())?;
        r.text().await.ok()
    })
    .await;
    assert!(body.contains("static fixture v1"), "{body}");
    // Users cannot delegate the platform's own zone.
    let (status, refused) = delegate(&p, &key, &base).await;
    assert_eq!(status, 409, "{refused}");
    pdns().delete_zone(&base).await.unwrap();
    p.stop().await;
}
