//! Short-lived credentials of the web pages and the OAuth authorization server (migration
//! 0002): registered clients, codes, refresh families, consent tickets, sessions and key usage.
//! Secrets arrive here as SHA-256 digests only; payloads are opaque JSON owned by the gateway.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{Result, Store};

/// A refresh-token family, loaded for update inside a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub id: String,
    pub grant: Value,
    /// Digest of the one refresh token valid now.
    pub current: Vec<u8>,
    pub revoked: bool,
    /// The access tokens (API key prefixes) issued in this family.
    pub keys: Vec<String>,
}

type FamilyRow = (String, Value, Vec<u8>, bool, Vec<String>);

/// A signed-in browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: String,
    pub email: String,
}

impl Store {
    pub async fn oauth_client(&self, client_id: &str) -> Result<Option<Value>> {
        let sql = "SELECT client FROM oauth_clients WHERE client_id = $1";
        Ok(sqlx::query_scalar(sql).bind(client_id).fetch_optional(&self.pool).await?)
    }

    /// Registers (or refreshes, for a re-fetched metadata document) a client.
    pub async fn put_oauth_client(&self, client_id: &str, client: &Value) -> Result<()> {
        let sql = "INSERT INTO oauth_clients (client_id, client) VALUES ($1, $2)
                   ON CONFLICT (client_id) DO UPDATE SET client = $2, registered_at = now()";
        sqlx::query(sql).bind(client_id).bind(client).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn put_oauth_code(&self, digest: &[u8], grant: &Value, expires_at: DateTime<Utc>) -> Result<()> {
        // Codes nobody redeemed are swept here, so the table stays the size of a minute's traffic.
        sqlx::query("DELETE FROM oauth_codes WHERE expires_at < now() - interval '1 hour'").execute(&self.pool).await?;
        let sql = "INSERT INTO oauth_codes (digest, grant_data, expires_at) VALUES ($1, $2, $3)";
        sqlx::query(sql).bind(digest).bind(grant).bind(expires_at).execute(&self.pool).await?;
        Ok(())
    }

    /// Takes a code: whoever takes it first gets it, once, expired or not.
    pub async fn take_oauth_code(&self, digest: &[u8]) -> Result<Option<(Value, DateTime<Utc>)>> {
        let sql = "DELETE FROM oauth_codes WHERE digest = $1 RETURNING grant_data, expires_at";
        Ok(sqlx::query_as(sql).bind(digest).fetch_optional(&self.pool).await?)
    }

    /// Starts a refresh family with its first token and access token.
    pub async fn start_family(&self, id: &str, grant: &Value, token: &[u8], key: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let sql = "INSERT INTO oauth_families (id, grant_data, current, keys) VALUES ($1, $2, $3, ARRAY[$4])";
        sqlx::query(sql).bind(id).bind(grant).bind(token).bind(key).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO oauth_refresh_tokens (digest, family) VALUES ($1, $2)")
            .bind(token)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Runs `decide` on the family of refresh token `digest` under a row lock, then stores the
    /// family as `decide` left it, with the new token it returns. `None`: no such token.
    pub async fn update_family<R>(
        &self,
        digest: &[u8],
        decide: impl FnOnce(&mut Family) -> (R, Option<Vec<u8>>),
    ) -> Result<Option<R>> {
        let mut tx = self.pool.begin().await?;
        let sql = "SELECT f.id, f.grant_data, f.current, f.revoked, f.keys FROM oauth_refresh_tokens t
                   JOIN oauth_families f ON f.id = t.family WHERE t.digest = $1 FOR UPDATE OF f";
        let row: Option<FamilyRow> = sqlx::query_as(sql).bind(digest).fetch_optional(&mut *tx).await?;
        let Some((id, grant, current, revoked, keys)) = row else { return Ok(None) };
        let mut family = Family { id, grant, current, revoked, keys };
        let (result, next) = decide(&mut family);
        let sql = "UPDATE oauth_families SET current = $2, revoked = $3, keys = $4 WHERE id = $1";
        sqlx::query(sql)
            .bind(&family.id)
            .bind(&family.current)
            .bind(family.revoked)
            .bind(&family.keys)
            .execute(&mut *tx)
            .await?;
        if let Some(next) = next {
            sqlx::query("INSERT INTO oauth_refresh_tokens (digest, family) VALUES ($1, $2)")
                .bind(next)
                .bind(&family.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(result))
    }

    /// Records an access token issued by a rotation, so that revoking the family covers it.
    pub async fn add_family_key(&self, id: &str, key: &str) -> Result<()> {
        sqlx::query("UPDATE oauth_families SET keys = array_append(keys, $2) WHERE id = $1")
            .bind(id)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn put_consent(
        &self,
        digest: &[u8],
        user_id: &str,
        request: &Value,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query("DELETE FROM oauth_consents WHERE expires_at < now()").execute(&self.pool).await?;
        let sql = "INSERT INTO oauth_consents (digest, user_id, request, expires_at) VALUES ($1, $2, $3, $4)";
        sqlx::query(sql).bind(digest).bind(user_id).bind(request).bind(expires_at).execute(&self.pool).await?;
        Ok(())
    }

    /// Takes a pending consent once; `None` when unknown, used or expired.
    pub async fn take_consent(&self, digest: &[u8]) -> Result<Option<(String, Value)>> {
        let sql = "DELETE FROM oauth_consents WHERE digest = $1 RETURNING user_id, request, expires_at";
        let row: Option<(String, Value, DateTime<Utc>)> =
            sqlx::query_as(sql).bind(digest).fetch_optional(&self.pool).await?;
        Ok(row.filter(|r| r.2 > Utc::now()).map(|(u, r, _)| (u, r)))
    }

    pub async fn put_session(
        &self,
        digest: &[u8],
        user_id: &str,
        email: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE expires_at < now()").execute(&self.pool).await?;
        let sql = "INSERT INTO web_sessions (digest, user_id, email, expires_at) VALUES ($1, $2, $3, $4)";
        sqlx::query(sql).bind(digest).bind(user_id).bind(email).bind(expires_at).execute(&self.pool).await?;
        Ok(())
    }

    /// The live session of this cookie digest.
    pub async fn session(&self, digest: &[u8]) -> Result<Option<Session>> {
        let sql = "SELECT user_id, email FROM web_sessions WHERE digest = $1 AND expires_at > now()";
        let row: Option<(String, String)> = sqlx::query_as(sql).bind(digest).fetch_optional(&self.pool).await?;
        Ok(row.map(|(user_id, email)| Session { user_id, email }))
    }

    pub async fn delete_session(&self, digest: &[u8]) -> Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE digest = $1").bind(digest).execute(&self.pool).await?;
        Ok(())
    }

    /// Notes that a key was used now.
    pub async fn touch_api_key(&self, key_id: &str) -> Result<()> {
        let sql = "INSERT INTO api_key_usage (key_id, last_used_at) VALUES ($1, now())
                   ON CONFLICT (key_id) DO UPDATE SET last_used_at = now()";
        sqlx::query(sql).bind(key_id).execute(&self.pool).await?;
        Ok(())
    }

    /// When each of these keys was last used (keys never used are absent).
    pub async fn api_keys_last_used(&self, key_ids: &[String]) -> Result<Vec<(String, DateTime<Utc>)>> {
        let sql = "SELECT key_id, last_used_at FROM api_key_usage WHERE key_id = ANY($1)";
        Ok(sqlx::query_as(sql).bind(key_ids).fetch_all(&self.pool).await?)
    }
}
