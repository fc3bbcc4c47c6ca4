use std::time::Duration;

use resources::{PostgresProvider, Provider as _};
use sqlx::{Connection as _, PgConnection};

/// The server's superuser; `RESOURCES_TEST_ADMIN_URL` overrides it.
pub fn admin_url() -> String {
    std::env::var("RESOURCES_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn postgres() -> PostgresProvider {
    PostgresProvider::new(admin_url(), "127.0.0.1", 5432)
}

/// A fresh resource id, shaped like the platform's (`res_` + a lowercased ULID).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::generate().to_string().to_lowercase())
}

pub async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url)).await.expect("connecting timed out")
}

pub async fn admin() -> PgConnection {
    connect(&admin_url()).await.expect("the admin URL connects")
}

/// Whether a database and a role named `name` exist.
pub async fn leftovers(name: &str) -> (bool, bool) {
    let mut conn = admin().await;
    let db: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let role: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    (db, role)
}

/// Deletes the given Postgres resources when dropped, so a failing test leaves nothing on the shared server.
pub struct Cleanup(pub Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut self.0);
        // Drop runs inside the test's runtime: delete from a thread with its own.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                for id in ids {
                    if let Err(e) = postgres().delete(&id).await {
                        eprintln!("cleanup of {id} failed: {e}");
                    }
                }
            });
        })
        .join()
        .unwrap();
    }
}
