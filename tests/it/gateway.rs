use std::time::Duration;

use deploy_mcp::Components;
use deploy_mcp_tests::{NatsProcess, TestPlatform, eventually, mcp_client};
use reqwest::StatusCode;
use rmcp::model::CallToolRequestParams;

async fn call(p: &TestPlatform, auth: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(p.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

async fn assert_401(p: &TestPlatform, auth: Option<&str>, says: &str) {
    let res = call(p, auth).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"", p.base_url)),
        "{challenge}"
    );
    let body: serde_json::Value = res.json().await.unwrap();
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains(says), "{auth:?}: `{description}` should say `{says}`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_get_401_with_the_resource_metadata_challenge() {
    let p = TestPlatform::start(Components::ALL).await;
    let (key, _) = p.new_key("auth@example.test").await;
    assert_401(&p, None, "Authorization: Bearer").await;
    assert_401(&p, Some(&format!("Basic {key}")), "Bearer scheme").await;
    assert_401(&p, Some("Bearer dk_live_short"), "malformed").await;
    assert_401(&p, Some("Bearer sk_live_0000"), "start with").await;
    let unknown = format!("dk_live_{}", "a".repeat(40));
    assert_401(&p, Some(&format!("Bearer {unknown}")), "not valid").await;
    // Right prefix, wrong secret.
    let forged = format!("{}{}", &key[..16], "z".repeat(32));
    assert_401(&p, Some(&format!("Bearer {forged}")), "not valid").await;
    // And the real key passes.
    assert_eq!(call(&p, Some(&format!("Bearer {key}"))).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_working() {
    let p = TestPlatform::start(Components::ALL).await;
    let (key, prefix) = p.new_key("revoke@example.test").await;
    let bearer = format!("Bearer {key}");
    assert_eq!(call(&p, Some(&bearer)).await.status(), StatusCode::OK, "verified and cached");
    gateway::accounts::revoke_api_key(&p.commands(), &prefix).await.unwrap();
    eventually(Duration::from_secs(5), "the revoked key to be refused", || {
        let bearer = bearer.clone();
        let p = &p;
        async move { (call(p, Some(&bearer)).await.status() == StatusCode::UNAUTHORIZED).then_some(()) }
    })
    .await;
    assert_401(&p, Some(&bearer), "revoked").await;
    // Revoking twice is fine; an unknown prefix is an actionable error.
    gateway::accounts::revoke_api_key(&p.commands(), &prefix).await.unwrap();
    let err = gateway::accounts::revoke_api_key(&p.commands(), "dk_live_nothere0").await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_lists_tools_and_asks_who_it_is() {
    let p = TestPlatform::start(Components::ALL).await;
    let (key, prefix) = p.new_key("Agent@Example.TEST").await;
    let client = mcp_client(&p.mcp_url(), &key).await.expect("MCP client connects");
    let tools = client.list_all_tools().await.unwrap();
    let whoami = tools.iter().find(|t| t.name == "whoami").expect("whoami is listed");
    let annotations = whoami.annotations.as_ref().expect("annotated");
    assert_eq!(annotations.read_only_hint, Some(true));
    assert_eq!(annotations.destructive_hint, Some(false));
    assert!(whoami.output_schema.is_some(), "structured output has a schema");
    assert!(whoami.description.as_deref().unwrap_or_default().len() > 40, "described for an agent");

    let result = client.call_tool(CallToolRequestParams::new("whoami")).await.unwrap();
    assert_ne!(result.is_error, Some(true));
    let out = result.structured_content.expect("structured output");
    assert_eq!(out["email"], "agent@example.test");
    assert_eq!(out["api_key_prefix"], prefix.as_str());
    assert!(out["user_id"].as_str().unwrap().starts_with("usr_"));
    assert_eq!(out["limits"]["max_services"], events::Limits::default().max_services);
    client.cancel().await.unwrap();

    // Without a key the client cannot even connect.
    assert!(mcp_client(&p.mcp_url(), "dk_live_nope").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_resource_metadata() {
    let mut nats = NatsProcess::spawn().await;
    let p = TestPlatform::start_on(&nats.url(), Components::ALL).await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", p.base_url)).send();

    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"postgres": "ok", "nats": "ok"}));

    let meta: serde_json::Value = get("/.well-known/oauth-protected-resource/mcp").await.unwrap().json().await.unwrap();
    assert_eq!(meta["resource"], format!("{}/mcp", p.base_url));
    assert_eq!(meta["bearer_methods_supported"], serde_json::json!(["header"]));

    nats.kill();
    let res = eventually(Duration::from_secs(10), "readyz to report NATS down", || async {
        let res = get("/readyz").await.ok()?;
        (res.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(res)
    })
    .await;
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["postgres"], "ok");
    assert_ne!(body["nats"], "ok");
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK, "liveness does not depend on NATS");

    nats.start().await;
    eventually(Duration::from_secs(15), "readyz to recover", || async {
        (get("/readyz").await.ok()?.status() == StatusCode::OK).then_some(())
    })
    .await;
}
