//! The OAuth 2.1 authorization server (issue 7), driven over HTTP the way an MCP client and a
//! browser would: discovery from the 401, registration, authorize, sign-up/sign-in with the CSRF
//! cookie and field, consent, the code on the redirect, token exchange and refresh.

use std::collections::HashMap;
use std::time::Duration;

use deploy_mcp::Components;
use deploy_mcp_tests::TestPlatform;
use reqwest::StatusCode;
use serde_json::{Value, json};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn query_of(location: &str) -> HashMap<String, String> {
    Url::parse(location).unwrap().query_pairs().into_owned().collect()
}

/// The `value` of the hidden input `name` in a page.
fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in {html}")) + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

async fn register(p: &TestPlatform) -> String {
    let res = http()
        .post(format!("{}/oauth/register", p.base_url))
        .json(&json!({"redirect_uris": [REDIRECT], "client_name": "Test <Client>", "client_uri": "https://client.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    body["client_id"].as_str().unwrap().to_owned()
}

fn authorize_url(p: &TestPlatform, client_id: &str, extra: &[(&str, &str)]) -> String {
    let challenge = gateway::oauth::pkce::s256(VERIFIER);
    let mcp = p.mcp_url();
    let mut pairs: HashMap<&str, &str> = HashMap::from([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("state", "st-1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("resource", mcp.as_str()),
    ]);
    for (k, v) in extra {
        if v.is_empty() {
            pairs.remove(k);
        } else {
            pairs.insert(k, v);
        }
    }
    let pairs: Vec<_> = pairs.into_iter().collect();
    format!("{}/oauth/authorize?{}", p.base_url, form(&pairs))
}

/// A browser session: the sign-in page's CSRF cookie and field.
struct Browser {
    cookie: String,
    page: String,
}

async fn open_sign_in(url: &str) -> Browser {
    let res = http().get(url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let set_cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    Browser { cookie, page: res.text().await.unwrap() }
}

/// Posts the sign-in form with `action`; returns the response.
async fn submit(
    p: &TestPlatform,
    b: &Browser,
    email: &str,
    password: &str,
    action: &str,
    csrf: bool,
) -> reqwest::Response {
    let names =
        ["response_type", "client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method", "resource"];
    let values: Vec<String> = names.iter().map(|n| field(&b.page, n)).collect();
    let csrf_value = field(&b.page, "csrf");
    let mut pairs: Vec<(&str, &str)> = names.iter().copied().zip(values.iter().map(String::as_str)).collect();
    pairs.extend([("email", email), ("password", password), ("action", action)]);
    if csrf {
        pairs.push(("csrf", &csrf_value));
    }
    http()
        .post(format!("{}/oauth/authorize", p.base_url))
        .header("cookie", &b.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&pairs))
        .send()
        .await
        .unwrap()
}

/// Signs up (or in) on the page at `url` and allows: returns the redirect's `Location`.
async fn sign_in_and_allow(p: &TestPlatform, url: &str, email: &str, action: &str) -> String {
    let b = open_sign_in(url).await;
    let res = submit(p, &b, email, "correct horse battery", action, true).await;
    assert_eq!(res.status(), StatusCode::OK);
    let consent = res.text().await.unwrap();
    assert!(consent.contains(email), "{consent}");
    let pairs =
        [("csrf", field(&consent, "csrf")), ("ticket", field(&consent, "ticket")), ("decision", "allow".into())];
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = http()
        .post(format!("{}/oauth/consent", p.base_url))
        .header("cookie", &b.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&pairs))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    res.headers()["location"].to_str().unwrap().to_owned()
}

/// Signs up (or in) and allows: returns the code from the redirect.
async fn get_code(p: &TestPlatform, client_id: &str, email: &str, action: &str) -> String {
    let url = authorize_url(p, client_id, &[]);
    let page = open_sign_in(&url).await.page;
    assert!(page.contains("Test &lt;Client&gt;"), "the client is named, escaped");
    let location = sign_in_and_allow(p, &url, email, action).await;
    assert!(location.starts_with(REDIRECT), "{location}");
    let q = query_of(&location);
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], p.base_url);
    q["code"].clone()
}

async fn token(p: &TestPlatform, pairs: &[(&str, &str)]) -> (StatusCode, Value) {
    let res = http()
        .post(format!("{}/oauth/token", p.base_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .unwrap();
    (res.status(), res.json().await.unwrap())
}

async fn exchange(
    p: &TestPlatform,
    client_id: &str,
    code: &str,
    redirect: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    token(
        p,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// Waits until the gateway refuses `token` (a revocation bites within about a second).
async fn refused(p: &TestPlatform, token: &str, what: &str) {
    deploy_mcp_tests::eventually(Duration::from_secs(10), what, || async {
        (tools_list(p, token).await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
}

async fn tools_list(p: &TestPlatform, token: &str) -> StatusCode {
    deploy_mcp_tests::mcp_status(&p.mcp_url(), token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_from_the_401_reaches_the_authorization_server_metadata() {
    let p = TestPlatform::start(Components::ALL).await;
    let res = http()
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

    let prm: Value = http().get(resource_metadata).send().await.unwrap().json().await.unwrap();
    assert_eq!(prm["resource"], p.mcp_url());
    assert_eq!(prm["authorization_servers"], json!([p.base_url]));
    let issuer = prm["authorization_servers"][0].as_str().unwrap();

    let res = http().get(format!("{issuer}/.well-known/oauth-authorization-server")).send().await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_consent_and_exchange_give_a_working_api_key_and_refresh_tokens_rotate() {
    let p = TestPlatform::start(Components::ALL).await;
    let client_id = register(&p).await;
    let code = get_code(&p, &client_id, "oauth@example.test", "sign_up").await;
    let (status, body) = exchange(&p, &client_id, &code, REDIRECT, VERIFIER).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(access.starts_with("dk_live_"), "the access token is an API key");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(tools_list(&p, &access).await, StatusCode::OK, "the access token works at once as Bearer on /mcp");

    // The code is single-use.
    let (status, body) = exchange(&p, &client_id, &code, REDIRECT, VERIFIER).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "reused code");

    // Refresh rotates: the new token works, the old one is refused (and revokes the family).
    let (status, rotated) =
        token(&p, &[("grant_type", "refresh_token"), ("client_id", &client_id), ("refresh_token", &refresh)]).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second = rotated["access_token"].as_str().unwrap().to_owned();
    assert_eq!(tools_list(&p, &second).await, StatusCode::OK);
    refused(&p, &access, "the superseded access token").await;
    let (status, replay) =
        token(&p, &[("grant_type", "refresh_token"), ("client_id", &client_id), ("refresh_token", &refresh)]).await;
    assert_eq!((status, replay["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let newest = rotated["refresh_token"].as_str().unwrap();
    let (status, _) =
        token(&p, &[("grant_type", "refresh_token"), ("client_id", &client_id), ("refresh_token", newest)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "replaying a rotated token revoked the family");
    refused(&p, &second, "the family's access token, after the replay").await;

    // Signing in again with the password works for the same account.
    let code = get_code(&p, &client_id, "oauth@example.test", "sign_in").await;
    assert_eq!(exchange(&p, &client_id, &code, REDIRECT, VERIFIER).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_need_the_right_verifier_redirect_uri_and_client() {
    let p = TestPlatform::start(Components::ALL).await;
    let client_id = register(&p).await;
    let other_client = register(&p).await;
    let wrong_verifier = format!("{}A", &VERIFIER[..42]);
    let cases = [
        (client_id.as_str(), REDIRECT, wrong_verifier.as_str(), "wrong verifier"),
        (client_id.as_str(), "http://127.0.0.1:9/other", VERIFIER, "mismatched redirect_uri"),
        (other_client.as_str(), REDIRECT, VERIFIER, "another client"),
    ];
    for (i, (client, redirect, verifier, what)) in cases.into_iter().enumerate() {
        let code = get_code(&p, &client_id, "codes@example.test", if i == 0 { "sign_up" } else { "sign_in" }).await;
        let (status, body) = exchange(&p, client, &code, redirect, verifier).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant")),
            "{what}: {body}"
        );
        // The failed attempt burnt the code.
        assert_eq!(exchange(&p, &client_id, &code, REDIRECT, VERIFIER).await.0, StatusCode::BAD_REQUEST, "{what}");
    }
    let (status, body) = token(&p, &[("grant_type", "password"), ("client_id", &client_id)]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unsupported_grant_type")));
    let (status, body) =
        token(&p, &[("grant_type", "authorization_code"), ("client_id", "nobody"), ("code", "x")]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_code_is_an_invalid_grant() {
    let nats = deploy_mcp_tests::shared_nats_url().await;
    let p = TestPlatform::start_with(&nats, Components::ALL, |s| s.oauth_code_ttl_secs = 1).await;
    let client_id = register(&p).await;
    let code = get_code(&p, &client_id, "expired@example.test", "sign_up").await;
    // Time passing is what is tested here: the code's lifetime is 1 s.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = exchange(&p, &client_id, &code, REDIRECT, VERIFIER).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("expired"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkce_is_required_s256_only_and_bad_redirects_get_a_page_not_a_redirect() {
    let p = TestPlatform::start(Components::ALL).await;
    let client_id = register(&p).await;
    for (extra, what) in [
        (vec![("code_challenge", ""), ("code_challenge_method", "")], "missing PKCE"),
        (vec![("code_challenge_method", "plain")], "plain PKCE"),
    ] {
        let res = http().get(authorize_url(&p, &client_id, &extra)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{what}");
        let q = query_of(res.headers()["location"].to_str().unwrap());
        assert_eq!(q["error"], "invalid_request", "{what}");
        assert_eq!(q["state"], "st-1");
        assert_eq!(q["iss"], p.base_url);
    }
    let res = http()
        .get(authorize_url(&p, &client_id, &[("resource", "https://elsewhere.example/mcp")]))
        .send()
        .await
        .unwrap();
    assert_eq!(query_of(res.headers()["location"].to_str().unwrap())["error"], "invalid_target");
    for extra in [vec![("redirect_uri", "https://evil.example/cb")], vec![("client_id", "unknown-client")]] {
        let res = http().get(authorize_url(&p, &client_id, &extra)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{extra:?}");
        assert!(res.headers().get("location").is_none(), "no open redirect");
        assert!(res.text().await.unwrap().contains("Sign-in cannot continue"));
    }
    let res = http()
        .post(format!("{}/oauth/register", p.base_url))
        .json(&json!({"redirect_uris": ["http://evil.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_redirect_uri");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_needs_the_csrf_token_and_is_throttled() {
    let p = TestPlatform::start(Components::ALL).await;
    let client_id = register(&p).await;
    let b = open_sign_in(&authorize_url(&p, &client_id, &[])).await;
    let res = submit(&p, &b, "csrf@example.test", "correct horse battery", "sign_up", false).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "CSRF token missing");
    assert!(res.text().await.unwrap().contains("CSRF"));
    // Signing up cannot take over an existing account (here one opened by the admin CLI).
    p.new_key("existing@example.test").await;
    let res = submit(&p, &b, "existing@example.test", "correct horse battery", "sign_up", true).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    for _ in 0..gateway::oauth::SIGN_IN_ATTEMPTS {
        let res = submit(&p, &b, "brute@example.test", "wrong password!", "sign_in", true).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = submit(&p, &b, "brute@example.test", "wrong password!", "sign_in", true).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.text().await.unwrap().contains("Too many sign-in attempts"));
}

/// The whole flow with rmcp's OAuth client: discovery from the 401, dynamic registration, the
/// authorization URL, sign-up and consent driven over HTTP, the code exchanged by rmcp's auth
/// manager (checking `state` and `iss`), then `whoami` over MCP with the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rmcp_oauth_client_connects_and_asks_who_it_is() {
    use rmcp::transport::auth::{AuthorizationManager, AuthorizationRequest, AuthorizationSession};

    let p = TestPlatform::start(Components::ALL).await;
    let res = http().post(p.mcp_url()).header("content-type", "application/json").body("{}").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();

    let mut manager = AuthorizationManager::new(p.mcp_url().as_str()).await.unwrap();
    let resolution = manager.resolve_metadata_from_challenge(Some(&challenge)).await.unwrap();
    assert_eq!(resolution.metadata.authorization_endpoint, format!("{}/oauth/authorize", p.base_url));
    manager.set_metadata(resolution.metadata);
    let request = AuthorizationRequest::new(REDIRECT).with_client_name("rmcp test client");
    let session = AuthorizationSession::new(manager, request).await.map_err(|(_, e)| e).unwrap();
    let url = session.get_authorization_url().to_owned();
    assert!(url.contains("code_challenge_method=S256") && url.contains("resource="), "{url}");

    let location = sign_in_and_allow(&p, &url, "rmcp@example.test", "sign_up").await;
    assert!(location.starts_with(REDIRECT), "{location}");
    session.handle_callback_url(&location).await.unwrap();
    let token = session.auth_manager.get_access_token().await.unwrap();
    assert!(token.starts_with("dk_live_"));

    let client = deploy_mcp_tests::mcp_client(&p.mcp_url(), &token).await.unwrap();
    let me = deploy_mcp_tests::tool_ok(deploy_mcp_tests::call_tool(&client, "whoami", json!({})).await);
    assert_eq!(me["email"], "rmcp@example.test", "{me}");

    // The new account has its place on the git server: a repository there takes a push.
    let namespace = format!("{}/git/{}/", p.base_url, me["user_id"].as_str().unwrap());
    assert_eq!(me["git_namespace"], namespace.as_str());
    let repo =
        deploy_mcp_tests::tool_ok(deploy_mcp_tests::call_tool(&client, "create_repo", json!({"name": "first"})).await);
    assert_eq!(repo["clone_url"], format!("{namespace}first.git"));
    let creds = deploy_mcp_tests::tool_ok(
        deploy_mcp_tests::call_tool(&client, "get_git_token", json!({"name": "first"})).await,
    );
    let work = deploy_mcp_tests::Scratch::new();
    deploy_mcp_tests::git(&work.0, &["init", "-q"]).unwrap();
    deploy_mcp_tests::commit(&work.0, "index.html", "<h1>hello</h1>");
    for c in serde_json::from_value::<Vec<String>>(creds["commands"].clone()).unwrap() {
        let args: Vec<&str> = c.strip_prefix("git ").unwrap().split(' ').collect();
        deploy_mcp_tests::git(&work.0, &args).unwrap_or_else(|e| panic!("`{c}` failed: {e}"));
    }
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_bound_to_another_resource_is_refused() {
    let p = TestPlatform::start(Components::ALL).await;
    let commands = p.commands();
    let user =
        gateway::accounts::ensure_account(&commands, "bound@example.test", events::Limits::default()).await.unwrap();
    let mut keys = Vec::new();
    for resource in [Some(p.mcp_url()), Some("https://elsewhere.example/mcp".to_owned()), None] {
        let issued = gateway::accounts::create_bound_api_key(&commands, user, "t", 4, resource).await.unwrap();
        keys.push(issued.key);
    }
    for key in &keys {
        deploy_mcp_tests::eventually(Duration::from_secs(10), "the key in the read model", || {
            let (store, prefix) = (p.adapters.store.clone(), key.prefix.clone());
            async move { store.api_key_by_prefix(&prefix).await.ok().flatten() }
        })
        .await;
    }
    assert_eq!(tools_list(&p, &keys[0].plaintext).await, StatusCode::OK, "bound to this MCP URL");
    assert_eq!(tools_list(&p, &keys[1].plaintext).await, StatusCode::UNAUTHORIZED, "bound to another resource");
    assert_eq!(tools_list(&p, &keys[2].plaintext).await, StatusCode::OK, "an unbound key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_are_also_limited_per_ip() {
    let p = TestPlatform::start(Components::ALL).await;
    let client_id = register(&p).await;
    let b = open_sign_in(&authorize_url(&p, &client_id, &[])).await;
    for i in 0..gateway::oauth::SIGN_IN_ATTEMPTS_PER_IP {
        let res = submit(&p, &b, &format!("u{i}@example.test"), "wrong password!", "sign_in", true).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let res = submit(&p, &b, "fresh@example.test", "wrong password!", "sign_in", true).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.text().await.unwrap().contains("from your network"));
}

/// A client identified by a Client ID Metadata Document, served here by a local axum server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_metadata_document_identifies_the_client() {
    let p = TestPlatform::start(Components::ALL).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client_id = format!("http://{}/oauth/client.json", listener.local_addr().unwrap());
    let doc = json!({
        "client_id": client_id,
        "client_name": "Document Client",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
    });
    let app =
        axum::Router::new().route("/oauth/client.json", axum::routing::get(move || async move { axum::Json(doc) }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let url = authorize_url(&p, &client_id, &[]);
    assert!(open_sign_in(&url).await.page.contains("Document Client"));
    let location = sign_in_and_allow(&p, &url, "doc@example.test", "sign_up").await;
    let code = query_of(&location)["code"].clone();
    let (status, body) = exchange(&p, &client_id, &code, REDIRECT, VERIFIER).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A document that does not name itself is refused on a page.
    let res = http().get(authorize_url(&p, "http://127.0.0.1:9/missing.json", &[])).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.headers().get("location").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_browser_goes_straight_to_consent() {
    let p = TestPlatform::start(Components::ALL).await;
    let client_id = register(&p).await;
    // The sign-in of a first authorization also signs the browser in.
    let url = authorize_url(&p, &client_id, &[]);
    let b = open_sign_in(&url).await;
    let res = submit(&p, &b, "sso@example.test", "correct horse battery", "sign_up", true).await;
    let session = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("dmcp_session="))
        .expect("a session cookie");
    let cookie = format!("{}; {}", b.cookie, session.split(';').next().unwrap());
    let res =
        http().get(authorize_url(&p, &client_id, &[("state", "st-2")])).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("form-action 'self' http://127.0.0.1:9"), "the consent form may end at the client: {csp}");
    let page = res.text().await.unwrap();
    assert!(page.contains("Allow access?") && page.contains("sso@example.test"), "{page}");
    assert!(!page.contains("name=\"password\""), "no second sign-in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_replicas_share_clients_codes_and_refresh_tokens() {
    let mut a = TestPlatform::start(Components::ALL).await;
    // A second gateway on the same database, behind the same public URL (a load balancer).
    let mut settings = a.settings.clone();
    settings.public_url = Some(a.base_url.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_url = format!("http://{}", listener.local_addr().unwrap());
    let only_gateway = Components { gateway: true, ..Components::NONE };
    let listeners = deploy_mcp::Listeners { gateway: Some(listener), ..Default::default() };
    let b = deploy_mcp::start(&settings, &a.adapters, only_gateway, listeners).await.unwrap();

    // Registered on B, authorized on A, redeemed on B, refreshed on A.
    let res = http()
        .post(format!("{b_url}/oauth/register"))
        .json(&json!({"redirect_uris": [REDIRECT], "client_name": "Test <Client>"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let client_id = res.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();
    let url = authorize_url(&a, &client_id, &[]);
    let location = sign_in_and_allow(&a, &url, "replica@example.test", "sign_up").await;
    let code = query_of(&location)["code"].clone();
    let res = http()
        .post(format!("{b_url}/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let tokens: Value = res.json().await.unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, again) = exchange(&a, &client_id, &code, REDIRECT, VERIFIER).await;
    assert_eq!((status, again["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "used on B");
    let (status, rotated) =
        token(&a, &[("grant_type", "refresh_token"), ("client_id", &client_id), ("refresh_token", refresh)]).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(tools_list(&a, rotated["access_token"].as_str().unwrap()).await, StatusCode::OK);
    b.stop().await;
    a.stop().await;
}
