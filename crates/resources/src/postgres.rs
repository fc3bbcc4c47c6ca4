//! PostgreSQL: per resource one database and one login role, both named `r_<id>`, on a shared server.
//!
//! Isolation rests on privileges, not passwords: the database is owned by its role and only that role holds
//! CONNECT on it, so another resource's role is refused even where `pg_hba.conf` trusts everyone.

use std::fmt;
use std::str::FromStr as _;
use std::time::Duration;

use rand::RngExt as _;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, Executor as _, PgConnection};

use crate::{Credentials, Provider, ProviderError, ResourceKind, Result, Size, validate_id};

const PASSWORD_LEN: usize = 40;
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where [`PostgresProvider::create`] stops with an injected error, so tests can check the cleanup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// The role exists, the database does not yet.
    AfterRole,
    /// The role and the database exist, privileges are not yet granted.
    AfterDatabase,
}

pub struct PostgresProvider {
    /// A superuser connection (or a role with CREATEDB and CREATEROLE) to the shared server.
    pub admin_url: String,
    /// Host apps reach the server at, which may differ from the admin's.
    pub public_host: String,
    pub public_port: u16,
}

impl fmt::Debug for PostgresProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The admin URL may hold a password.
        f.debug_struct("PostgresProvider")
            .field("public_host", &self.public_host)
            .field("public_port", &self.public_port)
            .finish_non_exhaustive()
    }
}

impl PostgresProvider {
    pub fn new(admin_url: impl Into<String>, public_host: impl Into<String>, public_port: u16) -> Self {
        Self { admin_url: admin_url.into(), public_host: public_host.into(), public_port }
    }

    /// `create`, failing at `point` as if the server had refused the next statement: tests check the cleanup.
    #[cfg(feature = "fake")]
    pub async fn create_failing_at(&self, id: &str, size: &str, point: FailPoint) -> Result<Credentials> {
        self.create_inner(id, size, Some(point)).await
    }

    async fn create_inner(&self, id: &str, size: &str, fail_at: Option<FailPoint>) -> Result<Credentials> {
        let size = Size::parse(size)?;
        let name = object_name(id)?;
        let password = random_password();
        let mut conn = admin_connection(&self.admin_url).await?;
        let result = match lock(&mut conn, &name).await {
            Ok(()) => provision(&mut conn, &self.admin_url, &name, &password, size, fail_at).await,
            Err(e) => Err(e),
        };
        close(conn).await;
        result?;
        Ok(self.credentials(&name, password))
    }

    fn credentials(&self, name: &str, password: String) -> Credentials {
        // An IPv6 literal needs brackets inside a URL.
        let host = if self.public_host.contains(':') && !self.public_host.starts_with('[') {
            format!("[{}]", self.public_host)
        } else {
            self.public_host.clone()
        };
        Credentials {
            // Name and password are alphanumerics and `_`: nothing needs percent-encoding.
            url: format!("postgres://{name}:{password}@{host}:{}/{name}", self.public_port),
            host: Some(self.public_host.clone()),
            port: Some(self.public_port),
            database: Some(name.to_owned()),
            user: Some(name.to_owned()),
            password: Some(password),
            token: None,
        }
    }
}

#[async_trait::async_trait]
impl Provider for PostgresProvider {
    fn kind(&self) -> ResourceKind {
        ResourceKind::Postgres
    }

    async fn create(&self, id: &str, size: &str) -> Result<Credentials> {
        self.create_inner(id, size, None).await
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let name = object_name(id)?;
        let mut conn = admin_connection(&self.admin_url).await?;
        let result = match lock(&mut conn, &name).await {
            Ok(()) => drop_database_and_role(&mut conn, &name).await,
            Err(e) => Err(e),
        };
        close(conn).await;
        result
    }
}

/// Runs the steps of `create` under the per-resource lock. When the database did not exist before, nothing of value
/// can be lost, so a failure drops both the database and the role; otherwise it leaves the data alone.
async fn provision(
    conn: &mut PgConnection,
    admin_url: &str,
    name: &str,
    password: &str,
    size: Size,
    fail_at: Option<FailPoint>,
) -> Result<()> {
    let db_existed = database_exists(conn, name).await?;
    let result = provision_steps(conn, admin_url, name, password, size, db_existed, fail_at).await;
    if result.is_err()
        && !db_existed
        && let Err(e) = drop_database_and_role(conn, name).await
    {
        tracing::warn!(database = name, error = %e, "could not clean up after a failed create");
    }
    result
}

async fn provision_steps(
    conn: &mut PgConnection,
    admin_url: &str,
    name: &str,
    password: &str,
    size: Size,
    db_existed: bool,
    fail_at: Option<FailPoint>,
) -> Result<()> {
    let inject = |point: FailPoint| {
        if fail_at == Some(point) {
            Err(ProviderError::Failed(format!("injected failure at {point:?}")))
        } else {
            Ok(())
        }
    };
    let q = quote_ident(name);
    // NOINHERIT and the NO* flags keep the role from ever gaining more than its own database.
    let options = format!(
        "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {} \
         PASSWORD {}",
        connection_limit(size),
        quote_literal(password)
    );
    // A role left by an earlier attempt is reused with a fresh password: the caller gets working credentials.
    let verb = if role_exists(conn, name).await? { "ALTER ROLE" } else { "CREATE ROLE" };
    exec(conn, &format!("{verb} {q} WITH {options}"), "creating the role").await?;
    inject(FailPoint::AfterRole)?;

    if db_existed {
        exec(conn, &format!("ALTER DATABASE {q} OWNER TO {q}"), "taking over the database").await?;
    } else {
        exec(conn, &format!("CREATE DATABASE {q} OWNER {q}"), "creating the database").await?;
    }
    inject(FailPoint::AfterDatabase)?;
    own_public_schema(admin_url, name).await?;

    exec(conn, &format!("REVOKE ALL ON DATABASE {q} FROM PUBLIC"), "revoking public access").await?;
    exec(conn, &format!("GRANT CONNECT, TEMPORARY ON DATABASE {q} TO {q}"), "granting access").await?;
    Ok(())
}

/// Hands the new database's `public` schema to its role. PostgreSQL 15 gives it to `pg_database_owner`, whose
/// privileges a NOINHERIT owner does not get, so the role could not create tables without this.
async fn own_public_schema(admin_url: &str, name: &str) -> Result<()> {
    let options =
        PgConnectOptions::from_str(admin_url).map_err(|e| pg_error("reading the admin URL", e))?.database(name);
    let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
        Ok(conn) => conn.map_err(|e| pg_error("connecting to the new database", e))?,
        Err(_) => return Err(ProviderError::Unavailable("the database server did not answer; retry later".into())),
    };
    let result = async {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public')")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| pg_error("looking up the public schema", e))?;
        // An app may have dropped it on an earlier life of the database: nothing to hand over then.
        if exists {
            let sql = format!("ALTER SCHEMA public OWNER TO {}", quote_ident(name));
            exec(&mut conn, &sql, "handing over the public schema").await?;
        }
        Ok(())
    }
    .await;
    close(conn).await;
    result
}

/// Revokes every privilege of PUBLIC on `database`, so resource roles cannot connect to it. The role of
/// `admin_url` keeps CONNECT (granted explicitly first), so the platform connecting as it is not locked out.
pub async fn protect_database(admin_url: &str, database: &str) -> Result<()> {
    let q = quote_ident(database);
    let mut conn = admin_connection(admin_url).await?;
    let result = async {
        exec(&mut conn, &format!("GRANT CONNECT, TEMPORARY ON DATABASE {q} TO CURRENT_USER"), "granting access")
            .await?;
        exec(&mut conn, &format!("REVOKE ALL ON DATABASE {q} FROM PUBLIC"), "revoking public access").await
    }
    .await;
    close(conn).await;
    result
}

/// Drops the database (ending its sessions first) and then the role. Missing objects are fine.
async fn drop_database_and_role(conn: &mut PgConnection, name: &str) -> Result<()> {
    let q = quote_ident(name);
    if database_exists(conn, name).await? {
        // Refuse new sessions before ending the current ones, so none slips in between.
        exec(conn, &format!("ALTER DATABASE {q} ALLOW_CONNECTIONS false"), "closing the database").await?;
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(|e| pg_error("ending the database's sessions", e))?;
        // FORCE covers a backend still exiting after the signal.
        exec(conn, &format!("DROP DATABASE IF EXISTS {q} WITH (FORCE)"), "dropping the database").await?;
    }
    if role_exists(conn, name).await? {
        // Sessions of the role in other databases would keep it alive.
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
            .bind(name)
            .execute(&mut *conn)
            .await
            .map_err(|e| pg_error("ending the role's sessions", e))?;
        // Revokes what the role was granted on shared objects (databases) and drops what it owns here.
        exec(conn, &format!("DROP OWNED BY {q}"), "dropping the role's privileges").await?;
        exec(conn, &format!("DROP ROLE IF EXISTS {q}"), "dropping the role").await?;
    }
    Ok(())
}

fn object_name(id: &str) -> Result<String> {
    validate_id(id)?;
    Ok(format!("r_{id}"))
}

fn connection_limit(size: Size) -> u32 {
    match size {
        Size::Small => 20,
        Size::Medium => 50,
        Size::Large => 100,
    }
}

fn random_password() -> String {
    let mut rng = rand::rng();
    (0..PASSWORD_LEN).map(|_| PASSWORD_ALPHABET[rng.random_range(0..PASSWORD_ALPHABET.len())] as char).collect()
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

async fn admin_connection(admin_url: &str) -> Result<PgConnection> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(admin_url)).await {
        Ok(conn) => conn.map_err(|e| pg_error("connecting to the database server", e)),
        Err(_) => Err(ProviderError::Unavailable(format!(
            "the database server did not answer within {}s; retry later",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// Serialises create and delete of one resource across processes: the lock goes with the session.
async fn lock(conn: &mut PgConnection, name: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
        .bind(format!("resources:{name}"))
        .execute(&mut *conn)
        .await
        .map_err(|e| pg_error("locking the resource", e))?;
    Ok(())
}

async fn close(conn: PgConnection) {
    if let Err(e) = conn.close().await {
        tracing::debug!(error = %e, "closing the admin connection");
    }
}

async fn role_exists(conn: &mut PgConnection, name: &str) -> Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| pg_error("looking up the role", e))
}

async fn database_exists(conn: &mut PgConnection, name: &str) -> Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| pg_error("looking up the database", e))
}

/// Runs one statement without parameters: DDL cannot take bind parameters, and CREATE DATABASE must not run
/// inside a transaction, which the simple query protocol guarantees.
async fn exec(conn: &mut PgConnection, sql: &str, what: &str) -> Result<()> {
    conn.execute(sql).await.map_err(|e| pg_error(what, e))?;
    Ok(())
}

/// Translates a driver error: connection trouble and contention are worth a retry, the rest is a refusal.
fn pg_error(what: &str, e: sqlx::Error) -> ProviderError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08: connection exception, 53: insufficient resources, 57P: shutdown/restart,
            // 40001/40P01: serialization failure/deadlock, 55006: object in use, 23505: concurrent catalog insert.
            let transient = code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || matches!(code.as_ref(), "40001" | "40P01" | "55006" | "23505");
            if transient {
                ProviderError::Unavailable(format!("PostgreSQL is busy while {what} ({db}); retry later"))
            } else {
                ProviderError::Failed(format!("PostgreSQL refused {what}: {db} (SQLSTATE {code})"))
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => {
            ProviderError::Unavailable(format!("PostgreSQL is unreachable while {what} ({e}); retry later"))
        }
        _ => ProviderError::Failed(format!("PostgreSQL failed while {what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_quoting() {
        assert_eq!(object_name("res_01abc").unwrap(), "r_res_01abc");
        assert!(matches!(object_name("Res"), Err(ProviderError::Invalid(_))));
        assert!(matches!(object_name("a\"; DROP"), Err(ProviderError::Invalid(_))));
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("o'k"), "'o''k'");
    }

    #[test]
    fn passwords_are_long_and_alphanumeric() {
        let a = random_password();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, random_password());
    }
}
