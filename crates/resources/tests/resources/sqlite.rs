use std::os::unix::fs::PermissionsExt as _;

use resources::{LocalSqliteProvider, Provider, ProviderError, ResourceKind};

use crate::helpers::unique;

/// A scratch directory under the system's temporary directory, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn a_database_file_per_resource_private_and_deleted() {
    let scratch = Scratch(std::env::temp_dir().join(unique("resources-sqlite")));
    // The data directory does not exist yet: the provider makes it.
    let provider = LocalSqliteProvider::new(scratch.0.join("sqlite"));
    assert_eq!(provider.kind(), ResourceKind::Sqlite);
    let id = unique("res");
    let creds = provider.create(&id, "small").await.unwrap();
    let path = scratch.0.join("sqlite").join(&id).join("db.sqlite");
    assert_eq!(creds.url, format!("file:{}", path.display()));
    assert_eq!(creds.database.as_deref(), Some(path.to_str().unwrap()));
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (0, 0o600));
    assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);

    // Creating again keeps the data.
    std::fs::write(&path, b"SQLite format 3\0").unwrap();
    assert_eq!(provider.create(&id, "large").await.unwrap(), creds);
    assert_eq!(std::fs::read(&path).unwrap(), b"SQLite format 3\0");

    provider.delete(&id).await.unwrap();
    assert!(!path.parent().unwrap().exists());
    provider.delete(&id).await.expect("deleting a missing database is fine");

    for (id, size) in [("../etc", "small"), ("res_ok", "tiny")] {
        assert!(matches!(provider.create(id, size).await, Err(ProviderError::Invalid(_))), "{id} {size}");
    }
}
