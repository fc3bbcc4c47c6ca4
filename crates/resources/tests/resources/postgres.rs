use resources::{FailPoint, PostgresProvider, Provider, ProviderError, ResourceKind, protect_database};

use crate::helpers::{Cleanup, admin, admin_url, connect, leftovers, postgres, unique};

#[tokio::test]
async fn a_resource_is_usable_by_its_own_role_only_and_deleted_for_real() {
    let provider = postgres();
    assert_eq!(provider.kind(), ResourceKind::Postgres);
    let (a, b) = (unique("res"), unique("res"));
    let _cleanup = Cleanup(vec![a.clone(), b.clone()]);
    let creds = provider.create(&a, "small").await.unwrap();
    let name = format!("r_{a}");
    assert_eq!(creds.database.as_deref(), Some(name.as_str()));
    assert_eq!(creds.user.as_deref(), Some(name.as_str()));
    assert_eq!((creds.host.as_deref(), creds.port), (Some("127.0.0.1"), Some(5432)));
    let password = creds.password.clone().unwrap();
    assert!(password.len() >= 32 && password.bytes().all(|c| c.is_ascii_alphanumeric()), "{password}");
    assert_eq!(creds.url, format!("postgres://{name}:{password}@127.0.0.1:5432/{name}"));
    assert!(!format!("{creds:?}").contains(&password), "Debug must not show the password");

    let mut conn = connect(&creds.url).await.expect("the returned URL connects");
    sqlx::query("CREATE TABLE notes (id int PRIMARY KEY, body text)").execute(&mut conn).await.unwrap();
    sqlx::query("INSERT INTO notes VALUES (1, 'hello')").execute(&mut conn).await.unwrap();
    let body: String = sqlx::query_scalar("SELECT body FROM notes WHERE id = 1").fetch_one(&mut conn).await.unwrap();
    assert_eq!(body, "hello");

    // The role has nothing beyond its database.
    let (superuser, createdb, createrole, inherit, limit): (bool, bool, bool, bool, i32) = sqlx::query_as(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolinherit, rolconnlimit FROM pg_roles WHERE rolname = $1",
    )
    .bind(&name)
    .fetch_one(&mut admin().await)
    .await
    .unwrap();
    assert_eq!((superuser, createdb, createrole, inherit, limit), (false, false, false, false, 20));

    // Trust auth lets any password in: privileges alone must keep another resource out.
    let other = provider.create(&b, "").await.unwrap();
    let intruder = format!(
        "postgres://{}:{}@127.0.0.1:5432/{name}",
        other.user.as_deref().unwrap(),
        other.password.as_deref().unwrap()
    );
    let err = connect(&intruder).await.expect_err("another resource's role is refused");
    assert!(err.to_string().contains("permission denied"), "{err}");

    // Deleting with a session still open ends the session.
    provider.delete(&a).await.unwrap();
    assert!(sqlx::query("SELECT 1").execute(&mut conn).await.is_err(), "the open session was terminated");
    let err = connect(&creds.url).await.expect_err("the deleted database no longer connects");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert_eq!(leftovers(&name).await, (false, false));
    provider.delete(&b).await.unwrap();
}

#[tokio::test]
async fn protect_database_keeps_resource_roles_out_and_its_owner_in() {
    let provider = postgres();
    let id = unique("res");
    let _cleanup = Cleanup(vec![id.clone()]);
    let platform_db = unique("platform");
    let owner = unique("platform_owner");
    let mut conn = admin().await;
    // CREATE DATABASE must be a statement of its own (no implicit transaction).
    sqlx::raw_sql(&format!("CREATE ROLE {owner} LOGIN")).execute(&mut conn).await.unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {platform_db} OWNER {owner}")).execute(&mut conn).await.unwrap();
    let creds = provider.create(&id, "small").await.unwrap();
    let resource_url = |db: &str| {
        format!(
            "postgres://{}:{}@127.0.0.1:5432/{db}",
            creds.user.as_deref().unwrap(),
            creds.password.as_deref().unwrap()
        )
    };
    connect(&resource_url(&platform_db)).await.expect("before protection PUBLIC may connect");

    // The platform runs as the database's owner, not a superuser: it must keep its access.
    let owner_url = format!("postgres://{owner}@127.0.0.1:5432/{platform_db}");
    protect_database(&owner_url, &platform_db).await.unwrap();
    let err = connect(&resource_url(&platform_db)).await.expect_err("a resource role is refused");
    assert!(err.to_string().contains("permission denied"), "{err}");
    connect(&owner_url).await.expect("the owner still connects");
    let superuser_url = format!("{}/{platform_db}", admin_url().rsplit_once('/').unwrap().0);
    connect(&superuser_url).await.expect("the superuser still connects");
    // Idempotent.
    protect_database(&admin_url(), &platform_db).await.unwrap();
    connect(&owner_url).await.expect("the owner still connects");

    provider.delete(&id).await.unwrap();
    sqlx::raw_sql(&format!("DROP DATABASE {platform_db} WITH (FORCE)")).execute(&mut conn).await.unwrap();
    sqlx::raw_sql(&format!("DROP ROLE {owner}")).execute(&mut conn).await.unwrap();
}

#[tokio::test]
async fn creating_again_rotates_the_password_and_keeps_the_data() {
    let provider = postgres();
    let id = unique("res");
    let _cleanup = Cleanup(vec![id.clone()]);
    let first = provider.create(&id, "small").await.unwrap();
    let mut conn = connect(&first.url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)").execute(&mut conn).await.unwrap();
    drop(conn);

    let second = provider.create(&id, "medium").await.unwrap();
    assert_ne!(first.password, second.password, "a new password each time");
    assert_eq!((first.database.as_ref(), first.user.as_ref()), (second.database.as_ref(), second.user.as_ref()));
    let mut conn = connect(&second.url).await.expect("the new credentials connect");
    let v: i32 = sqlx::query_scalar("SELECT v FROM kept").fetch_one(&mut conn).await.unwrap();
    assert_eq!(v, 7);
    let limit: i32 = sqlx::query_scalar("SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(limit, 50, "the size applies again");
    drop(conn);
    provider.delete(&id).await.unwrap();
}

#[tokio::test]
async fn deleting_is_idempotent() {
    let provider = postgres();
    provider.delete(&unique("never_created")).await.unwrap();
    let id = unique("res");
    let _cleanup = Cleanup(vec![id.clone()]);
    provider.create(&id, "large").await.unwrap();
    provider.delete(&id).await.unwrap();
    provider.delete(&id).await.unwrap();
    assert_eq!(leftovers(&format!("r_{id}")).await, (false, false));
}

#[tokio::test]
async fn a_failure_half_way_leaves_nothing_behind() {
    let provider = postgres();
    for point in [FailPoint::AfterRole, FailPoint::AfterDatabase] {
        let id = unique("res");
        let _cleanup = Cleanup(vec![id.clone()]);
        let err = provider.create_failing_at(&id, "small", point).await.unwrap_err();
        assert!(matches!(err, ProviderError::Failed(_)), "{err:?}");
        assert_eq!(leftovers(&format!("r_{id}")).await, (false, false), "after a failure at {point:?}");
        // The retry succeeds from scratch.
        let creds = provider.create(&id, "small").await.unwrap();
        connect(&creds.url).await.unwrap();
        provider.delete(&id).await.unwrap();
    }
}

#[tokio::test]
async fn a_failed_create_again_never_drops_existing_data() {
    let provider = postgres();
    let id = unique("res");
    let _cleanup = Cleanup(vec![id.clone()]);
    let creds = provider.create(&id, "small").await.unwrap();
    let mut conn = connect(&creds.url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)").execute(&mut conn).await.unwrap();
    drop(conn);
    provider.create_failing_at(&id, "small", FailPoint::AfterDatabase).await.unwrap_err();
    assert_eq!(leftovers(&format!("r_{id}")).await, (true, true));
    let again = provider.create(&id, "small").await.unwrap();
    let v: i32 =
        sqlx::query_scalar("SELECT v FROM kept").fetch_one(&mut connect(&again.url).await.unwrap()).await.unwrap();
    assert_eq!(v, 7);
    provider.delete(&id).await.unwrap();
}

#[tokio::test]
async fn bad_ids_and_sizes_are_rejected_before_touching_the_server() {
    // Nothing listens on port 1: a request that got that far would be Unavailable, not Invalid.
    let provider = PostgresProvider::new("postgres://postgres@127.0.0.1:1/postgres", "127.0.0.1", 5432);
    let long = "x".repeat(62);
    for id in ["", "Res_1", "a-b", "a\"; DROP ROLE postgres; --", "ü", long.as_str()] {
        let err = provider.create(id, "small").await.unwrap_err();
        assert!(matches!(&err, ProviderError::Invalid(m) if m.contains("a-z, 0-9 and _")), "{id}: {err:?}");
        assert!(matches!(provider.delete(id).await, Err(ProviderError::Invalid(_))), "{id}");
    }
    let err = provider.create("res_ok", "huge").await.unwrap_err();
    assert!(matches!(&err, ProviderError::Invalid(m) if m.contains("small, medium, large")), "{err:?}");

    let err = provider.create("res_ok", "small").await.unwrap_err();
    assert!(matches!(&err, ProviderError::Unavailable(m) if m.contains("retry")), "{err:?}");
}
