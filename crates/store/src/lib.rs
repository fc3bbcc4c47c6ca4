//! The PostgreSQL adapter: the event store (cqrs-es/postgres-es), the transactional outbox the
//! relay drains, and the read models. This is the only crate that speaks SQL.

mod commands;
pub mod credentials;
mod outbox;
pub mod rows;

use std::time::Duration;

pub use commands::Commands;
pub use outbox::OutboxRow;
pub use rows::Tx;
pub use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// Schema of the live read models.
pub const READ_MODEL_SCHEMA: &str = "rm";

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Postgres could not be reached or failed: retry later (503).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A stored row does not match its type: a bug or a missing upcaster (500).
    #[error("stored data does not decode: {0}")]
    Decode(String),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Self::Unavailable(e)
    }
}

/// What `migrate` found of the read models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadModels {
    /// They match this version.
    Current,
    /// They were created now (a new database, or one from before versioned read models):
    /// replay the streams into them.
    Created,
    /// Their layout changed: they were dropped, and must be replayed from the streams.
    Stale,
}

/// A handle on the platform database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/0001_event_store.sql")),
    (2, include_str!("../migrations/0002_credentials.sql")),
    (3, include_str!("../migrations/0003_credentials_expiry.sql")),
];

impl Store {
    /// Connects with a bounded pool; fails fast when Postgres is not there.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the event store migrations and the live read-model schema. Safe to run from
    /// several processes at once (serialised by an advisory lock).
    pub async fn migrate(&self) -> Result<ReadModels> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(7355608001)").execute(&mut *tx).await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            .execute(&mut *tx)
            .await?;
        for (version, sql) in MIGRATIONS {
            let done: Option<i32> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_none() {
                sqlx::raw_sql(sql).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        // Read models are disposable: when their DDL changed, the old ones are dropped and the
        // caller replays the streams into new ones (see `ReadModels::Stale`).
        let ddl = rows::read_model_ddl(READ_MODEL_SCHEMA);
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS read_model_version (id int PRIMARY KEY CHECK (id = 1), ddl text NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT ddl FROM read_model_version WHERE id = 1").fetch_optional(&mut *tx).await?;
        let state = match current {
            Some(c) if c == ddl => ReadModels::Current,
            None => ReadModels::Created,
            Some(_) => ReadModels::Stale,
        };
        if state != ReadModels::Current {
            sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {READ_MODEL_SCHEMA} CASCADE")).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO read_model_version (id, ddl) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET ddl = $1",
            )
            .bind(&ddl)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::raw_sql(&ddl).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(state)
    }

    /// Forgets which layout the read models have, so that the next start drops and replays
    /// them (what a new read-model layout does on upgrade).
    pub async fn mark_read_models_stale(&self) -> Result<()> {
        sqlx::query("UPDATE read_model_version SET ddl = '' WHERE id = 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Forgets the read models' version entirely, as in a database from before it was kept.
    pub async fn forget_read_model_version(&self) -> Result<()> {
        sqlx::query("DELETE FROM read_model_version").execute(&self.pool).await?;
        Ok(())
    }

    /// Readiness: the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Creates the database named in `url` when it does not exist yet (dev and tests start from an
/// empty server). Connects to the server's `postgres` database to do so.
pub async fn ensure_database(url: &str) -> Result<()> {
    use sqlx::Connection;
    use sqlx::postgres::{PgConnectOptions, PgConnection};
    let opts: PgConnectOptions = url.parse()?;
    let Some(db) = opts.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut conn = PgConnection::connect_with(&opts.clone().database("postgres")).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&db)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", db.replace('"', "\"\""));
        match sqlx::raw_sql(&sql).execute(&mut conn).await {
            Ok(_) => {}
            // Created concurrently by another process: fine.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e.into()),
        }
    }
    conn.close().await?;
    Ok(())
}

/// Drops the database named in `url` (tests clean up their own).
pub async fn drop_database(url: &str) -> Result<()> {
    use sqlx::Connection;
    use sqlx::postgres::{PgConnectOptions, PgConnection};
    let opts: PgConnectOptions = url.parse()?;
    let Some(db) = opts.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut conn = PgConnection::connect_with(&opts.clone().database("postgres")).await?;
    let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", db.replace('"', "\"\""));
    sqlx::raw_sql(&sql).execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// Names of the databases starting with `prefix` on the server of `url` (test clean-up).
pub async fn databases_with_prefix(url: &str, prefix: &str) -> Result<Vec<String>> {
    use sqlx::Connection;
    use sqlx::postgres::{PgConnectOptions, PgConnection};
    let opts: PgConnectOptions = url.parse()?;
    let mut conn = PgConnection::connect_with(&opts.database("postgres")).await?;
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
        .bind(prefix)
        .fetch_all(&mut conn)
        .await?;
    conn.close().await?;
    Ok(names)
}

impl Store {
    /// How many events the event store holds.
    pub async fn event_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&self.pool).await?)
    }

    /// The event types of one aggregate, in order (audits and tests).
    pub async fn event_types(&self, aggregate_id: &str) -> Result<Vec<String>> {
        let sql = "SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence";
        Ok(sqlx::query_scalar(sql).bind(aggregate_id).fetch_all(&self.pool).await?)
    }

    /// How many stored events contain `needle` in their payload (proves secrets are not stored
    /// in clear).
    pub async fn events_containing(&self, needle: &str) -> Result<i64> {
        let sql = "SELECT count(*) FROM events WHERE strpos(payload::text, $1) > 0";
        Ok(sqlx::query_scalar(sql).bind(needle).fetch_one(&self.pool).await?)
    }
}
