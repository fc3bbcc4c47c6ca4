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
pub trait Table: Serialize + DeserializeOwned + Clone + PartialEq + std::fmt::Debug + Send + Sync {
    const NAME: &'static str;
    /// The table's columns: the row type's fields, in order.
    const COLUMNS: &'static [&'static str];
    /// The unique key of the row within its table.
    fn key(&self) -> String;
    /// Appends the row as one line of COPY's text format.
    fn copy_line(&self, buf: &mut String);
}

/// A value as COPY's text format writes it: the same text Postgres would parse from the row's
/// JSON, so that COPY (rebuilds) and `jsonb_populate_recordset` (live batches) store equal rows.
pub trait CopyValue {
    fn write_copy(&self, buf: &mut String);
}

impl CopyValue for String {
    fn write_copy(&self, buf: &mut String) {
        copy_escape(buf, self);
    }
}

impl CopyValue for i32 {
    fn write_copy(&self, buf: &mut String) {
        buf.push_str(&self.to_string());
    }
}

impl CopyValue for bool {
    fn write_copy(&self, buf: &mut String) {
        buf.push_str(if *self { "t" } else { "f" });
    }
}

impl CopyValue for i64 {
    fn write_copy(&self, buf: &mut String) {
        buf.push_str(&self.to_string());
    }
}

impl CopyValue for DateTime<Utc> {
    fn write_copy(&self, buf: &mut String) {
        buf.push_str(&self.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    }
}

impl CopyValue for serde_json::Value {
    fn write_copy(&self, buf: &mut String) {
        copy_escape(buf, &self.to_string());
    }
}

impl CopyValue for events::Limits {
    fn write_copy(&self, buf: &mut String) {
        copy_escape(buf, &serde_json::to_string(self).unwrap_or_default());
    }
}

impl<T: CopyValue> CopyValue for Option<T> {
    fn write_copy(&self, buf: &mut String) {
        match self {
            Some(v) => v.write_copy(buf),
            None => buf.push_str("\\N"),
        }
    }
}

/// Declares a row type and its table: the fields are the columns, in order.
macro_rules! row {
    ($(#[$meta:meta])* pub struct $ty:ident in $name:literal key $key:ident { $($(#[$fmeta:meta])* pub $field:ident: $fty:ty,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct $ty {
            $($(#[$fmeta])* pub $field: $fty,)+
        }

        impl Table for $ty {
            const NAME: &'static str = $name;
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),+];
            fn key(&self) -> String {
                self.$key.clone()
            }
            fn copy_line(&self, buf: &mut String) {
                let mut first = true;
                $(
                    if !first {
                        buf.push('\t');
                    }
                    first = false;
                    CopyValue::write_copy(&self.$field, buf);
                )+
                let _ = first;
                buf.push('\n');
            }
        }
    };
}

row! {
    pub struct CheckpointRow in "checkpoints" key agg_id {
        pub agg_id: String,
        pub aggregate_type: String,
        pub last_sequence: i64,
    }
}

row! {
    pub struct UserRow in "users" key user_id {
        pub agg_id: String,
        pub user_id: String,
        pub email: String,
        pub limits: events::Limits,
        pub opened_at: DateTime<Utc>,
        /// The linked GitHub App installation, if any.
        pub github_installation: Option<i64>,
        pub github_account: Option<String>,
    }
}

row! {
    pub struct ApiKeyRow in "api_keys" key key_id {
        pub agg_id: String,
        pub key_id: String,
        pub user_id: String,
        pub prefix: String,
        pub hash: String,
        pub label: String,
        pub created_at: DateTime<Utc>,
        pub revoked_at: Option<DateTime<Utc>>,
        /// The protected resource an OAuth-issued key is bound to.
        pub resource: Option<String>,
    }
}

row! {
    pub struct RepoRow in "repos" key repo_id {
        pub agg_id: String,
        pub repo_id: String,
        pub owner: String,
        pub name: String,
        pub host: String,
        pub description: Option<String>,
        pub created_at: DateTime<Utc>,
        pub github_id: Option<i64>,
        pub github_full_name: Option<String>,
    }
}

row! {
    pub struct GitTokenRow in "git_tokens" key token_id {
        pub agg_id: String,
        pub token_id: String,
        pub repo_id: String,
        pub prefix: String,
        pub hash: String,
        pub expires_at: DateTime<Utc>,
    }
}

row! {
    pub struct ServiceRow in "services" key service_id {
        pub agg_id: String,
        pub service_id: String,
        pub owner: String,
        pub project: String,
        pub name: String,
        pub hostname: String,
        pub repo_id: String,
        pub branch: String,
        pub build_pack: String,
        pub port: Option<i32>,
        /// Variable name → sealed value.
        pub env: serde_json::Value,
        /// Names of the resources the variables reference.
        pub resources: serde_json::Value,
        pub memory_mb: i32,
        pub cpu_millis: i32,
        pub install_command: Option<String>,
        pub build_command: Option<String>,
        pub start_command: Option<String>,
        pub status: String,
        pub live_deployment: Option<String>,
        pub created_at: DateTime<Utc>,
    }
}

row! {
    pub struct DeploymentRow in "deployments" key deployment_id {
        pub agg_id: String,
        pub deployment_id: String,
        pub service_id: String,
        pub commit_sha: String,
        pub trigger_kind: String,
        /// queued, building, starting, live, crashed, failed, replaced.
        pub status: String,
        pub artifact: Option<String>,
        pub plan: Option<String>,
        pub cached: bool,
        /// The pushed image (`<reference>@sha256:…`), for the cluster runtime.
        pub image: Option<String>,
        pub restarts: i32,
        pub failure: Option<serde_json::Value>,
        pub requested_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
    }
}

row! {
    pub struct ResourceRow in "resources" key resource_id {
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
}

row! {
    pub struct ZoneRow in "zones" key zone_id {
        pub agg_id: String,
        pub zone_id: String,
        pub owner: String,
        pub zone: String,
        pub txt_value: String,
        pub status: String,
        /// What the last verification found missing (sentences).
        pub missing: serde_json::Value,
        pub expires_at: DateTime<Utc>,
        pub cert_not_after: Option<DateTime<Utc>>,
        pub requested_at: DateTime<Utc>,
    }
}

row! {
    pub struct DomainRow in "domains" key domain_id {
        pub agg_id: String,
        pub domain_id: String,
        pub owner: String,
        pub service_id: String,
        pub zone_id: String,
        pub domain: String,
        pub added_at: DateTime<Utc>,
    }
}

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

/// The DDL of the read models in `schema`: tables, then keys and indexes.
pub fn read_model_ddl(schema: &str) -> String {
    format!("{}\n{}", read_model_tables(schema), read_model_indexes(schema))
}

fn read_model_tables(schema: &str) -> String {
    include_str!("read_model.sql").replace("{schema}", schema)
}

fn read_model_indexes(schema: &str) -> String {
    include_str!("read_model_indexes.sql").replace("{schema}", schema)
}

fn check_schema(schema: &str) -> Result<()> {
    // Schema names are spliced into SQL: allow only what we generate ourselves.
    if !schema.is_empty() && schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        Ok(())
    } else {
        Err(Error::Decode(format!("invalid schema name `{schema}`")))
    }
}

/// Inserts rows in bulk with `COPY` (a rebuild writes every row at once).
pub async fn insert<T: Table>(conn: &mut Tx, schema: &str, rows: &[&T]) -> Result<()> {
    check_schema(schema)?;
    if rows.is_empty() {
        return Ok(());
    }
    let statement = format!("COPY {schema}.{} ({}) FROM STDIN", T::NAME, T::COLUMNS.join(", "));
    let mut copy = conn.copy_in_raw(&statement).await?;
    let mut buf = String::with_capacity(1 << 20);
    for row in rows {
        row.copy_line(&mut buf);
        if buf.len() > (1 << 20) - 4096 {
            copy.send(buf.as_bytes()).await?;
            buf.clear();
        }
    }
    copy.send(buf.as_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// Escapes a value for COPY's text format.
fn copy_escape(buf: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '\t' => buf.push_str("\\t"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            c => buf.push(c),
        }
    }
}

fn check_table(table: &str) -> Result<()> {
    if TABLES.contains(&table) { Ok(()) } else { Err(Error::Decode(format!("unknown read-model table `{table}`"))) }
}

/// Rows of several tables owned by any of `agg_ids`, in one round trip: table name → JSON array.
pub async fn load_tables(
    tx: &mut Tx,
    schema: &str,
    agg_ids: &[String],
    tables: &[&str],
) -> Result<serde_json::Map<String, serde_json::Value>> {
    check_schema(schema)?;
    if tables.is_empty() {
        return Ok(serde_json::Map::new());
    }
    let mut parts = Vec::with_capacity(tables.len());
    for t in tables {
        check_table(t)?;
        parts.push(format!(
            "'{t}', (SELECT coalesce(jsonb_agg(to_jsonb(x)), '[]'::jsonb) FROM {schema}.{t} x WHERE agg_id = ANY($1))"
        ));
    }
    let sql = format!("SELECT jsonb_build_object({})", parts.join(", "));
    let json: serde_json::Value = sqlx::query_scalar(&sql).bind(agg_ids).fetch_one(&mut **tx).await?;
    match json {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(Error::Decode("load_tables did not return an object".into())),
    }
}

/// Replaces the rows owned by `agg_ids` in several tables with the given JSON arrays, in one
/// statement (one round trip): each table's DELETE runs to completion before its INSERT, which
/// reads the DELETE's output first.
pub async fn replace_tables(
    tx: &mut Tx,
    schema: &str,
    agg_ids: &[String],
    tables: &[(&str, serde_json::Value)],
) -> Result<()> {
    check_schema(schema)?;
    if tables.is_empty() {
        return Ok(());
    }
    let mut ctes = Vec::with_capacity(tables.len() * 2);
    for (i, (t, _)) in tables.iter().enumerate() {
        check_table(t)?;
        let arg = i + 2;
        ctes.push(format!("d{i} AS (DELETE FROM {schema}.{t} WHERE agg_id = ANY($1) RETURNING 1)"));
        ctes.push(format!(
            "i{i} AS (INSERT INTO {schema}.{t} SELECT * FROM jsonb_populate_recordset(NULL::{schema}.{t}, ${arg}) \
             WHERE (SELECT count(*) FROM d{i}) >= 0 RETURNING 1)"
        ));
    }
    let counts: Vec<String> = (0..tables.len()).map(|i| format!("(SELECT count(*) FROM i{i})")).collect();
    let sql = format!("WITH {} SELECT {}", ctes.join(", "), counts.join(" + "));
    let mut q = sqlx::query(&sql).bind(agg_ids);
    for (_, rows) in tables {
        q = q.bind(rows);
    }
    q.execute(&mut **tx).await?;
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
    sqlx::query("SELECT pg_advisory_xact_lock(7355608003)").execute(&mut **tx).await?;
    Ok(())
}

impl Store {
    pub async fn begin(&self) -> Result<Tx> {
        Ok(self.pool.begin().await?)
    }

    /// Creates the tables of an empty read-model schema for a rebuild, without their indexes
    /// (see `index_rebuild_schema`), dropping a leftover of a crashed rebuild.
    pub async fn create_rebuild_schema(&self, schema: &str) -> Result<()> {
        check_schema(schema)?;
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut *tx).await?;
        sqlx::raw_sql(&read_model_tables(schema)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Builds the keys and indexes of a rebuilt schema once its rows are in: sorting once is
    /// much faster than maintaining indexes row by row.
    pub async fn index_rebuild_schema(&self, schema: &str) -> Result<()> {
        check_schema(schema)?;
        sqlx::raw_sql(&read_model_indexes(schema)).execute(&self.pool).await?;
        Ok(())
    }

    /// Makes `rebuilt` the live read models, inside `tx` (which holds the projection lock).
    pub async fn swap_read_models(tx: &mut Tx, rebuilt: &str) -> Result<()> {
        check_schema(rebuilt)?;
        let live = READ_MODEL_SCHEMA;
        sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {live} CASCADE; ALTER SCHEMA {rebuilt} RENAME TO {live};"))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub async fn drop_schema(&self, schema: &str) -> Result<()> {
        check_schema(schema)?;
        sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&self.pool).await?;
        Ok(())
    }

    // ----- queries of the gateway -----

    /// Which of these aggregates the read models have applied events of.
    pub async fn checkpointed(&self, agg_ids: &[String]) -> Result<Vec<String>> {
        let sql = format!("SELECT agg_id FROM {READ_MODEL_SCHEMA}.checkpoints WHERE agg_id = ANY($1)");
        Ok(sqlx::query_scalar(&sql).bind(agg_ids).fetch_all(&self.pool).await?)
    }

    /// The key with this public prefix, revoked or not.
    pub async fn api_key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKeyRow>> {
        self.one::<ApiKeyRow>("api_keys", "prefix", prefix).await
    }

    /// Whether the key still exists unrevoked: the cheap check behind the auth cache.
    pub async fn api_key_active(&self, key_id: &str) -> Result<bool> {
        let sql = format!("SELECT revoked_at IS NULL FROM {READ_MODEL_SCHEMA}.api_keys WHERE key_id = $1");
        let active: Option<bool> = sqlx::query_scalar(&sql).bind(key_id).fetch_optional(&self.pool).await?;
        Ok(active.unwrap_or(false))
    }

    pub async fn user(&self, user_id: &str) -> Result<Option<UserRow>> {
        self.one::<UserRow>("users", "user_id", user_id).await
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        self.one::<UserRow>("users", "email", email).await
    }

    /// A user's repositories by name (at most `limit`), and how many there are in all.
    pub async fn repos_of(&self, owner: &str, limit: i64) -> Result<(Vec<RepoRow>, i64)> {
        let sql = format!(
            "SELECT coalesce((SELECT jsonb_agg(to_jsonb(t) ORDER BY t.name) FROM
                 (SELECT * FROM {READ_MODEL_SCHEMA}.repos WHERE owner = $1 ORDER BY name LIMIT $2) t), '[]'::jsonb),
                    (SELECT count(*) FROM {READ_MODEL_SCHEMA}.repos WHERE owner = $1)"
        );
        let (json, total): (serde_json::Value, i64) =
            sqlx::query_as(&sql).bind(owner).bind(limit).fetch_one(&self.pool).await?;
        let rows = serde_json::from_value(json).map_err(|e| Error::Decode(e.to_string()))?;
        Ok((rows, total))
    }

    /// Services of a user, by project and name (bounded), and how many there are.
    pub async fn services_of(&self, owner: &str, limit: i64) -> Result<(Vec<ServiceRow>, i64)> {
        let sql = format!(
            "SELECT coalesce((SELECT jsonb_agg(to_jsonb(t) ORDER BY t.project, t.name) FROM
                 (SELECT * FROM {READ_MODEL_SCHEMA}.services WHERE owner = $1 ORDER BY project, name LIMIT $2) t), '[]'::jsonb),
                    (SELECT count(*) FROM {READ_MODEL_SCHEMA}.services WHERE owner = $1)"
        );
        let (json, total): (serde_json::Value, i64) =
            sqlx::query_as(&sql).bind(owner).bind(limit).fetch_one(&self.pool).await?;
        let rows = serde_json::from_value(json).map_err(|e| Error::Decode(e.to_string()))?;
        Ok((rows, total))
    }

    /// A user's service by project and name.
    pub async fn service_named(&self, owner: &str, project: &str, name: &str) -> Result<Option<ServiceRow>> {
        let sql = format!(
            "SELECT to_jsonb(t) FROM {READ_MODEL_SCHEMA}.services t WHERE owner = $1 AND project = $2 AND name = $3"
        );
        let json: Option<serde_json::Value> =
            sqlx::query_scalar(&sql).bind(owner).bind(project).bind(name).fetch_optional(&self.pool).await?;
        json.map(|j| serde_json::from_value(j).map_err(|e| Error::Decode(format!("services: {e}")))).transpose()
    }

    /// One deployment by id.
    pub async fn deployment(&self, deployment_id: &str) -> Result<Option<DeploymentRow>> {
        self.one::<DeploymentRow>("deployments", "deployment_id", deployment_id).await
    }

    /// The most recent deployments of a service, newest first.
    pub async fn deployments_of(&self, service_id: &str, limit: i64) -> Result<Vec<DeploymentRow>> {
        let sql = format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY t.requested_at DESC, t.deployment_id DESC), '[]'::jsonb)
             FROM (SELECT * FROM {READ_MODEL_SCHEMA}.deployments WHERE agg_id = $1
                   ORDER BY requested_at DESC, deployment_id DESC LIMIT $2) t"
        );
        let json: serde_json::Value =
            sqlx::query_scalar(&sql).bind(service_id).bind(limit).fetch_one(&self.pool).await?;
        serde_json::from_value(json).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Resources of a user, by name (bounded), and how many there are.
    pub async fn resources_of(&self, owner: &str, limit: i64) -> Result<(Vec<ResourceRow>, i64)> {
        let sql = format!(
            "SELECT coalesce((SELECT jsonb_agg(to_jsonb(t) ORDER BY t.name) FROM
                 (SELECT * FROM {READ_MODEL_SCHEMA}.resources WHERE owner = $1 ORDER BY name LIMIT $2) t), '[]'::jsonb),
                    (SELECT count(*) FROM {READ_MODEL_SCHEMA}.resources WHERE owner = $1)"
        );
        let (json, total): (serde_json::Value, i64) =
            sqlx::query_as(&sql).bind(owner).bind(limit).fetch_one(&self.pool).await?;
        let rows = serde_json::from_value(json).map_err(|e| Error::Decode(e.to_string()))?;
        Ok((rows, total))
    }

    /// A user's resource by name.
    pub async fn resource_named(&self, owner: &str, name: &str) -> Result<Option<ResourceRow>> {
        let sql = format!("SELECT to_jsonb(t) FROM {READ_MODEL_SCHEMA}.resources t WHERE owner = $1 AND name = $2");
        let json: Option<serde_json::Value> =
            sqlx::query_scalar(&sql).bind(owner).bind(name).fetch_optional(&self.pool).await?;
        json.map(|j| serde_json::from_value(j).map_err(|e| Error::Decode(format!("resources: {e}")))).transpose()
    }

    /// Names of a user's services whose variables reference resource `name` (at most 50).
    pub async fn services_using(&self, owner: &str, name: &str) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT name FROM {READ_MODEL_SCHEMA}.services WHERE owner = $1 AND resources ? $2 ORDER BY name LIMIT 50"
        );
        Ok(sqlx::query_scalar(&sql).bind(owner).bind(name).fetch_all(&self.pool).await?)
    }

    /// A user's delegated zones, newest first (bounded).
    pub async fn zones_of(&self, owner: &str, limit: i64) -> Result<Vec<ZoneRow>> {
        let sql = format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY t.requested_at DESC), '[]'::jsonb)
             FROM (SELECT * FROM {READ_MODEL_SCHEMA}.zones WHERE owner = $1 ORDER BY requested_at DESC LIMIT $2) t"
        );
        let json: serde_json::Value = sqlx::query_scalar(&sql).bind(owner).bind(limit).fetch_one(&self.pool).await?;
        serde_json::from_value(json).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Zones still waiting for verification (the dns service's work list).
    pub async fn pending_zones(&self) -> Result<Vec<ZoneRow>> {
        let sql = format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t)), '[]'::jsonb) FROM {READ_MODEL_SCHEMA}.zones t WHERE status = 'pending'"
        );
        let json: serde_json::Value = sqlx::query_scalar(&sql).fetch_one(&self.pool).await?;
        serde_json::from_value(json).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Every active zone with its certificate state, and every custom domain (what the router
    /// and the dns service restore at start).
    pub async fn active_zones(&self) -> Result<Vec<ZoneRow>> {
        let sql = format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t)), '[]'::jsonb) FROM {READ_MODEL_SCHEMA}.zones t WHERE status = 'active'"
        );
        let json: serde_json::Value = sqlx::query_scalar(&sql).fetch_one(&self.pool).await?;
        serde_json::from_value(json).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Zones verified but not active yet, and active ones without a certificate.
    pub async fn zones_to_finish(&self) -> Result<Vec<ZoneRow>> {
        let sql = format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t)), '[]'::jsonb) FROM {READ_MODEL_SCHEMA}.zones t
             WHERE status = 'verified' OR (status = 'active' AND cert_not_after IS NULL)"
        );
        let json: serde_json::Value = sqlx::query_scalar(&sql).fetch_one(&self.pool).await?;
        serde_json::from_value(json).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Every custom domain.
    pub async fn all_domains(&self) -> Result<Vec<DomainRow>> {
        let sql = format!("SELECT coalesce(jsonb_agg(to_jsonb(t)), '[]'::jsonb) FROM {READ_MODEL_SCHEMA}.domains t");
        let json: serde_json::Value = sqlx::query_scalar(&sql).fetch_one(&self.pool).await?;
        serde_json::from_value(json).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Services that have a live deployment (what a restarted runtime brings back).
    pub async fn services_with_live_deployment(&self) -> Result<Vec<String>> {
        let sql = format!("SELECT service_id FROM {READ_MODEL_SCHEMA}.services WHERE live_deployment IS NOT NULL");
        Ok(sqlx::query_scalar(&sql).fetch_all(&self.pool).await?)
    }

    /// Active keys of a user, newest first (bounded).
    pub async fn api_keys_of(&self, user_id: &str) -> Result<Vec<ApiKeyRow>> {
        let sql = format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY t.created_at DESC), '[]'::jsonb)
             FROM (SELECT * FROM {READ_MODEL_SCHEMA}.api_keys WHERE user_id = $1 ORDER BY created_at DESC LIMIT 100) t"
        );
        let json: serde_json::Value = sqlx::query_scalar(&sql).bind(user_id).fetch_one(&self.pool).await?;
        serde_json::from_value(json).map_err(|e| Error::Decode(e.to_string()))
    }

    async fn one<T: Table>(&self, table: &str, column: &str, value: &str) -> Result<Option<T>> {
        let sql = format!("SELECT to_jsonb(t) FROM {READ_MODEL_SCHEMA}.{table} t WHERE {column} = $1");
        let json: Option<serde_json::Value> = sqlx::query_scalar(&sql).bind(value).fetch_optional(&self.pool).await?;
        json.map(|j| serde_json::from_value(j).map_err(|e| Error::Decode(format!("{table}: {e}")))).transpose()
    }
}

/// Commits a read-model transaction.
pub async fn commit(tx: Tx) -> Result<()> {
    Ok(tx.commit().await?)
}
