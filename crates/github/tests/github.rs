//! The GitHub App client against the fake GitHub, the fake's shapes against octocrab's models
//! of GitHub, and webhook deliveries end to end (sign, verify, parse). Everything stays on
//! 127.0.0.1.

mod helpers {
    use github::fake::{FakeGithub, RequestAuth};
    use github::{AppConfig, GithubApp};

    /// Throwaway keys generated for these tests only (`openssl genrsa -traditional 2048`).
    pub const TEST_APP_KEY: &str = include_str!("fixtures/test-app.pem");
    pub const TEST_APP_PUBLIC_KEY: &str = include_str!("fixtures/test-app.pub.pem");
    /// Another test-only key (PKCS#8), which the fake does not know.
    pub const TEST_WRONG_KEY: &str = include_str!("fixtures/test-wrong-app.pem");

    pub const SECRET: &str = "test-webhook-secret";

    pub fn config(fake: &FakeGithub) -> AppConfig {
        AppConfig {
            app_id: FakeGithub::APP_ID,
            private_key_pem: TEST_APP_KEY.to_owned(),
            api_base: fake.url(),
            webhook_secret: SECRET.to_owned(),
            app_slug: "deploy-mcp-test".to_owned(),
        }
    }

    pub fn app(fake: &FakeGithub) -> GithubApp {
        GithubApp::new(config(fake)).unwrap()
    }

    /// The fake with an organization installation (7, `acme`) and a user one (8, `octo`).
    pub async fn fake() -> FakeGithub {
        let fake = FakeGithub::start(TEST_APP_PUBLIC_KEY).await;
        fake.add_installation(7, "acme", "Organization");
        fake.add_installation(8, "octo", "User");
        fake
    }

    /// `(method, path, auth)` of every request the fake saw.
    pub fn calls(fake: &FakeGithub) -> Vec<(String, String, RequestAuth)> {
        fake.recorded_requests().into_iter().map(|r| (r.method, r.path, r.auth)).collect()
    }

    pub fn call(method: &str, path: &str, auth: RequestAuth) -> (String, String, RequestAuth) {
        (method.to_owned(), path.to_owned(), auth)
    }

    /// An octocrab client sending `Authorization: Bearer <credential>` (or nothing).
    pub fn raw_client(fake: &FakeGithub, credential: Option<&str>) -> octocrab::Octocrab {
        let builder = octocrab::Octocrab::builder().base_uri(fake.url().as_str()).unwrap();
        match credential {
            Some(credential) => builder.personal_token(credential.to_owned()).build().unwrap(),
            None => builder.build().unwrap(),
        }
    }

    /// The status and message GitHub (the fake) answered to `GET path`.
    pub async fn refusal(client: &octocrab::Octocrab, method: &str, path: &str) -> (u16, String) {
        let result: octocrab::Result<serde_json::Value> = match method {
            "GET" => client.get(path, None::<&()>).await,
            _ => client.post(path, Some(&serde_json::json!({"name": "web"}))).await,
        };
        match result {
            Err(octocrab::Error::GitHub { source, .. }) => (source.status_code.as_u16(), source.message),
            other => panic!("expected GitHub to refuse {method} {path}, got {other:?}"),
        }
    }
}

mod client {
    use chrono::{Duration, Utc};
    use github::fake::{FakeGithub, RequestAuth};
    use github::{AppConfig, Error, GithubApp, Installation};

    use crate::helpers::*;

    #[tokio::test]
    async fn reads_an_installation_as_the_app() {
        let fake = fake().await;
        let installation = app(&fake).installation(7).await.unwrap();
        assert_eq!(
            installation,
            Installation { id: 7, account_login: "acme".to_owned(), account_type: "Organization".to_owned() }
        );
        assert_eq!(calls(&fake), [call("GET", "/app/installations/7", RequestAuth::App)]);
        assert!(matches!(app(&fake).installation(99).await, Err(Error::NotFound)));
    }

    #[tokio::test]
    async fn mints_an_installation_token_with_a_valid_jwt() {
        let fake = fake().await;
        let token = app(&fake).installation_token(8).await.unwrap();
        assert!(token.token.starts_with("ghs_") && token.token.len() == 40, "{}", token.token);
        let lifetime = token.expires_at - Utc::now();
        assert!(lifetime > Duration::minutes(59) && lifetime <= Duration::hours(1), "{lifetime}");
        assert_eq!(calls(&fake), [call("POST", "/app/installations/8/access_tokens", RequestAuth::App)]);
        assert_eq!(fake.installation_for_token(&token.token), Some(8));
        assert!(!format!("{token:?}").contains(&token.token));
        assert!(matches!(app(&fake).installation_token(99).await, Err(Error::NotFound)));
    }

    #[tokio::test]
    async fn creates_a_private_repo_in_an_organization_then_links_it() {
        let fake = fake().await;
        let app = app(&fake);
        let repo = app.create_or_link_repo(7, "web", Some("The acme site")).await.unwrap();
        assert_eq!(repo.full_name, "acme/web");
        assert_eq!(repo.clone_url, format!("{}/acme/web.git", fake.url()));
        assert_eq!(repo.default_branch, "main");
        assert!(repo.private);
        assert_eq!(
            calls(&fake),
            [
                call("GET", "/app/installations/7", RequestAuth::App),
                call("POST", "/app/installations/7/access_tokens", RequestAuth::App),
                call("POST", "/orgs/acme/repos", RequestAuth::Installation(7)),
            ]
        );
        assert_eq!(
            fake.recorded_requests()[2].body,
            serde_json::json!({"name": "web", "description": "The acme site", "private": true})
        );
        assert_eq!(fake.repos(), std::slice::from_ref(&repo));
        assert_eq!(fake.repo("ACME/web"), Some(repo.clone()));
        assert_eq!(fake.requests()[2], ("POST".to_owned(), "/orgs/acme/repos".to_owned()));

        // The same call again (an agent retrying) links the repository it already has.
        let again = app.create_or_link_repo(7, "web", None).await.unwrap();
        assert_eq!(again, repo);
        assert_eq!(
            calls(&fake)[3..],
            [
                call("GET", "/app/installations/7", RequestAuth::App),
                call("POST", "/app/installations/7/access_tokens", RequestAuth::App),
                call("POST", "/orgs/acme/repos", RequestAuth::Installation(7)),
                call("GET", "/repos/acme/web", RequestAuth::Installation(7)),
            ]
        );
        assert_eq!(fake.repos().len(), 1);
    }

    #[tokio::test]
    async fn links_an_existing_repo_of_a_user() {
        let fake = fake().await;
        let existing = fake.add_repo("octo", "site");
        let repo = app(&fake).create_or_link_repo(8, "site", None).await.unwrap();
        assert_eq!(repo, existing);
        assert_eq!(
            calls(&fake),
            [
                call("GET", "/app/installations/8", RequestAuth::App),
                call("POST", "/app/installations/8/access_tokens", RequestAuth::App),
                call("GET", "/repos/octo/site", RequestAuth::Installation(8)),
            ]
        );
    }

    #[tokio::test]
    async fn asks_the_user_to_create_a_repo_the_app_cannot_create() {
        let fake = fake().await;
        let err = app(&fake).create_or_link_repo(8, "site", None).await.unwrap_err();
        let Error::CannotCreateForUser { login } = &err else { panic!("expected CannotCreateForUser, got {err:?}") };
        assert_eq!(login, "octo");
        let message = err.to_string();
        assert!(message.contains("create the repository on GitHub") && message.contains("call again"), "{message}");
        // No attempt to create anything: GitHub has no endpoint for it.
        assert_eq!(
            calls(&fake),
            [
                call("GET", "/app/installations/8", RequestAuth::App),
                call("POST", "/app/installations/8/access_tokens", RequestAuth::App),
                call("GET", "/repos/octo/site", RequestAuth::Installation(8)),
            ]
        );
    }

    #[tokio::test]
    async fn rejects_an_invalid_name_before_calling_github() {
        let fake = fake().await;
        let err = app(&fake).create_or_link_repo(7, "../admin", None).await.unwrap_err();
        assert!(matches!(err, Error::InvalidName(_)), "{err:?}");
        assert!(fake.requests().is_empty());
    }

    #[tokio::test]
    async fn a_wrong_app_key_is_refused_with_401() {
        let fake = fake().await;
        let app = GithubApp::new(AppConfig { private_key_pem: TEST_WRONG_KEY.to_owned(), ..config(&fake) }).unwrap();
        let err = app.installation(7).await.unwrap_err();
        let Error::Api { status: 401, message } = &err else { panic!("expected a 401, got {err:?}") };
        assert_eq!(message, "A JSON web token could not be decoded");
        assert_eq!(calls(&fake), [call("GET", "/app/installations/7", RequestAuth::Invalid)]);
        let err = app.create_or_link_repo(7, "web", None).await.unwrap_err();
        assert!(matches!(err, Error::Api { status: 401, .. }), "{err:?}");
    }

    #[tokio::test]
    async fn a_wrong_app_id_is_refused_with_401() {
        let fake = fake().await;
        let app = GithubApp::new(AppConfig { app_id: FakeGithub::APP_ID + 1, ..config(&fake) }).unwrap();
        assert!(matches!(app.installation_token(7).await, Err(Error::Api { status: 401, .. })));
    }

    #[tokio::test]
    async fn an_unreachable_github_is_unavailable() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let fake = fake().await;
        let app = GithubApp::new(AppConfig { api_base: url, ..config(&fake) }).unwrap();
        let err = app.installation(7).await.unwrap_err();
        assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    }
}

mod fake {
    use github::fake::{FakeGithub, RequestAuth};
    use octocrab::jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use octocrab::models::{Installation, InstallationToken, Repository};
    use serde_json::json;

    use crate::helpers::*;

    fn jwt(iss: serde_json::Value, iat_offset: i64, exp_offset: i64) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = json!({"iss": iss, "iat": now + iat_offset, "exp": now + exp_offset});
        let key = EncodingKey::from_rsa_pem(TEST_APP_KEY.as_bytes()).unwrap();
        encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
    }

    #[tokio::test]
    async fn answers_parse_as_octocrabs_models_of_github() {
        let fake = fake().await;
        let as_app = raw_client(&fake, Some(&jwt(json!(FakeGithub::APP_ID), -60, 540)));
        let installation: Installation = as_app.get("/app/installations/7", None::<&()>).await.unwrap();
        assert_eq!(installation.account.login, "acme");
        assert_eq!(installation.target_type.as_deref(), Some("Organization"));
        let token: InstallationToken = as_app.post("/app/installations/7/access_tokens", None::<&()>).await.unwrap();
        assert_eq!(token.repository_selection.as_deref(), Some("all"));

        let as_installation = raw_client(&fake, Some(&token.token));
        let created: Repository =
            as_installation.post("/orgs/acme/repos", Some(&json!({"name": "api", "private": true}))).await.unwrap();
        assert_eq!(created.full_name.as_deref(), Some("acme/api"));
        let fetched: Repository = as_installation.get("/repos/acme/api", None::<&()>).await.unwrap();
        assert_eq!(fetched.id, created.id);
        assert_eq!(fetched.owner.unwrap().r#type, "Organization");
    }

    #[tokio::test]
    async fn refuses_what_github_refuses() {
        let fake = fake().await;
        let app_id = json!(FakeGithub::APP_ID);
        let anonymous = raw_client(&fake, None);
        let jwt_message = "A JSON web token could not be decoded".to_owned();
        assert_eq!(refusal(&anonymous, "GET", "/app/installations/7").await, (401, jwt_message.clone()));
        for bad in [
            jwt(app_id.clone(), -60, -1),                         // expired
            jwt(app_id.clone(), -60, 1200),                       // lives longer than 10 minutes
            jwt(json!(FakeGithub::APP_ID + 1), -60, 540),         // another App
            jwt(json!(FakeGithub::APP_ID.to_string()), 600, 540), // issued in the future
        ] {
            let client = raw_client(&fake, Some(&bad));
            assert_eq!(refusal(&client, "GET", "/app/installations/7").await, (401, jwt_message.clone()));
        }
        // `iss` as a string is accepted, like GitHub does.
        let as_app = raw_client(&fake, Some(&jwt(json!(FakeGithub::APP_ID.to_string()), -60, 540)));
        let _: serde_json::Value = as_app.get("/app/installations/7", None::<&()>).await.unwrap();

        let token = app(&fake).installation_token(8).await.unwrap().token;
        let as_user_installation = raw_client(&fake, Some(&token));
        assert_eq!(refusal(&as_user_installation, "GET", "/app/installations/8").await, (401, jwt_message));
        assert_eq!(
            refusal(&as_user_installation, "POST", "/orgs/acme/repos").await,
            (403, "Resource not accessible by integration".to_owned())
        );
        assert_eq!(refusal(&as_user_installation, "POST", "/orgs/octo/repos").await, (404, "Not Found".to_owned()));
        assert_eq!(refusal(&anonymous, "POST", "/orgs/acme/repos").await, (401, "Requires authentication".to_owned()));
        let forged = raw_client(&fake, Some("ghs_forged"));
        assert_eq!(refusal(&forged, "GET", "/repos/octo/site").await, (401, "Bad credentials".to_owned()));
        fake.add_repo("octo", "site");
        fake.add_repo("stranger", "site");
        // Private repositories are visible only to installations on their account.
        assert_eq!(refusal(&as_user_installation, "GET", "/repos/stranger/site").await, (404, "Not Found".to_owned()));
        let _: serde_json::Value = as_user_installation.get("/repos/octo/site", None::<&()>).await.unwrap();
        assert_eq!(refusal(&anonymous, "GET", "/repos/octo/site").await, (404, "Not Found".to_owned()));
        assert_eq!(refusal(&anonymous, "GET", "/user/repos").await, (404, "Not Found".to_owned()));
        assert_eq!(fake.recorded_requests().last().unwrap().auth, RequestAuth::None);
    }

    #[tokio::test]
    async fn an_existing_org_repo_is_a_422_with_githubs_errors() {
        let fake = fake().await;
        let token = app(&fake).installation_token(7).await.unwrap().token;
        let client = raw_client(&fake, Some(&token));
        let _: serde_json::Value = client.post("/orgs/acme/repos", Some(&json!({"name": "web"}))).await.unwrap();
        let result: octocrab::Result<serde_json::Value> =
            client.post("/orgs/acme/repos", Some(&json!({"name": "WEB"}))).await;
        let Err(octocrab::Error::GitHub { source, .. }) = result else { panic!("expected a 422, got {result:?}") };
        assert_eq!(source.status_code.as_u16(), 422);
        assert_eq!(source.message, "Repository creation failed.");
        assert_eq!(
            source.errors.unwrap(),
            [json!({"resource": "Repository", "code": "custom", "field": "name",
                    "message": "name already exists on this account"})]
        );
    }

    #[tokio::test]
    async fn clone_urls_can_point_at_a_local_git_server() {
        let fake = fake().await;
        fake.set_git_base("http://127.0.0.1:9418/git/");
        let repo = fake.add_repo("octo", "site");
        assert_eq!(repo.clone_url, "http://127.0.0.1:9418/git/octo/site.git");
        assert_eq!(
            github::authenticated_clone_url(&repo.clone_url, "ghs_x"),
            "http://x-access-token:ghs_x@127.0.0.1:9418/git/octo/site.git"
        );
    }
}

mod webhooks {
    use github::fake::{FakeGithub, installation_payload, push_payload};
    use github::{PushEvent, WebhookEvent, parse_webhook, sign, verify_signature};
    use octocrab::models::webhook_events::{WebhookEvent as OctocrabEvent, WebhookEventPayload};

    use crate::helpers::*;

    const BEFORE: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    const AFTER: &str = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    #[tokio::test]
    async fn a_signed_push_verifies_and_parses() {
        let fake = fake().await;
        let repo = fake.add_repo("octo", "site");
        let body = push_payload(&repo, "refs/heads/main", BEFORE, AFTER, "octo", Some(8));
        let signature = sign(SECRET.as_bytes(), &body);
        assert!(verify_signature(SECRET.as_bytes(), &body, Some(&signature)));
        assert!(app(&fake).verify_webhook(&body, Some(&signature)));
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert!(!verify_signature(SECRET.as_bytes(), &tampered, Some(&signature)));

        assert_eq!(
            parse_webhook("push", &body).unwrap(),
            WebhookEvent::Push(PushEvent {
                repository_id: repo.id,
                full_name: "octo/site".to_owned(),
                git_ref: "refs/heads/main".to_owned(),
                before: BEFORE.to_owned(),
                after: AFTER.to_owned(),
                pusher: "octo".to_owned(),
                installation_id: Some(8),
            })
        );
        let without_installation = push_payload(&repo, "refs/tags/v1", ZERO, AFTER, "octo", None);
        let Ok(WebhookEvent::Push(push)) = parse_webhook("push", &without_installation) else { panic!() };
        assert_eq!(push.installation_id, None);
    }

    #[tokio::test]
    async fn push_payloads_have_githubs_shape() {
        let fake = FakeGithub::start(TEST_APP_PUBLIC_KEY).await;
        let repo = fake.add_repo("octo", "site");
        for (before, after, created, deleted) in
            [(BEFORE, AFTER, false, false), (ZERO, AFTER, true, false), (BEFORE, ZERO, false, true)]
        {
            let body = push_payload(&repo, "refs/heads/main", before, after, "octo", Some(8));
            let event = OctocrabEvent::try_from_header_and_body("push", &body).unwrap();
            assert_eq!(event.installation.unwrap().id().0, 8);
            assert_eq!(event.repository.unwrap().id.0, repo.id);
            let WebhookEventPayload::Push(push) = event.specific else { panic!("not a push") };
            assert_eq!((push.created, push.deleted), (created, deleted));
            assert_eq!(push.head_commit.is_none(), deleted);
        }
    }

    #[test]
    fn installation_payloads_parse_both_ways() {
        let created = installation_payload("created", 7, "acme", "Organization", "alice");
        assert_eq!(
            parse_webhook("installation", &created).unwrap(),
            WebhookEvent::InstallationCreated {
                installation_id: 7,
                account_login: "acme".to_owned(),
                sender_login: "alice".to_owned()
            }
        );
        let deleted = installation_payload("deleted", 7, "acme", "Organization", "alice");
        assert_eq!(
            parse_webhook("installation", &deleted).unwrap(),
            WebhookEvent::InstallationDeleted { installation_id: 7 }
        );
        let suspended = installation_payload("suspend", 7, "acme", "Organization", "alice");
        assert_eq!(
            parse_webhook("installation", &suspended).unwrap(),
            WebhookEvent::Ignored { event: "installation.suspend".to_owned() }
        );

        for body in [created, deleted] {
            let event = OctocrabEvent::try_from_header_and_body("installation", &body).unwrap();
            assert_eq!(event.installation.unwrap().id().0, 7);
            assert!(matches!(event.specific, WebhookEventPayload::Installation(_)));
        }
    }
}
