//! Databases end to end through MCP: real PostgreSQL roles and databases, local SQLite files,
//! Turso through a fake that speaks its Platform API, and services wired to them by name.

use std::time::Duration;

use deploy_mcp::Components;
use deploy_mcp_tests::{
    Scratch, TestPlatform, call_tool, eventually, git, mcp_client, shared_nats_url, tool_err, tool_ok, unique,
};
use rmcp::RoleClient;
use rmcp::service::RunningService;
use serde_json::{Value, json};
use sqlx::Connection as _;

type Client = RunningService<RoleClient, ()>;

async fn platform(components: Components) -> (TestPlatform, Client) {
    let p = TestPlatform::start(components).await;
    let (key, _) = p.new_key(&format!("{}@example.test", unique("db"))).await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    (p, client)
}

/// Only what resources need: no builder (no sandboxes for builds).
fn without_builder() -> Components {
    Components { builder: false, ..Components::ALL }
}

async fn ready(client: &Client, name: &str) -> Value {
    eventually(Duration::from_secs(30), &format!("resource {name} ready"), || async {
        let r = tool_ok(call_tool(client, "get_resource", json!({ "name": name })).await);
        assert_ne!(r["status"], "failed", "{r}");
        (r["status"] == "ready").then_some(r)
    })
    .await
}

async fn connect(url: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
    sqlx::PgConnection::connect(url).await
}

fn url_for(r: &Value, database: &str) -> String {
    format!(
        "postgres://{}:{}@{}:{}/{database}",
        r["user"].as_str().unwrap(),
        r["password"].as_str().unwrap(),
        r["host"].as_str().unwrap(),
        r["port"]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_resource_is_usable_only_by_its_own_role_and_deleted_for_real() {
    let (mut p, client) = platform(without_builder()).await;
    let created = tool_ok(call_tool(&client, "create_resource", json!({ "name": "main", "type": "postgres" })).await);
    assert_eq!(created["status"], "provisioning", "{created}");
    let main = ready(&client, "main").await;
    let url = main["url"].as_str().unwrap().to_owned();
    let mut conn = connect(&url).await.expect("the returned URL connects");
    sqlx::query("CREATE TABLE notes (id int primary key, body text)").execute(&mut conn).await.unwrap();
    sqlx::query("INSERT INTO notes VALUES (1, 'hello')").execute(&mut conn).await.unwrap();
    let body: String = sqlx::query_scalar("SELECT body FROM notes WHERE id = 1").fetch_one(&mut conn).await.unwrap();
    assert_eq!(body, "hello");
    drop(conn);

    tool_ok(call_tool(&client, "create_resource", json!({ "name": "other", "type": "postgres" })).await);
    let other = ready(&client, "other").await;
    let main_db = main["database"].as_str().unwrap();
    let err = connect(&url_for(&other, main_db)).await.expect_err("another resource's role is refused");
    assert!(err.to_string().contains("permission denied"), "{err}");
    let platform_db = p.db.url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let err = connect(&url_for(&other, &platform_db)).await.expect_err("the platform's database is refused");
    assert!(err.to_string().contains("permission denied"), "{err}");

    // Secrets never in clear: not in the events, not in list_resources.
    for secret in [main["password"].as_str().unwrap(), other["password"].as_str().unwrap()] {
        assert_eq!(p.adapters.store.events_containing(secret).await.unwrap(), 0);
    }
    let listed = tool_ok(call_tool(&client, "list_resources", json!({})).await);
    assert_eq!(listed["total"], 2);
    assert!(!listed.to_string().contains(main["password"].as_str().unwrap()), "{listed}");

    let deleted = tool_ok(call_tool(&client, "delete_resource", json!({ "name": "main" })).await);
    assert_eq!(deleted["deleted"], true);
    // Gone for real: neither the database nor its role is left on the server.
    let (db, role) = (main["database"].as_str().unwrap().to_owned(), main["user"].as_str().unwrap().to_owned());
    eventually(Duration::from_secs(30), "the database and its role to be gone", || async {
        let mut admin = connect(&deploy_mcp_tests::pg_admin_url()).await.ok()?;
        let sql = "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) \
                   OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2)";
        let left: bool = sqlx::query_scalar(sql).bind(&db).bind(&role).fetch_one(&mut admin).await.ok()?;
        (!left).then_some(())
    })
    .await;
    assert!(connect(&url).await.is_err(), "its URL no longer connects");
    let gone = tool_err(call_tool(&client, "get_resource", json!({ "name": "main" })).await);
    assert_eq!(gone["error"], "not_found");
    let again = tool_ok(call_tool(&client, "delete_resource", json!({ "name": "main" })).await);
    assert_eq!(again["deleted"], false);
    tool_ok(call_tool(&client, "delete_resource", json!({ "name": "other" })).await);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_resource_requests_get_actionable_errors() {
    let (mut p, client) = platform(without_builder()).await;
    for (args, code) in [
        (json!({ "name": "Bad Name" }), "invalid_argument"),
        (json!({ "name": "ok", "type": "mysql" }), "invalid_argument"),
        (json!({ "name": "ok", "size": "huge" }), "invalid_argument"),
    ] {
        let e = tool_err(call_tool(&client, "create_resource", args.clone()).await);
        assert_eq!(e["error"], code, "{args}: {e}");
    }
    let first = tool_ok(call_tool(&client, "create_resource", json!({ "name": "cache" })).await);
    assert_eq!((first["created"].clone(), first["type"].clone()), (json!(true), json!("sqlite")));
    let twice = tool_ok(call_tool(&client, "create_resource", json!({ "name": "cache" })).await);
    assert_eq!(twice["created"], false);
    let other_type =
        tool_err(call_tool(&client, "create_resource", json!({ "name": "cache", "type": "postgres" })).await);
    assert_eq!(other_type["error"], "name_taken", "{other_type}");
    ready(&client, "cache").await;

    // Referenced by a service: deleting needs force.
    tool_ok(call_tool(&client, "create_repo", json!({ "name": "app" })).await);
    let bad_ref = tool_err(
        call_tool(
            &client,
            "create_service",
            json!({ "repo": "app", "name": "app", "env_vars": { "DB": "${{ resources.nope.url }}" } }),
        )
        .await,
    );
    assert!(bad_ref["message"].as_str().unwrap().contains("create_resource"), "{bad_ref}");
    let bad_field = tool_err(
        call_tool(
            &client,
            "create_service",
            json!({ "repo": "app", "name": "app", "env_vars": { "DB": "${{ resources.cache.secret }}" } }),
        )
        .await,
    );
    assert_eq!(bad_field["error"], "invalid_argument", "{bad_field}");
    tool_ok(
        call_tool(
            &client,
            "create_service",
            json!({ "repo": "app", "name": "app", "env_vars": { "DB": "${{ resources.cache.url }}" } }),
        )
        .await,
    );
    eventually(Duration::from_secs(10), "get_resource to show the service using it", || async {
        let used = tool_ok(call_tool(&client, "get_resource", json!({ "name": "cache" })).await);
        (used["used_by"] == json!(["app"])).then_some(())
    })
    .await;
    let refused = tool_err(call_tool(&client, "delete_resource", json!({ "name": "cache" })).await);
    assert!(refused["message"].as_str().unwrap().contains("`app`"), "{refused}");
    let forced = tool_ok(call_tool(&client, "delete_resource", json!({ "name": "cache", "force": true })).await);
    assert_eq!(forced["deleted"], true);

    // Another user's resource is "not found".
    tool_ok(call_tool(&client, "create_resource", json!({ "name": "mine" })).await);
    let (other_key, _) = p.new_key("stranger@example.test").await;
    let stranger = mcp_client(&p.mcp_url(), &other_key).await.unwrap();
    let e = tool_err(call_tool(&stranger, "get_resource", json!({ "name": "mine" })).await);
    assert_eq!(e["error"], "not_found");
    let d = tool_ok(call_tool(&stranger, "delete_resource", json!({ "name": "mine" })).await);
    assert_eq!(d["deleted"], false);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn turso_databases_get_a_token_and_failures_leave_nothing_behind() {
    let turso = resources::fake::FakeTurso::start("acme", "platform-token", "default").await.unwrap();
    let with_token = |token: &'static str| {
        let url = turso.url();
        move |s: &mut deploy_mcp::Settings| {
            s.sqlite_provider = "turso".into();
            s.turso_api_url = url;
            s.turso_org = Some("acme".into());
            s.turso_api_token = Some(token.into());
        }
    };
    let mut p =
        TestPlatform::start_with(&shared_nats_url().await, without_builder(), with_token("platform-token")).await;
    let (key, _) = p.new_key("turso@example.test").await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();

    tool_ok(call_tool(&client, "create_resource", json!({ "name": "edge" })).await);
    let edge = ready(&client, "edge").await;
    assert!(edge["url"].as_str().unwrap().starts_with("libsql://"), "{edge}");
    let token = edge["token"].as_str().unwrap();
    assert!(!token.is_empty());
    assert_eq!(p.adapters.store.events_containing(token).await.unwrap(), 0, "the token is sealed");

    // Half-way: the database is made, its token fails. It is removed, and the retry makes one.
    turso.fail_next_token();
    tool_ok(call_tool(&client, "create_resource", json!({ "name": "retried" })).await);
    ready(&client, "retried").await;
    assert_eq!(turso.databases().len(), 2, "no orphaned database: {:?}", turso.databases());

    tool_ok(call_tool(&client, "delete_resource", json!({ "name": "edge" })).await);
    tool_ok(call_tool(&client, "delete_resource", json!({ "name": "retried" })).await);
    eventually(Duration::from_secs(30), "the Turso databases deleted", || async {
        turso.databases().is_empty().then_some(())
    })
    .await;
    p.stop().await;

    // Refused by the provider: the resource fails with the reason, and nothing is left.
    let mut p = TestPlatform::start_with(&shared_nats_url().await, without_builder(), with_token("wrong-token")).await;
    let (key, _) = p.new_key("turso@example.test").await;
    let client = mcp_client(&p.mcp_url(), &key).await.unwrap();
    tool_ok(call_tool(&client, "create_resource", json!({ "name": "refused" })).await);
    let failed = eventually(Duration::from_secs(30), "the resource to fail", || async {
        let r = tool_ok(call_tool(&client, "get_resource", json!({ "name": "refused" })).await);
        (r["status"] == "failed").then_some(r)
    })
    .await;
    assert!(failed["failure"].as_str().unwrap().contains("token"), "{failed}");
    assert!(failed.get("url").is_none(), "{failed}");
    assert!(turso.databases().is_empty());
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_reads_its_database_reference_resolved_at_deploy_time() {
    let (mut p, client) = platform(Components::ALL).await;
    tool_ok(call_tool(&client, "create_resource", json!({ "name": "notes" })).await);
    ready(&client, "notes").await;
    tool_ok(call_tool(&client, "create_repo", json!({ "name": "api" })).await);
    let token = tool_ok(call_tool(&client, "get_git_token", json!({ "name": "api" })).await);
    let dir = Scratch::new();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/apps/python");
    for f in ["main.py", "message.txt"] {
        std::fs::copy(fixture.join(f), dir.0.join(f)).unwrap();
    }
    git(&dir.0, &["init", "-q"]).unwrap();
    git(&dir.0, &["add", "."]).unwrap();
    git(&dir.0, &["commit", "-q", "-m", "app"]).unwrap();
    git(&dir.0, &["push", "-q", token["authenticated_url"].as_str().unwrap(), "HEAD:main"]).unwrap();
    let env = json!({ "DATABASE_URL": "${{ resources.notes.url }}", "DB_FILE": "${{ resources.notes.database }}" });
    let created = tool_ok(
        call_tool(&client, "create_service", json!({ "repo": "api", "name": "api", "env_vars": env, "wait": true }))
            .await,
    );
    assert_eq!(created["status"], "live", "{created}");
    let router = p.running.as_ref().unwrap().router_addr.unwrap();
    let host = created["url"].as_str().unwrap().trim_start_matches("http://").to_owned();
    let http = reqwest::Client::new();
    let read = |path: &'static str| {
        let (http, host) = (http.clone(), host.clone());
        async move {
            let r = http.get(format!("http://{router}{path}")).header("host", host).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap().trim().to_owned())
        }
    };
    assert_eq!(read("/env/DATABASE_URL").await, (200, "file:/data/notes/db.sqlite".to_owned()));
    assert_eq!(read("/env/DB_FILE").await, (200, "/data/notes/db.sqlite".to_owned()));
    let s = tool_ok(call_tool(&client, "get_service", json!({ "name": "api", "include_env": true })).await);
    assert_eq!(s["env"]["DATABASE_URL"], "${{ resources.notes.url }}", "the reference is stored, not the secret");
    p.stop().await;
}
