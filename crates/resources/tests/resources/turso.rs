use resources::fake::FakeTurso;
use resources::{Provider, ProviderError, ResourceKind, TursoProvider};

use crate::helpers::unique;

const ORG: &str = "acme";
const TOKEN: &str = "platform-api-token";
const GROUP: &str = "default";

async fn fake() -> (FakeTurso, TursoProvider) {
    let fake = FakeTurso::start(ORG, TOKEN, GROUP).await.unwrap();
    let provider = TursoProvider::new(fake.url(), ORG, TOKEN, GROUP);
    (fake, provider)
}

fn name_of(id: &str) -> String {
    format!("r-{}", id.replace('_', "-"))
}

#[tokio::test]
async fn create_returns_a_libsql_url_and_a_token_and_delete_removes_the_database() {
    let (fake, provider) = fake().await;
    assert_eq!(provider.kind(), ResourceKind::Sqlite);
    let id = unique("res");
    let name = name_of(&id);
    let creds = provider.create(&id, "small").await.unwrap();
    assert_eq!(creds.url, format!("libsql://{name}-{ORG}.turso.io"));
    assert_eq!(creds.host, Some(format!("{name}-{ORG}.turso.io")));
    assert_eq!(creds.database.as_deref(), Some(name.as_str()));
    let token = creds.token.clone().expect("a database token");
    assert_eq!(fake.tokens(&name), vec![token.clone()]);
    assert!(!format!("{creds:?}").contains(&token), "Debug must not show the token");
    assert_eq!(fake.databases(), vec![name.clone()]);

    provider.delete(&id).await.unwrap();
    assert!(fake.databases().is_empty());
    provider.delete(&id).await.expect("deleting a missing database is fine");
}

#[tokio::test]
async fn creating_again_finds_the_database_and_issues_a_new_token() {
    let (fake, provider) = fake().await;
    let id = unique("res");
    let first = provider.create(&id, "").await.unwrap();
    let second = provider.create(&id, "medium").await.unwrap();
    assert_eq!(first.url, second.url);
    assert_ne!(first.token, second.token);
    assert_eq!(fake.databases(), vec![name_of(&id)]);
    assert_eq!(fake.tokens(&name_of(&id)).len(), 2);
}

#[tokio::test]
async fn a_failed_token_removes_the_new_database() {
    let (fake, provider) = fake().await;
    let id = unique("res");
    fake.fail_next_token();
    let err = provider.create(&id, "small").await.unwrap_err();
    assert!(matches!(&err, ProviderError::Unavailable(m) if m.contains("retry")), "{err:?}");
    assert!(fake.databases().is_empty(), "left behind: {:?}", fake.databases());
    // The retry succeeds.
    provider.create(&id, "small").await.unwrap();
    assert_eq!(fake.databases(), vec![name_of(&id)]);
}

#[tokio::test]
async fn a_failed_token_for_an_existing_database_keeps_it() {
    let (fake, provider) = fake().await;
    let id = unique("res");
    provider.create(&id, "small").await.unwrap();
    fake.fail_next_token();
    provider.create(&id, "small").await.unwrap_err();
    assert_eq!(fake.databases(), vec![name_of(&id)], "existing data is never deleted by a create");
}

#[tokio::test]
async fn a_wrong_api_token_says_so() {
    let (fake, _) = fake().await;
    let provider = TursoProvider::new(fake.url(), ORG, "wrong", GROUP);
    let err = provider.create(&unique("res"), "small").await.unwrap_err();
    assert!(matches!(&err, ProviderError::Failed(m) if m.contains("API token") && m.contains("401")), "{err:?}");
    let err = provider.delete(&unique("res")).await.unwrap_err();
    assert!(matches!(&err, ProviderError::Failed(m) if m.contains("API token")), "{err:?}");
    assert!(fake.databases().is_empty());
}

#[tokio::test]
async fn refusals_and_outages_are_told_apart() {
    let (fake, _) = fake().await;
    let unknown_group = TursoProvider::new(fake.url(), ORG, TOKEN, "nowhere");
    let err = unknown_group.create(&unique("res"), "small").await.unwrap_err();
    assert!(matches!(&err, ProviderError::Failed(m) if m.contains("400") && m.contains("group")), "{err:?}");

    let invalid = TursoProvider::new(fake.url(), ORG, TOKEN, GROUP);
    let err = invalid.create("Bad-Id", "small").await.unwrap_err();
    assert!(matches!(err, ProviderError::Invalid(_)), "{err:?}");
    let err = invalid.create("res_ok", "huge").await.unwrap_err();
    assert!(matches!(&err, ProviderError::Invalid(m) if m.contains("small, medium, large")), "{err:?}");
    assert!(fake.databases().is_empty());

    // Nothing listens on port 1.
    let down = TursoProvider::new("http://127.0.0.1:1", ORG, TOKEN, GROUP);
    let err = down.create(&unique("res"), "small").await.unwrap_err();
    assert!(matches!(&err, ProviderError::Unavailable(m) if m.contains("retry")), "{err:?}");
}
