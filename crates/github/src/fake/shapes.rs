//! GitHub's JSON objects as the REST API and webhooks send them (simple user, repository,
//! installation), modelled on captured GitHub responses. Every URL points at the base the
//! caller gives, so nothing in a fake object leads off the machine.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The bases URLs are built from: GitHub's are `https://api.github.com` and `https://github.com`.
pub(crate) struct Bases<'a> {
    pub api: &'a str,
    pub web: &'a str,
    /// Where `clone_url` points (the fake's own URL unless a test serves git elsewhere).
    pub git: &'a str,
}

/// GitHub's legacy global node id: base64 of `0<len(type)>:<type><id>`.
pub(crate) fn node_id(kind: &str, id: u64) -> String {
    STANDARD.encode(format!("0{}:{kind}{id}", kind.len()))
}

/// A stable account id for a login, so REST answers and webhook payloads agree without
/// sharing state.
pub(crate) fn account_id(login: &str) -> u64 {
    let digest = Sha256::digest(login.to_ascii_lowercase().as_bytes());
    u64::from(u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) | 1)
}

pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The "simple user" object (`owner`, `account`, `sender`); `kind` is `User` or `Organization`.
pub(crate) fn simple_user(bases: &Bases<'_>, login: &str, kind: &str) -> Value {
    let id = account_id(login);
    let (api, web) = (bases.api, bases.web);
    let user = format!("{api}/users/{login}");
    json!({
        "login": login,
        "id": id,
        "node_id": node_id(kind, id),
        "avatar_url": format!("{web}/avatars/u/{id}?v=4"),
        "gravatar_id": "",
        "url": user,
        "html_url": format!("{web}/{login}"),
        "followers_url": format!("{user}/followers"),
        "following_url": format!("{user}/following{{/other_user}}"),
        "gists_url": format!("{user}/gists{{/gist_id}}"),
        "starred_url": format!("{user}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{user}/subscriptions"),
        "organizations_url": format!("{user}/orgs"),
        "repos_url": format!("{user}/repos"),
        "events_url": format!("{user}/events{{/privacy}}"),
        "received_events_url": format!("{user}/received_events"),
        "type": kind,
        "user_view_type": "public",
        "site_admin": false,
    })
}

/// What a repository object is built from.
pub(crate) struct Repo<'a> {
    pub id: u64,
    pub owner_login: &'a str,
    pub owner_kind: &'a str,
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub private: bool,
    pub default_branch: &'a str,
    pub created_at: DateTime<Utc>,
}

/// The full repository object of `GET /repos/{owner}/{repo}` and `POST /orgs/{org}/repos`.
/// Webhooks send the same object with `created_at`/`pushed_at` as Unix seconds and a few
/// extra fields (`webhook = true`).
pub(crate) fn repository(bases: &Bases<'_>, repo: &Repo<'_>, webhook: bool) -> Value {
    let full_name = format!("{}/{}", repo.owner_login, repo.name);
    let api = format!("{}/repos/{full_name}", bases.api);
    let html = format!("{}/{full_name}", bases.web);
    let created = timestamp(repo.created_at);
    let mut object = json!({
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": full_name,
        "private": repo.private,
        "owner": simple_user(bases, repo.owner_login, repo.owner_kind),
        "html_url": html,
        "description": repo.description,
        "fork": false,
        "url": api,
        "created_at": created,
        "updated_at": created,
        "pushed_at": created,
        "git_url": format!("git://{}/{full_name}.git", host_of(bases.web)),
        "ssh_url": format!("git@{}:{full_name}.git", host_of(bases.web)),
        "clone_url": format!("{}/{full_name}.git", bases.git),
        "svn_url": html,
    });
    let rest = json!({
        "homepage": null,
        "size": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "language": null,
        "has_issues": true,
        "has_projects": true,
        "has_downloads": true,
        "has_wiki": true,
        "has_pages": false,
        "has_discussions": false,
        "forks_count": 0,
        "mirror_url": null,
        "archived": false,
        "disabled": false,
        "open_issues_count": 0,
        "license": null,
        "allow_forking": true,
        "is_template": false,
        "web_commit_signoff_required": false,
        "topics": [],
        "visibility": if repo.private { "private" } else { "public" },
        "forks": 0,
        "open_issues": 0,
        "watchers": 0,
        "default_branch": repo.default_branch,
    });
    let fields = object.as_object_mut().expect("a repository is an object");
    fields.extend(rest.as_object().expect("an object").clone());
    for (field, path) in [
        ("forks_url", "/forks"),
        ("keys_url", "/keys{/key_id}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("teams_url", "/teams"),
        ("hooks_url", "/hooks"),
        ("issue_events_url", "/issues/events{/number}"),
        ("events_url", "/events"),
        ("assignees_url", "/assignees{/user}"),
        ("branches_url", "/branches{/branch}"),
        ("tags_url", "/tags"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("trees_url", "/git/trees{/sha}"),
        ("statuses_url", "/statuses/{sha}"),
        ("languages_url", "/languages"),
        ("stargazers_url", "/stargazers"),
        ("contributors_url", "/contributors"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("commits_url", "/commits{/sha}"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("comments_url", "/comments{/number}"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("contents_url", "/contents/{+path}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("merges_url", "/merges"),
        ("archive_url", "/{archive_format}{/ref}"),
        ("downloads_url", "/downloads"),
        ("issues_url", "/issues{/number}"),
        ("pulls_url", "/pulls{/number}"),
        ("milestones_url", "/milestones{/number}"),
        ("notifications_url", "/notifications{?since,all,participating}"),
        ("labels_url", "/labels{/name}"),
        ("releases_url", "/releases{/id}"),
        ("deployments_url", "/deployments"),
    ] {
        fields.insert(field.to_owned(), Value::String(format!("{api}{path}")));
    }
    if webhook {
        let seconds = repo.created_at.timestamp();
        fields.insert("created_at".to_owned(), json!(seconds));
        fields.insert("pushed_at".to_owned(), json!(seconds));
        fields.insert("stargazers".to_owned(), json!(0));
        fields.insert("master_branch".to_owned(), json!(repo.default_branch));
        if let Some(owner) = fields.get_mut("owner").and_then(Value::as_object_mut) {
            owner.insert("name".to_owned(), json!(repo.owner_login));
            owner.insert("email".to_owned(), Value::Null);
        }
    } else {
        fields.insert(
            "permissions".to_owned(),
            json!({"admin": false, "maintain": false, "push": true, "triage": false, "pull": true}),
        );
    }
    if repo.owner_kind == "Organization" {
        fields.insert("organization".to_owned(), simple_user(bases, repo.owner_login, repo.owner_kind));
    }
    object
}

/// The installation object of `GET /app/installations/{id}` and of `installation` webhooks.
pub(crate) fn installation(
    bases: &Bases<'_>,
    id: u64,
    app_id: u64,
    login: &str,
    kind: &str,
    created_at: DateTime<Utc>,
) -> Value {
    let created = timestamp(created_at);
    let html_url = if kind == "Organization" {
        format!("{}/organizations/{login}/settings/installations/{id}", bases.web)
    } else {
        format!("{}/settings/installations/{id}", bases.web)
    };
    json!({
        "id": id,
        "client_id": format!("Iv1.{:016x}", app_id),
        "account": simple_user(bases, login, kind),
        "repository_selection": "all",
        "access_tokens_url": format!("{}/app/installations/{id}/access_tokens", bases.api),
        "repositories_url": format!("{}/installation/repositories", bases.api),
        "html_url": html_url,
        "app_id": app_id,
        "app_slug": "deploy-mcp-fake",
        "target_id": account_id(login),
        "target_type": kind,
        "permissions": permissions(),
        "events": ["push"],
        "created_at": created,
        "updated_at": created,
        "single_file_name": null,
        "has_multiple_single_files": false,
        "single_file_paths": [],
        "suspended_by": null,
        "suspended_at": null,
    })
}

/// What the fake App asks for: push access to code, and the metadata every App gets.
pub(crate) fn permissions() -> Value {
    json!({"contents": "write", "metadata": "read"})
}

/// `host[:port]` of a URL, for the `git://` and `ssh` URLs GitHub derives from its web host.
pub(crate) fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_follow_githubs_legacy_format() {
        // Taken from GitHub answers: user 10496163 and installation 39593520.
        assert_eq!(node_id("User", 10496163), "MDQ6VXNlcjEwNDk2MTYz");
        assert_eq!(node_id("IntegrationInstallation", 39593520), "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMzk1OTM1MjA=");
    }

    #[test]
    fn account_ids_are_stable_and_case_insensitive() {
        assert_eq!(account_id("Acme"), account_id("acme"));
        assert_ne!(account_id("acme"), account_id("octo"));
        assert_ne!(account_id("acme"), 0);
    }
}
