//! The OAuth 2.1 authorization server (issue 7): discovery so far. An MCP client starts from the
//! 401 on /mcp, follows `resource_metadata` to the protected resource metadata, and from its
//! `authorization_servers` to the RFC 8414 metadata.

use deploy_mcp::Components;
use deploy_mcp_tests::TestPlatform;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_from_the_401_reaches_the_authorization_server_metadata() {
    let p = TestPlatform::start(Components::ALL).await;
    let http = reqwest::Client::new();
    let res = http
        .post(p.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let resource_metadata = challenge.split("resource_metadata=\"").nth(1).unwrap().split('"').next().unwrap();

    let prm: Value = http.get(resource_metadata).send().await.unwrap().json().await.unwrap();
    assert_eq!(prm["resource"], p.mcp_url());
    assert_eq!(prm["authorization_servers"], json!([p.base_url]));
    let issuer = prm["authorization_servers"][0].as_str().unwrap();

    let res = http.get(format!("{issuer}/.well-known/oauth-authorization-server")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let meta: Value = res.json().await.unwrap();
    assert_eq!(meta["issuer"], issuer, "RFC 8414 §3.3: the issuer is the URL the metadata was derived from");
    assert_eq!(meta["authorization_endpoint"], format!("{issuer}/oauth/authorize"));
    assert_eq!(meta["token_endpoint"], format!("{issuer}/oauth/token"));
    assert_eq!(meta["registration_endpoint"], format!("{issuer}/oauth/register"));
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["response_types_supported"], json!(["code"]));
    assert_eq!(meta["grant_types_supported"], json!(["authorization_code", "refresh_token"]));
    assert_eq!(meta["token_endpoint_auth_methods_supported"], json!(["none"]));
    assert_eq!(meta["client_id_metadata_document_supported"], true);
}
