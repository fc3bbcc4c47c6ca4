//! Repositories: names, creation, temporary git tokens and their verification.
//!
//! Git tokens are `mlg_` + the repository's ULID (lower case) + 32 random characters, so a token
//! names its repository: verification loads that repository from the event store (consistent:
//! a token works the moment `get_git_token` returned it) and compares SHA-256 digests in
//! constant time. SHA-256 suffices for 190 random bits; bcrypt is for guessable secrets.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use cqrs_es::AggregateError;
use domain::{Claim, ClaimCommand, Rejection, Repo, RepoCommand};
use events::{ClaimKind, GithubRepoRef, RepoHost, RepoId, TokenId, UserId};
use rand::RngExt as _;
use sha2::{Digest, Sha256};
use store::Commands;
use subtle::ConstantTimeEq;

pub const TOKEN_SCHEME: &str = "mlg_";
const ULID_LEN: usize = 26;
const SECRET_LEN: usize = 32;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const MAX_NAME: usize = 64;

/// Why a repository operation failed, in words an agent can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    #[error(
        "`{0}` is not a valid repo name: use 1-64 characters of lowercase letters, digits, `-` and `_`, starting with a letter or digit (for example `my-app`)"
    )]
    BadName(String),
    #[error("no repo named `{0}`: create it with create_repo, or call list_repos to see yours")]
    NotFound(String),
    #[error("{0}")]
    Limit(String),
    #[error(
        "GitHub repos need the platform's GitHub App, which this platform has not configured: use host `internal` (the default)"
    )]
    GithubUnavailable,
    #[error("{0}")]
    Invalid(String),
    #[error("the platform could not complete this; retry in a moment ({0})")]
    Unavailable(String),
}

fn unavailable<E: std::fmt::Display>(e: E) -> RepoError {
    RepoError::Unavailable(e.to_string())
}

fn rejected(name: &str, e: AggregateError<Rejection>) -> RepoError {
    match e {
        AggregateError::UserError(Rejection::NotFound { .. }) => RepoError::NotFound(name.to_owned()),
        AggregateError::UserError(Rejection::LimitReached { what, limit }) => {
            RepoError::Limit(format!("{what}: limit of {limit} reached; wait for older tokens to expire"))
        }
        AggregateError::UserError(r) => RepoError::Invalid(r.to_string()),
        other => unavailable(other),
    }
}

/// Checks a repository name: 1-64 of `[a-z0-9_-]`, starting with a letter or digit. No dots or
/// slashes, so a name can never step outside its directory or look like `.git`.
pub fn validate_name(raw: &str) -> Result<&str, RepoError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_NAME
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && raw.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(raw)
    } else {
        let shown: String = raw.chars().take(80).collect();
        Err(RepoError::BadName(shown))
    }
}

fn claim_id(owner: UserId, name: &str) -> String {
    ClaimKind::Repo.claim_id(&format!("{owner}/{name}"))
}

/// Where a repository's bare git directory lives: named by its id, never by user input.
pub fn repo_dir(data_dir: &Path, repo_id: RepoId) -> PathBuf {
    data_dir.join("git").join(repo_id.dir_name())
}

/// A repository as the command side knows it.
#[derive(Debug, Clone)]
pub struct Found {
    pub repo_id: RepoId,
    pub owner: UserId,
    pub name: String,
    pub host: RepoHost,
    pub github: Option<GithubRepoRef>,
    pub state: Repo,
}

/// The repository `name` of `owner`, read consistently from the event store.
pub async fn find(commands: &Commands, owner: UserId, name: &str) -> Result<Option<Found>, RepoError> {
    let claim: Claim = commands.load(&claim_id(owner, name)).await.map_err(unavailable)?;
    let Some(holder) = claim.holder.filter(|h| h.owner == owner) else { return Ok(None) };
    let repo_id: RepoId = holder.target.parse().map_err(RepoError::Unavailable)?;
    load(commands, repo_id).await
}

/// A repository by id (the id inside a token).
pub async fn load(commands: &Commands, repo_id: RepoId) -> Result<Option<Found>, RepoError> {
    let state: Repo = commands.load(&repo_id.to_string()).await.map_err(unavailable)?;
    Ok(match &state.created {
        Some(c) if !state.deleted => Some(Found {
            repo_id,
            owner: c.owner,
            name: c.name.clone(),
            host: c.host,
            github: c.github.clone(),
            state: state.clone(),
        }),
        _ => None,
    })
}

/// Creates the repository, or returns the existing one of the same name (a retried call must
/// not fail). Returns whether it was created now.
pub async fn create(
    commands: &Commands,
    owner: UserId,
    name: &str,
    description: Option<String>,
    github: Option<GithubRepoRef>,
) -> Result<(Found, bool), RepoError> {
    let name = validate_name(name)?;
    if let Some(found) = find(commands, owner, name).await? {
        return Ok((found, false));
    }
    let claim_id = claim_id(owner, name);
    // The claim makes the name unique per owner; it may already point at a repo whose creation
    // was interrupted, which is then completed under the same id.
    let claim: Claim = commands.load(&claim_id).await.map_err(unavailable)?;
    let repo_id = match claim.holder {
        Some(h) if h.owner == owner => h.target.parse().map_err(RepoError::Unavailable)?,
        Some(_) => return Err(RepoError::Unavailable("name claimed by another owner".into())),
        None => {
            let repo_id = RepoId::new();
            let cmd = ClaimCommand::Claim {
                kind: ClaimKind::Repo,
                name: format!("{owner}/{name}"),
                owner,
                target: repo_id.to_string(),
                now: Utc::now(),
            };
            match commands.claims.execute(&claim_id, cmd).await {
                Ok(()) => repo_id,
                Err(AggregateError::AggregateConflict | AggregateError::UserError(Rejection::Taken { .. })) => {
                    // A concurrent create of the same name won: return its repo.
                    return find(commands, owner, name)
                        .await?
                        .map(|f| (f, false))
                        .ok_or_else(|| RepoError::Unavailable("concurrent create; retry".into()));
                }
                Err(e) => return Err(rejected(name, e)),
            }
        }
    };
    let cmd = RepoCommand::Create {
        repo_id,
        owner,
        name: name.to_owned(),
        host: if github.is_some() { RepoHost::Github } else { RepoHost::Internal },
        description,
        github,
        now: Utc::now(),
    };
    commands.repos.execute(&repo_id.to_string(), cmd).await.map_err(|e| rejected(name, e))?;
    let found = load(commands, repo_id).await?.ok_or_else(|| RepoError::Unavailable("repo vanished".into()))?;
    Ok((found, true))
}

/// A token just issued: shown once.
pub struct IssuedToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IssuedToken(expires {})", self.expires_at)
    }
}

fn digest(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Issues a temporary token that may clone from and push to `repo`.
pub async fn issue_token(
    commands: &Commands,
    owner: UserId,
    repo: &Found,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<IssuedToken, RepoError> {
    let secret: String = {
        let mut rng = rand::rng();
        (0..SECRET_LEN).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
    };
    let token = format!("{TOKEN_SCHEME}{}{secret}", repo.repo_id.0.to_string().to_lowercase());
    let expires_at = now + ttl;
    let cmd = RepoCommand::IssueToken {
        owner,
        token_id: TokenId::new(),
        prefix: token[..TOKEN_SCHEME.len() + ULID_LEN + 4].to_owned(),
        hash: digest(&token),
        expires_at,
        now,
    };
    commands.repos.execute(&repo.repo_id.to_string(), cmd).await.map_err(|e| rejected(&repo.name, e))?;
    Ok(IssuedToken { token, expires_at })
}

/// Why a git request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// The token is valid for this repository.
    Valid { owner: UserId },
    /// Not a token, unknown, or expired (401).
    Invalid(&'static str),
    /// A valid token of another repository (403).
    OtherRepo,
}

/// Checks a presented token against the repository the request names (`None`: a repository
/// that does not exist, which a valid token of another repository may not learn).
pub async fn check_token(
    commands: &Commands,
    token: &str,
    repo: Option<RepoId>,
    now: DateTime<Utc>,
) -> Result<TokenCheck, RepoError> {
    let Some(rest) = token.strip_prefix(TOKEN_SCHEME) else {
        return Ok(TokenCheck::Invalid("git tokens start with `mlg_`: get one with the get_git_token tool"));
    };
    if rest.len() != ULID_LEN + SECRET_LEN || !rest.bytes().all(|b| ALPHABET.contains(&b)) {
        return Ok(TokenCheck::Invalid("the git token is malformed: copy it again whole, or get a new one"));
    }
    let Ok(ulid) = ulid::Ulid::from_string(&rest[..ULID_LEN].to_uppercase()) else {
        return Ok(TokenCheck::Invalid("the git token is malformed: copy it again whole, or get a new one"));
    };
    let token_repo = RepoId(ulid);
    let Some(found) = load(commands, token_repo).await? else {
        return Ok(TokenCheck::Invalid("this git token is not valid: get a new one with get_git_token"));
    };
    let presented = digest(token);
    let matching = found.state.tokens.values().find(|t| bool::from(t.hash.as_bytes().ct_eq(presented.as_bytes())));
    let Some(t) = matching else {
        return Ok(TokenCheck::Invalid("this git token is not valid: get a new one with get_git_token"));
    };
    if t.expires_at <= now {
        return Ok(TokenCheck::Invalid("this git token has expired: get a new one with get_git_token"));
    }
    if Some(token_repo) != repo {
        return Ok(TokenCheck::OtherRepo);
    }
    Ok(TokenCheck::Valid { owner: found.owner })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["app", "my-app", "a", "x_1", &"a".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", "ü", "App", "-x", "_x", ".git", "a.b", "a b", &"a".repeat(65), &"a".repeat(300)]
        {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains("lowercase letters"), "{bad}: {err}");
        }
    }

    #[test]
    fn repo_dirs_stay_under_the_data_dir() {
        let dir = repo_dir(Path::new("/data"), RepoId::new());
        assert!(dir.starts_with("/data/git"));
        assert!(dir.to_string_lossy().ends_with(".git"));
    }
}
