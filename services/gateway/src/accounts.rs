//! Account commands shared by the admin CLI and (later) the web pages.

use chrono::Utc;
use cqrs_es::AggregateError;
use domain::{Account, AccountCommand, Claim, ClaimCommand, Rejection};
use events::{ApiKeyId, ClaimKind, Limits, UserId};
use store::Commands;

use crate::keys;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("`{0}` is not an e-mail address: give one like `you@example.com`")]
    BadEmail(String),
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error("API key `{0}` was not found; list keys by prefix and try again")]
    KeyNotFound(String),
    #[error("the event store failed: {0}")]
    Store(String),
}

fn store_error<E: std::error::Error>(e: AggregateError<E>) -> AccountError {
    AccountError::Store(e.to_string())
}

fn rejected(e: AggregateError<Rejection>) -> AccountError {
    match e {
        AggregateError::UserError(r) => AccountError::Rejected(r),
        other => store_error(other),
    }
}

/// A key created for a user, shown once.
#[derive(Debug)]
pub struct IssuedKey {
    pub user_id: UserId,
    pub key_id: ApiKeyId,
    pub key: keys::NewKey,
}

/// Normalises and checks an e-mail address.
pub fn normalize_email(raw: &str) -> Result<String, AccountError> {
    let email = raw.trim().to_lowercase();
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, host)| {
            !local.is_empty() && host.contains('.') && !host.starts_with('.') && !host.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(email) } else { Err(AccountError::BadEmail(raw.to_owned())) }
}

/// Opens the account of `email` unless it exists; returns its id. Safe to repeat after a crash
/// between the two commits: the e-mail claim names the user id, and opening is idempotent.
pub async fn ensure_account(commands: &Commands, email: &str, limits: Limits) -> Result<UserId, AccountError> {
    let email = normalize_email(email)?;
    let claim_id = ClaimKind::Email.claim_id(&email);
    let claim: Claim = commands.load(&claim_id).await.map_err(store_error)?;
    let user_id = match claim.holder {
        Some(h) => h.owner,
        None => {
            let user_id = UserId::new();
            let cmd = ClaimCommand::Claim {
                kind: ClaimKind::Email,
                name: email.clone(),
                owner: user_id,
                target: user_id.to_string(),
                now: Utc::now(),
            };
            match commands.claims.execute(&claim_id, cmd).await {
                Ok(()) => user_id,
                // Lost a race with another creator of the same account: use theirs.
                Err(AggregateError::AggregateConflict | AggregateError::UserError(Rejection::Taken { .. })) => {
                    let claim: Claim = commands.load(&claim_id).await.map_err(store_error)?;
                    claim.holder.map(|h| h.owner).ok_or_else(|| AccountError::Store("claim vanished".into()))?
                }
                Err(e) => return Err(rejected(e)),
            }
        }
    };
    let account: Account = commands.load(&user_id.to_string()).await.map_err(store_error)?;
    if account.opened.is_none() {
        let cmd = AccountCommand::Open { user_id, email, limits, now: Utc::now() };
        commands.accounts.execute(&user_id.to_string(), cmd).await.map_err(rejected)?;
    }
    Ok(user_id)
}

/// Creates a new API key for the user. The key's prefix is claimed first so that it is unique.
pub async fn create_api_key(
    commands: &Commands,
    user_id: UserId,
    label: &str,
    bcrypt_cost: u32,
) -> Result<IssuedKey, AccountError> {
    create_bound_api_key(commands, user_id, label, bcrypt_cost, None).await
}

/// Creates a key bound to one protected resource (`Some`: an OAuth access token), refused by
/// the gateway on any other.
pub async fn create_bound_api_key(
    commands: &Commands,
    user_id: UserId,
    label: &str,
    bcrypt_cost: u32,
    resource: Option<String>,
) -> Result<IssuedKey, AccountError> {
    let key_id = ApiKeyId::new();
    let key = keys::generate();
    let claim = ClaimCommand::Claim {
        kind: ClaimKind::ApiKeyPrefix,
        name: key.prefix.clone(),
        owner: user_id,
        target: key_id.to_string(),
        now: Utc::now(),
    };
    commands.claims.execute(&ClaimKind::ApiKeyPrefix.claim_id(&key.prefix), claim).await.map_err(rejected)?;
    let plaintext = key.plaintext.clone();
    let hash = tokio::task::spawn_blocking(move || bcrypt::hash(plaintext, bcrypt_cost))
        .await
        .map_err(|e| AccountError::Store(e.to_string()))?
        .map_err(|e| AccountError::Store(e.to_string()))?;
    let cmd = AccountCommand::CreateApiKey {
        key_id,
        prefix: key.prefix.clone(),
        hash,
        label: label.to_owned(),
        resource,
        now: Utc::now(),
    };
    commands.accounts.execute(&user_id.to_string(), cmd).await.map_err(rejected)?;
    Ok(IssuedKey { user_id, key_id, key })
}

/// Revokes the key with this public prefix (`dk_live_xxxxxxxx`).
pub async fn revoke_api_key(commands: &Commands, prefix: &str) -> Result<(UserId, ApiKeyId), AccountError> {
    let prefix = prefix.trim();
    let claim: Claim = commands.load(&ClaimKind::ApiKeyPrefix.claim_id(prefix)).await.map_err(store_error)?;
    let holder = claim.holder.ok_or_else(|| AccountError::KeyNotFound(prefix.to_owned()))?;
    let key_id: ApiKeyId = holder.target.parse().map_err(AccountError::Store)?;
    let cmd = AccountCommand::RevokeApiKey { key_id, now: Utc::now() };
    commands.accounts.execute(&holder.owner.to_string(), cmd).await.map_err(rejected)?;
    Ok((holder.owner, key_id))
}

/// Revokes `owner`'s key with this prefix; a key of another account is "not found".
pub async fn revoke_own_api_key(commands: &Commands, owner: UserId, prefix: &str) -> Result<ApiKeyId, AccountError> {
    let prefix = prefix.trim();
    let claim: Claim = commands.load(&ClaimKind::ApiKeyPrefix.claim_id(prefix)).await.map_err(store_error)?;
    match claim.holder {
        Some(h) if h.owner == owner => revoke_api_key(commands, prefix).await.map(|(_, key)| key),
        _ => Err(AccountError::KeyNotFound(prefix.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_or_refused() {
        assert_eq!(normalize_email(" Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in ["", "ada", "@example.com", "ada@", "ada@example", "a da@example.com", "ada@.com"] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }
}
