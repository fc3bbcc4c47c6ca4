//! Read-model rows. The projector writes them; the gateway reads them.
//!
//! Every row carries `agg_id`, the aggregate it belongs to: the projector loads and replaces all
//! rows of the aggregates a batch touches, in one transaction with their checkpoints. Rows move
//! through Postgres as JSON (`jsonb_populate_recordset` / `to_jsonb`), which keeps one generic
//! code path for live batches and bulk replays.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, Transaction};

/// A read-model transaction.
pub type Tx = Transaction<'static, Postgres>;

use crate::{Error, READ_MODEL_SCHEMA, Result, Store};

/// A read-model table whose rows are `Self`.
pub trait Table:
    Serialize + DeserializeOwned + Clone + PartialEq + std::fmt::Debug + Send + Sync
{
    const NAME: &'static str;
    /// The unique key of the row within its table.
    fn key(&self) -> String;
}

macro_rules! table {
    ($ty:ident, $name:literal, $key:ident) => {
        impl Table for $ty {
            const NAME: &'static str = $name;
            fn key(&self) -> String {
                self.$key.clone()
            }
        }
    };
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRow {
    pub agg_id: String,
    pub aggregate_type: String,
    pub last_sequence: i64,
}
table!(CheckpointRow, "checkpoints", agg_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRow {
    pub agg_id: String,
    pub user_id: String,
    pub email: String,
    pub limits: events::Limits,
    pub opened_at: DateTime<Utc>,
}
table!(UserRow, "users", user_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRow {
    pub agg_id: String,
    pub key_id: String,
    pub user_id: String,
    pub prefix: String,
    pub hash: String,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}
table!(ApiKeyRow, "api_keys", key_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoRow {
    pub agg_id: String,
    pub repo_id: String,
    pub owner: String,
    pub name: String,
    pub host: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
}
table!(RepoRow, "repos", repo_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitTokenRow {
    pub agg_id: String,
    pub token_id: String,
    pub repo_id: String,
    pub prefix: String,
    pub hash: String,
    pub expires_at: DateTime<Utc>,
}
table!(GitTokenRow, "git_tokens", token_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRow {
    pub agg_id: String,
    pub service_id: String,
    pub owner: String,
    pub project: String,
    pub name: String,
    pub repo_id: String,
    pub branch: String,
    pub build_pack: String,
    pub port: Option<i32>,
    /// Variable name → sealed value.
    pub env: serde_json::Value,
    pub memory_mb: i32,
    pub cpu_millis: i32,
    pub install_command: Option<String>,
    pub build_command: Option<String>,
    pub start_command: Option<String>,
    pub status: String,
    pub live_deployment: Option<String>,
    pub created_at: DateTime<Utc>,
}
table!(ServiceRow, "services", service_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRow {
    pub agg_id: String,
    pub deployment_id: String,
    pub service_id: String,
    pub commit_sha: String,
    pub reason: String,
    pub status: String,
    pub artifact: Option<String>,
    pub failure: Option<serde_json::Value>,
    pub requested_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
table!(DeploymentRow, "deployments", deployment_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRow {
    pub agg_id: String,
    pub resource_id: String,
    pub owner: String,
    pub name: String,
    pub kind: String,
    pub size: String,
    pub region: Option<String>,
    pub status: String,
    /// Sealed credentials; never listed.
    pub credentials: Option<serde_json::Value>,
    pub failure: Option<String>,
    pub created_at: DateTime<Utc>,
}
table!(ResourceRow, "resources", resource_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneRow {
    pub agg_id: String,
    pub zone_id: String,
    pub owner: String,
    pub zone: String,
    pub txt_value: String,
    pub status: String,
    pub expires_at: DateTime<Utc>,
    pub cert_not_after: Option<DateTime<Utc>>,
    pub requested_at: DateTime<Utc>,
}
table!(ZoneRow, "zones", zone_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainRow {
    pub agg_id: String,
    pub domain_id: String,
    pub owner: String,
    pub service_id: String,
    pub zone_id: String,
    pub domain: String,
    pub added_at: DateTime<Utc>,
}
table!(DomainRow, "domains", domain_id);

/// The names of every read-model table, for comparisons and rebuilds.
pub const TABLES: &[&str] = &[
    CheckpointRow::NAME,
    UserRow::NAME,
    ApiKeyRow::NAME,
    RepoRow::NAME,
    GitTokenRow::NAME,
    ServiceRow::NAME,
    DeploymentRow::NAME,
    ResourceRow::NAME,
    ZoneRow::NAME,
    DomainRow::NAME,
];

/// The DDL of the read models in `schema`.
pub fn read_model_ddl(schema: &str) -> String {
    include_str!("read_model.sql").replace("{schema}", schema)
}

fn check_schema(schema: &str) -> Result<()> {
    // Schema names are spliced into SQL: allow only what we generate ourselves.
    if !schema.is_empty()
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(())
    } else {
        Err(Error::Decode(format!("invalid schema name `{schema}`")))
    }
}

/// Rows of `T` owned by any of `agg_ids`.
pub async fn load<T: Table>(conn: &mut Tx, schema: &str, agg_ids: &[String]) -> Result<Vec<T>> {
    check_schema(schema)?;
    let sql = format!(
        "SELECT coalesce(jsonb_agg(to_jsonb(t)), '[]'::jsonb) FROM {schema}.{} t WHERE agg_id = ANY($1)",
        T::NAME
    );
    let json: serde_json::Value = sqlx::query_scalar(&sql)
        .bind(agg_ids)
        .fetch_one(&mut **conn)
        .await?;
    serde_json::from_value(json).map_err(|e| Error::Decode(format!("{}: {e}", T::NAME)))
}

/// Replaces every row of `T` owned by `agg_ids` with `rows`.
pub async fn replace<T: Table>(
    conn: &mut Tx,
    schema: &str,
    agg_ids: &[String],
    rows: &[&T],
) -> Result<()> {
    check_schema(schema)?;
    let table = T::NAME;
    sqlx::query(&format!(
        "DELETE FROM {schema}.{table} WHERE agg_id = ANY($1)"
    ))
    .bind(agg_ids)
    .execute(&mut **conn)
    .await?;
    insert(conn, schema, rows).await
}

/// Inserts rows in bulk (one statement per 5,000 rows).
pub async fn insert<T: Table>(conn: &mut Tx, schema: &str, rows: &[&T]) -> Result<()> {
    check_schema(schema)?;
    let sql = format!(
        "INSERT INTO {schema}.{t} SELECT * FROM jsonb_populate_recordset(NULL::{schema}.{t}, $1)",
        t = T::NAME
    );
    for chunk in rows.chunks(5_000) {
        let json = serde_json::to_value(chunk).map_err(|e| Error::Decode(e.to_string()))?;
        sqlx::query(&sql).bind(json).execute(&mut **conn).await?;
    }
    Ok(())
}

/// Every row of every table in `schema`, as sorted JSON: two schemas hold equal models exactly
/// when these are equal.
pub async fn dump(store: &Store, schema: &str) -> Result<Vec<(String, Vec<serde_json::Value>)>> {
    check_schema(schema)?;
    let mut out = Vec::new();
    for table in TABLES {
        let sql = format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text), '[]'::jsonb) FROM {schema}.{table} t"
        );
        let json: serde_json::Value = sqlx::query_scalar(&sql).fetch_one(&store.pool).await?;
        let rows = match json {
            serde_json::Value::Array(rows) => rows,
            _ => vec![],
        };
        out.push(((*table).to_owned(), rows));
    }
    Ok(out)
}

/// The lock that serialises live projection batches with a rebuild's final swap.
pub async fn lock_projection(tx: &mut Tx) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(7355608003)")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    pub async fn begin(&self) -> Result<Tx> {
        Ok(self.pool.begin().await?)
    }

    /// Creates an empty read-model schema for a rebuild, dropping a leftover of a crashed one.
    pub async fn create_rebuild_schema(&self, schema: &str) -> Result<()> {
        check_schema(schema)?;
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(&read_model_ddl(schema))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Makes `rebuilt` the live read models, inside `tx` (which holds the projection lock).
    pub async fn swap_read_models(tx: &mut Tx, rebuilt: &str) -> Result<()> {
        check_schema(rebuilt)?;
        let live = READ_MODEL_SCHEMA;
        sqlx::raw_sql(&format!(
            "DROP SCHEMA IF EXISTS {live} CASCADE; ALTER SCHEMA {rebuilt} RENAME TO {live};"
        ))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub async fn drop_schema(&self, schema: &str) -> Result<()> {
        check_schema(schema)?;
        sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ----- queries of the gateway -----

    /// The key with this public prefix, revoked or not.
    pub async fn api_key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKeyRow>> {
        self.one::<ApiKeyRow>("api_keys", "prefix", prefix).await
    }

    /// Whether the key still exists unrevoked: the cheap check behind the auth cache.
    pub async fn api_key_active(&self, key_id: &str) -> Result<bool> {
        let sql = format!(
            "SELECT revoked_at IS NULL FROM {READ_MODEL_SCHEMA}.api_keys WHERE key_id = $1"
        );
        let active: Option<bool> = sqlx::query_scalar(&sql)
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(active.unwrap_or(false))
    }

    pub async fn user(&self, user_id: &str) -> Result<Option<UserRow>> {
        self.one::<UserRow>("users", "user_id", user_id).await
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        self.one::<UserRow>("users", "email", email).await
    }

    /// Active keys of a user, newest first (bounded).
    pub async fn api_keys_of(&self, user_id: &str) -> Result<Vec<ApiKeyRow>> {
        let sql = format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY t.created_at DESC), '[]'::jsonb)
             FROM (SELECT * FROM {READ_MODEL_SCHEMA}.api_keys WHERE user_id = $1 ORDER BY created_at DESC LIMIT 100) t"
        );
        let json: serde_json::Value = sqlx::query_scalar(&sql)
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
        serde_json::from_value(json).map_err(|e| Error::Decode(e.to_string()))
    }

    async fn one<T: Table>(&self, table: &str, column: &str, value: &str) -> Result<Option<T>> {
        let sql =
            format!("SELECT to_jsonb(t) FROM {READ_MODEL_SCHEMA}.{table} t WHERE {column} = $1");
        let json: Option<serde_json::Value> = sqlx::query_scalar(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        json.map(|j| serde_json::from_value(j).map_err(|e| Error::Decode(format!("{table}: {e}"))))
            .transpose()
    }
}

/// Commits a read-model transaction.
pub async fn commit(tx: Tx) -> Result<()> {
    Ok(tx.commit().await?)
}
