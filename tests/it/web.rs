//! The web pages (issue 7) over HTTP: sign-up and sessions, `/settings` (a key shown once,
//! listed by prefix with its last use, revoked so that it stops working), `/dns`, sign-in
//! with GitHub against a fake speaking GitHub's OAuth endpoints, and the rules every form
//! keeps (CSRF, no open redirect, another user's key is not found).

use std::collections::HashMap;
use std::time::Duration;

use deploy_mcp::Components;
use deploy_mcp_tests::{TestPlatform, eventually, mcp_status, shared_nats_url};
use github::fake::{FakeGithubLogin, FakeUser};
use reqwest::StatusCode;

const PASSWORD: &str = "correct horse battery";

pub const WEB: Components =
    Components { gateway: true, relay: true, projector: true, builder: false, scheduler: false, dns: false };

/// A browser without JavaScript: keeps cookies, does not follow redirects.
pub struct WebClient {
    base: String,
    http: reqwest::Client,
    pub cookies: HashMap<String, String>,
}

pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

/// The `value` of the hidden input `name` in a page.
pub fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in {html}")) + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

impl WebClient {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { base: base.to_owned(), http, cookies: HashMap::new() }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) }
    }

    async fn finish(&mut self, res: reqwest::Response) -> Page {
        let status = res.status();
        let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        let set_cookies: Vec<String> =
            res.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        for c in &set_cookies {
            let (name, value) = c.split(';').next().unwrap().split_once('=').unwrap();
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page { status, location, set_cookies, body: res.text().await.unwrap() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let res = self.http.get(self.url(path)).header("cookie", self.cookie_header()).send().await.unwrap();
        self.finish(res).await
    }

    pub async fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        let res = self
            .http
            .post(self.url(path))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.finish(res).await
    }

    /// Signs up on `/signin` and lands on `/settings`.
    pub async fn sign_up(&mut self, email: &str) -> Page {
        let page = self.get("/signin?next=/settings").await;
        assert_eq!(page.status, StatusCode::OK);
        let csrf = field(&page.body, "csrf");
        let res = self
            .post(
                "/signin",
                &[
                    ("csrf", &csrf),
                    ("email", email),
                    ("password", PASSWORD),
                    ("action", "sign_up"),
                    ("next", "/settings"),
                ],
            )
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
        assert_eq!(res.location.as_deref(), Some("/settings"));
        let session = res.set_cookies.iter().find(|c| c.starts_with("dmcp_session=")).expect("a session cookie");
        assert!(
            session.contains("HttpOnly") && session.contains("SameSite=Lax") && session.contains("Path=/"),
            "{session}"
        );
        self.get("/settings").await
    }
}

/// The key shown once on the page.
pub fn shown_key(html: &str) -> String {
    let start = html.find("id=\"new-key\">").expect("the new key is shown") + "id=\"new-key\">".len();
    html[start..].split('<').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_once_listed_with_last_use_and_revoked_for_good() {
    let p = TestPlatform::start(WEB).await;
    let mut web = WebClient::new(&p.base_url);

    let res = web.get("/settings").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location.as_deref(), Some("/signin?next=%2Fsettings"), "not signed in: sign in first");

    let settings = web.sign_up("ada@example.test").await;
    assert_eq!(settings.status, StatusCode::OK);
    assert!(settings.body.contains("You have no API keys yet"), "{}", settings.body);
    let user_id = namespace(&settings.body);
    let user = eventually(Duration::from_secs(10), "the account in the read model", || {
        let (store, id) = (p.adapters.store.clone(), user_id.clone());
        async move { store.user(&id).await.ok().flatten() }
    })
    .await;
    assert_eq!(user.email, "ada@example.test", "the git namespace is the account");
    let csrf = field(&settings.body, "csrf");

    // Every form needs the CSRF token.
    let res = web.post("/settings/keys", &[("label", "laptop")]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = web.post("/settings/keys", &[("csrf", &csrf), ("label", "")]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body.contains("Give the key a label"), "{}", res.body);

    let created = web.post("/settings/keys", &[("csrf", &csrf), ("label", "laptop <1>")]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let key = shown_key(&created.body);
    assert!(key.starts_with("dk_live_") && key.len() == 48, "{key}");
    assert!(created.body.contains("laptop &lt;1&gt;"), "labels are escaped");
    let prefix = key[..16].to_owned();

    // Listed by prefix; the key itself never again.
    let listed = web.get("/settings").await;
    assert!(listed.body.contains(&format!("{prefix}…")), "{}", listed.body);
    assert!(!listed.body.contains(&key), "a key is shown once");
    assert!(listed.body.contains("<td>never</td>"), "not used yet");

    assert_eq!(mcp_status(&p.mcp_url(), &key).await, StatusCode::OK);
    eventually(Duration::from_secs(10), "the last use on the settings page", || {
        let base = p.base_url.clone();
        let cookies = web.cookies.clone();
        async move {
            let mut w = WebClient::new(&base);
            w.cookies = cookies;
            let body = w.get("/settings").await.body;
            (!body.contains("<td>never</td>")).then_some(())
        }
    })
    .await;

    // Another account cannot revoke it: not found.
    let mut eve = WebClient::new(&p.base_url);
    let eve_page = eve.sign_up("eve@example.test").await;
    let eve_csrf = field(&eve_page.body, "csrf");
    let res = eve.post("/settings/keys/revoke", &[("csrf", &eve_csrf), ("prefix", &prefix)]).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(res.body.contains("not found"), "{}", res.body);
    assert_eq!(mcp_status(&p.mcp_url(), &key).await, StatusCode::OK);

    let res = web.post("/settings/keys/revoke", &[("csrf", &csrf), ("prefix", &prefix)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let revoked = web.get(res.location.as_deref().unwrap()).await;
    assert!(revoked.body.contains("is revoked"), "{}", revoked.body);
    eventually(Duration::from_secs(10), "the revoked key refused", || {
        let (p, key) = (&p, key.clone());
        async move { (mcp_status(&p.mcp_url(), &key).await == StatusCode::UNAUTHORIZED).then_some(()) }
    })
    .await;

    // Signing out ends the session on the server, not only in the browser.
    let old_session = web.cookies["dmcp_session"].clone();
    let res = web.post("/signout", &[("csrf", &csrf)]).await;
    assert_eq!(res.location.as_deref(), Some("/signin"));
    web.cookies.insert("dmcp_session".into(), old_session);
    assert_eq!(web.get("/settings").await.status, StatusCode::SEE_OTHER, "the old session cookie is dead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_refuses_wrong_passwords_forged_forms_and_open_redirects() {
    let p = TestPlatform::start(WEB).await;
    let mut web = WebClient::new(&p.base_url);
    web.sign_up("grace@example.test").await;

    let mut other = WebClient::new(&p.base_url);
    let page = other.get("/signin?next=//evil.example/x").await;
    let csrf = field(&page.body, "csrf");
    assert_eq!(field(&page.body, "next"), "/settings", "an off-site next is dropped");
    let res = other.post("/signin", &[("email", "grace@example.test"), ("password", PASSWORD)]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "no CSRF token");
    let res = other
        .post("/signin", &[("csrf", &csrf), ("email", "grace@example.test"), ("password", "wrong password!")])
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(res.body.contains("Wrong e-mail or password"), "{}", res.body);
    let res = other
        .post(
            "/signin",
            &[
                ("csrf", &csrf),
                ("email", "grace@example.test"),
                ("password", PASSWORD),
                ("next", "https://evil.example"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location.as_deref(), Some("/settings"), "never an open redirect");
    let res = other
        .post(
            "/signin",
            &[("csrf", &csrf), ("email", "grace@example.test"), ("password", PASSWORD), ("action", "sign_up")],
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT, "sign-up never takes over an account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dns_page_delegates_a_zone_and_shows_what_to_publish() {
    let p = TestPlatform::start(WEB).await;
    let mut web = WebClient::new(&p.base_url);
    let page = web.sign_up("dns@example.test").await;
    let csrf = field(&page.body, "csrf");

    let empty = web.get("/dns").await;
    assert!(empty.body.contains("No zones delegated yet"), "{}", empty.body);
    let res = web.post("/dns", &[("csrf", &csrf), ("zone", "not a zone")]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body.contains("role=\"alert\""), "{}", res.body);

    let res = web.post("/dns", &[("csrf", &csrf), ("zone", "Apps.Example.test")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let shown = web.get(res.location.as_deref().unwrap()).await;
    for expected in ["apps.example.test", "_dp-verify.apps.example.test", "pending", "Publish the records before"] {
        assert!(shown.body.contains(expected), "{expected} in {}", shown.body);
    }
    let rows = p.adapters.store.zones_of(&namespace(&page.body), 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(shown.body.contains(&rows[0].txt_value), "the TXT value to publish");
    for ns in &p.settings.nameservers {
        assert!(shown.body.contains(ns.as_str()), "name server {ns}");
    }

    let mut other = WebClient::new(&p.base_url);
    let page = other.sign_up("other@example.test").await;
    let res = other.post("/dns", &[("csrf", &field(&page.body, "csrf")), ("zone", "apps.example.test")]).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "another account's zone");
    assert!(!other.get("/dns").await.body.contains("_dp-verify.apps.example.test"));
}

/// The user id in the git namespace line of the settings page.
fn namespace(settings: &str) -> String {
    settings.split("/git/").nth(1).expect("the git line").split('/').next().unwrap().to_owned()
}

async fn github_platform(fake: &FakeGithubLogin) -> TestPlatform {
    let url = fake.url();
    TestPlatform::start_with(&shared_nats_url().await, WEB, move |s| {
        s.github_client_id = Some(FakeGithubLogin::CLIENT_ID.into());
        s.github_client_secret = Some(FakeGithubLogin::CLIENT_SECRET.into());
        s.github_web_url = url.clone();
        s.github_api_url = url;
    })
    .await
}

/// Runs the GitHub round trip from `/signin/github`; returns the callback's answer.
async fn github_round_trip(web: &mut WebClient, next: &str) -> Page {
    let start = web.get(&format!("/signin/github?next={next}")).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER);
    let to_github = start.location.expect("to GitHub");
    assert!(to_github.contains("/login/oauth/authorize?client_id="), "{to_github}");
    let back = web.get(&to_github).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "the fake GitHub approves");
    web.get(&back.location.expect("back to the platform")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_github_links_the_account_of_the_verified_email() {
    let fake = FakeGithubLogin::start().await;
    let p = github_platform(&fake).await;
    fake.add_user(FakeUser {
        id: 1001,
        login: "ada-gh".into(),
        emails: vec![("old@example.test".into(), false, true), ("ada@example.test".into(), true, true)],
    });
    fake.add_user(FakeUser {
        id: 1002,
        login: "unverified".into(),
        emails: vec![("u@example.test".into(), true, false)],
    });

    // An account with a password exists for the address GitHub vouches for.
    let mut web = WebClient::new(&p.base_url);
    let settings = web.sign_up("ada@example.test").await;
    let namespace = namespace(&settings.body);
    let signin = WebClient::new(&p.base_url).get("/signin").await;
    assert!(signin.body.contains("Sign in with GitHub"), "the link is offered when configured");

    fake.sign_in_as(1001);
    let mut gh = WebClient::new(&p.base_url);
    let done = github_round_trip(&mut gh, "/dns").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some("/dns"));
    let page = gh.get("/settings").await;
    assert!(page.body.contains("ada@example.test"), "{}", page.body);
    assert!(page.body.contains(&format!("/git/{namespace}/")), "the same account as the password sign-up");

    // Linked by GitHub user id from now on: a second sign-in reaches the same account, even
    // after the GitHub user changed their primary e-mail.
    fake.add_user(FakeUser { id: 1001, login: "ada-gh".into(), emails: vec![("new@example.test".into(), true, true)] });
    let mut again = WebClient::new(&p.base_url);
    assert_eq!(github_round_trip(&mut again, "/settings").await.status, StatusCode::SEE_OTHER);
    assert!(again.get("/settings").await.body.contains(&format!("/git/{namespace}/")));

    // No verified primary e-mail: refused with what to do.
    fake.sign_in_as(1002);
    let mut u = WebClient::new(&p.base_url);
    let refused = github_round_trip(&mut u, "/settings").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("no verified primary e-mail"), "{}", refused.body);

    // A callback that did not start in this browser, or a code used twice, is refused.
    fake.sign_in_as(1001);
    let mut a = WebClient::new(&p.base_url);
    let start = a.get("/signin/github").await;
    let callback = a.get(&start.location.unwrap()).await.location.unwrap();
    let back = a.get(&callback).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER);
    let mut b = WebClient::new(&p.base_url);
    let start_b = b.get("/signin/github").await;
    let code_url = a.get(&start_b.location.unwrap()).await.location.unwrap();
    a.get("/signin/github").await; // a's own sign-in, under way
    let forged = a.get(&code_url).await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST, "state of another browser");
    assert!(forged.body.contains("state mismatch"), "{}", forged.body);
    let own = b.get(&code_url).await;
    assert_eq!(own.status, StatusCode::SEE_OTHER, "b's own callback works: {}", own.body);
    let start_b = b.get("/signin/github").await;
    let state = url::Url::parse(&start_b.location.unwrap())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let used_code =
        url::Url::parse(&code_url).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let reused = b.get(&format!("/signin/github/callback?code={used_code}&state={state}")).await;
    assert_eq!(reused.status, StatusCode::BAD_REQUEST, "GitHub refuses a used code");
    assert!(reused.body.contains("incorrect or expired"), "{}", reused.body);
}
