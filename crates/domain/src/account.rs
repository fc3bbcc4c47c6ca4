use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::{AccountEvent, ApiKeyId, Limits, UserId};
use serde::{Deserialize, Serialize};

use crate::Rejection;

/// An account: a user, its limits and its API keys.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub opened: Option<Opened>,
    pub keys: BTreeMap<ApiKeyId, KeyState>,
    /// The linked GitHub App installation: (installation id, account login).
    #[serde(default)]
    pub github: Option<(u64, String)>,
    /// bcrypt hash of the sign-in password, when one was set (`SetPassword` takes the hash,
    /// computed by the caller: decisions stay pure and fast).
    #[serde(default)]
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened {
    pub user_id: UserId,
    pub email: String,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyState {
    pub prefix: String,
    pub revoked: bool,
    /// The resource the key is bound to (OAuth-issued keys).
    #[serde(default)]
    pub resource: Option<String>,
}

#[derive(Debug, Clone)]
pub enum AccountCommand {
    Open {
        user_id: UserId,
        email: String,
        limits: Limits,
        now: DateTime<Utc>,
    },
    CreateApiKey {
        key_id: ApiKeyId,
        prefix: String,
        hash: String,
        label: String,
        /// The resource an OAuth-issued key is bound to.
        resource: Option<String>,
        now: DateTime<Utc>,
    },
    RevokeApiKey {
        key_id: ApiKeyId,
        now: DateTime<Utc>,
    },
    LinkGithub {
        installation_id: u64,
        account_login: String,
        now: DateTime<Utc>,
    },
    UnlinkGithub {
        installation_id: u64,
        now: DateTime<Utc>,
    },
    SetPassword {
        hash: String,
        now: DateTime<Utc>,
    },
}

impl Account {
    /// Pure decision. Repeating a command that already took effect yields no events, so callers
    /// may retry after a crash.
    pub fn decide(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, Rejection> {
        match command {
            AccountCommand::Open { user_id, email, limits, now } => match &self.opened {
                Some(o) if o.user_id == user_id && o.email == email => Ok(vec![]),
                Some(_) => Err(Rejection::Taken { what: format!("account {user_id}") }),
                None => Ok(vec![AccountEvent::AccountOpened { user_id, email, limits, opened_at: now }]),
            },
            AccountCommand::CreateApiKey { key_id, prefix, hash, label, resource, now } => {
                let opened = self.opened.as_ref().ok_or_else(|| Rejection::NotFound { what: "account".into() })?;
                if self.keys.contains_key(&key_id) {
                    return Ok(vec![]);
                }
                let active = self.keys.values().filter(|k| !k.revoked).count() as u32;
                if active >= opened.limits.max_api_keys {
                    return Err(Rejection::LimitReached { what: "API keys".into(), limit: opened.limits.max_api_keys });
                }
                Ok(vec![AccountEvent::ApiKeyCreated { key_id, prefix, hash, label, created_at: now, resource }])
            }
            AccountCommand::LinkGithub { installation_id, account_login, now } => {
                self.opened.as_ref().ok_or_else(|| Rejection::NotFound { what: "account".into() })?;
                match &self.github {
                    Some((id, _)) if *id == installation_id => Ok(vec![]),
                    Some((old, _)) => Ok(vec![
                        AccountEvent::GithubInstallationUnlinked { installation_id: *old, unlinked_at: now },
                        AccountEvent::GithubInstallationLinked { installation_id, account_login, linked_at: now },
                    ]),
                    None => Ok(vec![AccountEvent::GithubInstallationLinked {
                        installation_id,
                        account_login,
                        linked_at: now,
                    }]),
                }
            }
            AccountCommand::UnlinkGithub { installation_id, now } => match &self.github {
                Some((id, _)) if *id == installation_id => {
                    Ok(vec![AccountEvent::GithubInstallationUnlinked { installation_id, unlinked_at: now }])
                }
                _ => Ok(vec![]),
            },
            AccountCommand::SetPassword { hash, now } => {
                self.opened.as_ref().ok_or_else(|| Rejection::NotFound { what: "account".into() })?;
                if self.password_hash.as_deref() == Some(hash.as_str()) {
                    return Ok(vec![]);
                }
                Ok(vec![AccountEvent::PasswordSet { hash, set_at: now }])
            }
            AccountCommand::RevokeApiKey { key_id, now } => match self.keys.get(&key_id) {
                None => Err(Rejection::NotFound { what: format!("API key {key_id}") }),
                Some(k) if k.revoked => Ok(vec![]),
                Some(_) => Ok(vec![AccountEvent::ApiKeyRevoked { key_id, revoked_at: now }]),
            },
        }
    }

    pub fn evolve(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::AccountOpened { user_id, email, limits, .. } => {
                self.opened = Some(Opened { user_id: *user_id, email: email.clone(), limits: limits.clone() });
            }
            AccountEvent::ApiKeyCreated { key_id, prefix, resource, .. } => {
                let key = KeyState { prefix: prefix.clone(), revoked: false, resource: resource.clone() };
                self.keys.insert(*key_id, key);
            }
            AccountEvent::ApiKeyRevoked { key_id, .. } => {
                if let Some(k) = self.keys.get_mut(key_id) {
                    k.revoked = true;
                }
            }
            AccountEvent::GithubInstallationLinked { installation_id, account_login, .. } => {
                self.github = Some((*installation_id, account_login.clone()));
            }
            AccountEvent::GithubInstallationUnlinked { installation_id, .. } => {
                if self.github.as_ref().is_some_and(|(id, _)| id == installation_id) {
                    self.github = None;
                }
            }
            AccountEvent::PasswordSet { hash, .. } => self.password_hash = Some(hash.clone()),
        }
    }
}

crate::aggregate!(Account, AccountEvent, AccountCommand);

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use crate::Recorded;

    use super::*;

    fn opened(user: UserId, max_keys: u32) -> AccountEvent {
        AccountEvent::AccountOpened {
            user_id: user,
            email: "a@example.com".into(),
            limits: Limits { max_api_keys: max_keys, ..Limits::default() },
            opened_at: DateTime::UNIX_EPOCH,
        }
    }

    fn created(key: ApiKeyId) -> AccountEvent {
        AccountEvent::ApiKeyCreated {
            key_id: key,
            prefix: "dk_live_aaaa0000".into(),
            hash: "h".into(),
            label: "l".into(),
            created_at: DateTime::UNIX_EPOCH,
            resource: None,
        }
    }

    fn create(key: ApiKeyId) -> AccountCommand {
        AccountCommand::CreateApiKey {
            key_id: key,
            prefix: "dk_live_aaaa0000".into(),
            hash: "h".into(),
            label: "l".into(),
            resource: None,
            now: DateTime::UNIX_EPOCH,
        }
    }

    #[tokio::test]
    async fn given_open_account_when_key_created_then_key_event() {
        let user = UserId::new();
        let key = ApiKeyId::new();
        TestFramework::<Account>::with(())
            .given(vec![Recorded(opened(user, 2))])
            .when_async(create(key))
            .await
            .then_expect_events(vec![Recorded(created(key))]);
    }

    #[tokio::test]
    async fn given_no_account_when_key_created_then_not_found() {
        TestFramework::<Account>::with(())
            .given_no_previous_events()
            .when_async(create(ApiKeyId::new()))
            .await
            .then_expect_error(Rejection::NotFound { what: "account".into() });
    }

    #[tokio::test]
    async fn given_key_limit_reached_when_key_created_then_refused() {
        let user = UserId::new();
        TestFramework::<Account>::with(())
            .given(vec![Recorded(opened(user, 1)), Recorded(created(ApiKeyId::new()))])
            .when_async(create(ApiKeyId::new()))
            .await
            .then_expect_error(Rejection::LimitReached { what: "API keys".into(), limit: 1 });
    }

    #[tokio::test]
    async fn given_revoked_key_when_revoked_again_then_nothing() {
        let user = UserId::new();
        let key = ApiKeyId::new();
        let revoked = AccountEvent::ApiKeyRevoked { key_id: key, revoked_at: DateTime::UNIX_EPOCH };
        TestFramework::<Account>::with(())
            .given(vec![Recorded(opened(user, 2)), Recorded(created(key)), Recorded(revoked)])
            .when_async(AccountCommand::RevokeApiKey { key_id: key, now: DateTime::UNIX_EPOCH })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn given_linked_installation_when_another_is_linked_then_the_old_one_is_unlinked() {
        let user = UserId::new();
        let linked = |id: u64| AccountEvent::GithubInstallationLinked {
            installation_id: id,
            account_login: "acme".into(),
            linked_at: DateTime::UNIX_EPOCH,
        };
        TestFramework::<Account>::with(())
            .given(vec![Recorded(opened(user, 2)), Recorded(linked(1))])
            .when_async(AccountCommand::LinkGithub {
                installation_id: 2,
                account_login: "acme".into(),
                now: DateTime::UNIX_EPOCH,
            })
            .await
            .then_expect_events(vec![
                Recorded(AccountEvent::GithubInstallationUnlinked {
                    installation_id: 1,
                    unlinked_at: DateTime::UNIX_EPOCH,
                }),
                Recorded(linked(2)),
            ]);
    }

    #[tokio::test]
    async fn given_open_account_when_password_set_then_event_and_none_without_account() {
        let set = AccountCommand::SetPassword { hash: "$2b$h".into(), now: DateTime::UNIX_EPOCH };
        TestFramework::<Account>::with(())
            .given(vec![Recorded(opened(UserId::new(), 2))])
            .when_async(set.clone())
            .await
            .then_expect_events(vec![Recorded(AccountEvent::PasswordSet {
                hash: "$2b$h".into(),
                set_at: DateTime::UNIX_EPOCH,
            })]);
        TestFramework::<Account>::with(())
            .given_no_previous_events()
            .when_async(set)
            .await
            .then_expect_error(Rejection::NotFound { what: "account".into() });
    }

    #[tokio::test]
    async fn given_open_account_when_opened_again_with_same_identity_then_nothing() {
        let user = UserId::new();
        TestFramework::<Account>::with(())
            .given(vec![Recorded(opened(user, 2))])
            .when_async(AccountCommand::Open {
                user_id: user,
                email: "a@example.com".into(),
                limits: Limits::default(),
                now: DateTime::UNIX_EPOCH,
            })
            .await
            .then_expect_events(vec![]);
    }
}
