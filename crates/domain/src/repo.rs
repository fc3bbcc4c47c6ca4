use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::{GithubRepoRef, RepoEvent, RepoHost, RepoId, ServiceId, TokenId, UserId};
use serde::{Deserialize, Serialize};

use crate::Rejection;

/// A git repository and the temporary tokens that may push to it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repo {
    pub created: Option<Created>,
    pub tokens: BTreeMap<TokenId, Token>,
    /// Services deploying from this repository, with their branch.
    pub services: BTreeMap<ServiceId, String>,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created {
    pub repo_id: RepoId,
    pub owner: UserId,
    pub name: String,
    pub host: RepoHost,
    pub github: Option<GithubRepoRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub prefix: String,
    pub hash: String,
    pub expires_at: DateTime<Utc>,
}

/// At most this many unexpired tokens per repository: enough for parallel agents, bounded.
pub const MAX_LIVE_TOKENS: usize = 50;

#[derive(Debug, Clone)]
pub enum RepoCommand {
    Create {
        repo_id: RepoId,
        owner: UserId,
        name: String,
        host: RepoHost,
        description: Option<String>,
        github: Option<GithubRepoRef>,
        now: DateTime<Utc>,
    },
    IssueToken {
        owner: UserId,
        token_id: TokenId,
        prefix: String,
        hash: String,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    AttachService {
        owner: UserId,
        service_id: ServiceId,
        branch: String,
    },
    DetachService {
        service_id: ServiceId,
    },
}

impl Repo {
    pub fn decide(&self, command: RepoCommand) -> Result<Vec<RepoEvent>, Rejection> {
        match command {
            RepoCommand::Create { repo_id, owner, name, host, description, github, now } => match &self.created {
                Some(c) if c.repo_id == repo_id && c.owner == owner && c.name == name => Ok(vec![]),
                Some(_) => Err(Rejection::Taken { what: format!("repo `{name}`") }),
                None => {
                    if (host == RepoHost::Github) != github.is_some() {
                        return Err(Rejection::Invalid(
                            "a github.com repo needs its GitHub repository, and only it".into(),
                        ));
                    }
                    Ok(vec![RepoEvent::RepoCreated {
                        repo_id,
                        owner,
                        name,
                        host,
                        description,
                        github,
                        created_at: now,
                    }])
                }
            },
            RepoCommand::IssueToken { owner, token_id, prefix, hash, expires_at, now } => {
                let created = self.live_for(owner)?;
                if self.tokens.contains_key(&token_id) {
                    return Ok(vec![]);
                }
                if expires_at <= now {
                    return Err(Rejection::Invalid("a token must expire in the future".into()));
                }
                let live = self.tokens.values().filter(|t| t.expires_at > now).count();
                if live >= MAX_LIVE_TOKENS {
                    return Err(Rejection::LimitReached {
                        what: format!("live git tokens of repo `{}`", created.name),
                        limit: MAX_LIVE_TOKENS as u32,
                    });
                }
                Ok(vec![RepoEvent::GitTokenIssued { token_id, prefix, hash, expires_at }])
            }
            RepoCommand::AttachService { owner, service_id, branch } => {
                self.live_for(owner)?;
                Ok(match self.services.get(&service_id) {
                    Some(b) if *b == branch => vec![],
                    _ => vec![RepoEvent::ServiceAttached { service_id, branch }],
                })
            }
            RepoCommand::DetachService { service_id } => Ok(if self.services.contains_key(&service_id) {
                vec![RepoEvent::ServiceDetached { service_id }]
            } else {
                vec![]
            }),
        }
    }

    /// The services that deploy pushes to `git_ref` (`refs/heads/<branch>`).
    pub fn services_on(&self, git_ref: &str) -> Vec<ServiceId> {
        let Some(branch) = git_ref.strip_prefix("refs/heads/") else { return vec![] };
        self.services.iter().filter(|(_, b)| *b == branch).map(|(s, _)| *s).collect()
    }

    /// The repository when it exists for `owner`: another user's repo is "not found".
    fn live_for(&self, owner: UserId) -> Result<&Created, Rejection> {
        match &self.created {
            Some(c) if c.owner == owner && !self.deleted => Ok(c),
            _ => Err(Rejection::NotFound { what: "repo".into() }),
        }
    }

    pub fn evolve(&mut self, event: &RepoEvent) {
        match event {
            RepoEvent::RepoCreated { repo_id, owner, name, host, github, .. } => {
                self.created = Some(Created {
                    repo_id: *repo_id,
                    owner: *owner,
                    name: name.clone(),
                    host: *host,
                    github: github.clone(),
                });
            }
            RepoEvent::GitTokenIssued { token_id, prefix, hash, expires_at } => {
                self.tokens
                    .insert(*token_id, Token { prefix: prefix.clone(), hash: hash.clone(), expires_at: *expires_at });
            }
            RepoEvent::RepoDeleted { .. } => self.deleted = true,
            RepoEvent::ServiceAttached { service_id, branch } => {
                self.services.insert(*service_id, branch.clone());
            }
            RepoEvent::ServiceDetached { service_id } => {
                self.services.remove(service_id);
            }
        }
    }
}

crate::aggregate!(Repo, RepoEvent, RepoCommand);

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn created(owner: UserId) -> (Repo, RepoId) {
        let repo_id = RepoId::new();
        let mut r = Repo::default();
        r.evolve(&RepoEvent::RepoCreated {
            repo_id,
            owner,
            name: "app".into(),
            host: RepoHost::Internal,
            description: None,
            github: None,
            created_at: DateTime::UNIX_EPOCH,
        });
        (r, repo_id)
    }

    fn issue(owner: UserId, expires_in: Duration) -> RepoCommand {
        let now = DateTime::UNIX_EPOCH + Duration::days(1);
        RepoCommand::IssueToken {
            owner,
            token_id: TokenId::new(),
            prefix: "mlg_abcdefgh".into(),
            hash: "h".into(),
            expires_at: now + expires_in,
            now,
        }
    }

    #[test]
    fn given_repo_when_owner_asks_token_then_issued() {
        let owner = UserId::new();
        let (repo, _) = created(owner);
        let events = repo.decide(issue(owner, Duration::hours(1))).unwrap();
        assert!(matches!(&events[..], [RepoEvent::GitTokenIssued { .. }]));
    }

    #[test]
    fn given_repo_when_another_user_asks_token_then_not_found() {
        let (repo, _) = created(UserId::new());
        let err = repo.decide(issue(UserId::new(), Duration::hours(1))).unwrap_err();
        assert_eq!(err, Rejection::NotFound { what: "repo".into() });
    }

    #[test]
    fn given_no_repo_when_token_asked_then_not_found() {
        let err = Repo::default().decide(issue(UserId::new(), Duration::hours(1))).unwrap_err();
        assert!(matches!(err, Rejection::NotFound { .. }));
    }

    #[test]
    fn given_repo_when_token_already_expired_then_refused() {
        let owner = UserId::new();
        let (repo, _) = created(owner);
        assert!(matches!(repo.decide(issue(owner, Duration::seconds(-1))), Err(Rejection::Invalid(_))));
    }

    #[test]
    fn given_many_live_tokens_when_one_more_then_limit() {
        let owner = UserId::new();
        let (mut repo, _) = created(owner);
        for _ in 0..MAX_LIVE_TOKENS {
            for e in repo.decide(issue(owner, Duration::hours(1))).unwrap() {
                repo.evolve(&e);
            }
        }
        assert!(matches!(repo.decide(issue(owner, Duration::hours(1))), Err(Rejection::LimitReached { .. })));
    }

    #[test]
    fn given_attached_service_when_push_to_its_branch_then_it_is_found() {
        let owner = UserId::new();
        let (mut repo, _) = created(owner);
        let service_id = ServiceId::new();
        let attach = RepoCommand::AttachService { owner, service_id, branch: "main".into() };
        for e in repo.decide(attach.clone()).unwrap() {
            repo.evolve(&e);
        }
        assert!(repo.decide(attach).unwrap().is_empty(), "attaching twice records nothing");
        assert_eq!(repo.services_on("refs/heads/main"), vec![service_id]);
        assert!(repo.services_on("refs/heads/dev").is_empty());
        assert!(repo.services_on("refs/tags/main").is_empty());
        let other = RepoCommand::AttachService { owner: UserId::new(), service_id, branch: "main".into() };
        assert!(matches!(repo.decide(other), Err(Rejection::NotFound { .. })));
    }

    #[test]
    fn given_repo_when_created_again_identically_then_nothing() {
        let owner = UserId::new();
        let (repo, repo_id) = created(owner);
        let again = RepoCommand::Create {
            repo_id,
            owner,
            name: "app".into(),
            host: RepoHost::Internal,
            description: None,
            github: None,
            now: DateTime::UNIX_EPOCH,
        };
        assert!(repo.decide(again).unwrap().is_empty());
    }
}
