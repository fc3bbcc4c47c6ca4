//! The GitHub App client: authenticates as the App with a short-lived RS256 JWT (octocrab signs
//! one per request), mints installation tokens, and creates or links repositories in the
//! account an installation belongs to.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use octocrab::Octocrab;
use octocrab::models::AppId;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How long to wait for a TCP connection to GitHub before answering `Unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for GitHub's answer; repository creation is the slowest call and takes
/// about a second.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What identifies the GitHub App; read once from the deployment's configuration.
#[derive(Clone)]
pub struct AppConfig {
    /// The App's numeric id (the JWT's `iss`).
    pub app_id: u64,
    /// The App's RSA private key, PKCS#1 (`BEGIN RSA PRIVATE KEY`, what GitHub hands out) or
    /// PKCS#8 (`BEGIN PRIVATE KEY`) PEM.
    pub private_key_pem: String,
    /// `https://api.github.com` in production; the fake's URL in tests.
    pub api_base: String,
    /// The secret GitHub signs webhook deliveries with.
    pub webhook_secret: String,
    /// The App's URL name, used for install links.
    pub app_slug: String,
}

impl fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("app_id", &self.app_id)
            .field("private_key_pem", &"<redacted>")
            .field("api_base", &self.api_base)
            .field("webhook_secret", &"<redacted>")
            .field("app_slug", &self.app_slug)
            .finish()
    }
}

/// A client acting as the GitHub App. Cheap to clone (one shared HTTP client); must be built
/// inside the Tokio runtime that uses it, because octocrab spawns its connection worker there.
#[derive(Clone)]
pub struct GithubApp {
    inner: Arc<Inner>,
}

struct Inner {
    /// Authenticated as the App: every request carries a freshly signed JWT.
    octocrab: Octocrab,
    app_id: u64,
    app_slug: String,
    api_base: String,
    webhook_secret: String,
}

impl fmt::Debug for GithubApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubApp")
            .field("app_id", &self.inner.app_id)
            .field("app_slug", &self.inner.app_slug)
            .field("api_base", &self.inner.api_base)
            .finish_non_exhaustive()
    }
}

/// Where the App is installed: the account whose repositories the installation can reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installation {
    pub id: u64,
    pub account_login: String,
    /// `"User"` or `"Organization"`: only in an organization can the App create repositories.
    pub account_type: String,
}

/// A token acting as one installation for about an hour (REST calls and `git` over https).
#[derive(Clone)]
pub struct InstallationToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallationToken").field("token", &"<redacted>").field("expires_at", &self.expires_at).finish()
    }
}

/// The fields of a GitHub repository the platform keeps; deserialized from GitHub's repository
/// object (extra fields are ignored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubRepo {
    pub id: u64,
    pub full_name: String,
    pub clone_url: String,
    pub default_branch: String,
    pub private: bool,
}

/// `clone_url` with `x-access-token:<token>@` as its user info, which is how GitHub accepts
/// installation tokens over git. Any user info already present is replaced; a string without
/// `scheme://` is returned unchanged.
pub fn authenticated_clone_url(clone_url: &str, token: &str) -> String {
    let Some((scheme, rest)) = clone_url.split_once("://") else {
        return clone_url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let host = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    format!("{scheme}://x-access-token:{token}@{host}")
}

#[derive(Deserialize)]
struct InstallationBody {
    id: u64,
    account: AccountBody,
}

#[derive(Deserialize)]
struct AccountBody {
    login: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
    expires_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct CreateRepoBody<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    private: bool,
}

impl GithubApp {
    /// Checks the whole configuration up front (the key is parsed and used to sign once), so
    /// a bad key stops start-up instead of failing the first agent's request.
    pub fn new(config: AppConfig) -> Result<Self> {
        let AppConfig { app_id, private_key_pem, api_base, webhook_secret, app_slug } = config;
        let mut problems = Vec::new();
        if app_id == 0 {
            problems.push("the App id must not be 0".to_owned());
        }
        if webhook_secret.is_empty() {
            problems.push("the webhook secret must not be empty".to_owned());
        }
        if app_slug.is_empty() || !app_slug.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            problems.push(format!("the App slug `{app_slug}` must be the App's URL name (letters, digits, `-`)"));
        }
        if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
            problems.push(format!("the API base `{api_base}` must be an http(s) URL"));
        }
        let key = match octocrab::jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.as_bytes()) {
            Ok(key) => match octocrab::auth::create_jwt(AppId(app_id), &key) {
                Ok(_) => Some(key),
                Err(e) => {
                    problems.push(format!("the private key cannot sign: {e}"));
                    None
                }
            },
            Err(e) => {
                problems.push(format!("the private key is not an RSA private key in PEM (PKCS#1 or PKCS#8): {e}"));
                None
            }
        };
        let (Some(key), true) = (key, problems.is_empty()) else {
            return Err(Error::Config(problems.join("; ")));
        };
        let octocrab = Octocrab::builder()
            .base_uri(api_base.as_str())
            .map_err(|e| Error::Config(format!("the API base `{api_base}` is not a URL: {e}")))?
            .app(AppId(app_id), key)
            .set_connect_timeout(Some(CONNECT_TIMEOUT))
            .set_read_timeout(Some(READ_TIMEOUT))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(GithubApp { inner: Arc::new(Inner { octocrab, app_id, app_slug, api_base, webhook_secret }) })
    }

    pub fn app_id(&self) -> u64 {
        self.inner.app_id
    }

    /// The page where a user installs the App; GitHub sends `state` back to the App's setup
    /// URL, which is how the platform ties the installation to the account that asked.
    pub fn install_url(&self, state: &str) -> String {
        format!("https://github.com/apps/{}/installations/new?state={}", self.inner.app_slug, url_encode(state))
    }

    /// [`crate::verify_signature`] with the configured webhook secret.
    pub fn verify_webhook(&self, body: &[u8], signature_header: Option<&str>) -> bool {
        crate::verify_signature(self.inner.webhook_secret.as_bytes(), body, signature_header)
    }

    /// `GET /app/installations/{id}` as the App.
    pub async fn installation(&self, installation_id: u64) -> Result<Installation> {
        let body: InstallationBody = self
            .inner
            .octocrab
            .get(format!("/app/installations/{installation_id}"), None::<&()>)
            .await
            .map_err(Error::from_octocrab)?;
        Ok(Installation { id: body.id, account_login: body.account.login, account_type: body.account.kind })
    }

    /// `POST /app/installations/{id}/access_tokens` as the App: a token with every permission
    /// the installation granted, on every repository it can see, valid for about an hour.
    pub async fn installation_token(&self, installation_id: u64) -> Result<InstallationToken> {
        let body: TokenBody = self
            .inner
            .octocrab
            .post(format!("/app/installations/{installation_id}/access_tokens"), None::<&()>)
            .await
            .map_err(Error::from_octocrab)?;
        tracing::debug!(installation_id, expires_at = %body.expires_at, "minted an installation token");
        Ok(InstallationToken { token: body.token, expires_at: body.expires_at })
    }

    /// Creates the private repository `name` in the installation's account when it is an
    /// Organization (`POST /orgs/{org}/repos`). When the organization already has a repository
    /// of that name that the installation can see, that repository is returned instead: the
    /// call is idempotent, so an agent retrying after a lost answer gets its repository.
    ///
    /// GitHub does not let an App create repositories in a User account, so there the existing
    /// `{login}/{name}` is returned when the installation can see it, and otherwise
    /// [`Error::CannotCreateForUser`] tells the user what to do.
    pub async fn create_or_link_repo(
        &self,
        installation_id: u64,
        name: &str,
        description: Option<&str>,
    ) -> Result<GithubRepo> {
        validate_repo_name(name)?;
        let installation = self.installation(installation_id).await?;
        let token = self.installation_token(installation_id).await?;
        let client = self.inner.octocrab.user_access_token(token.token).map_err(Error::from_octocrab)?;
        let login = installation.account_login;
        match installation.account_type.as_str() {
            "Organization" => {
                let body = CreateRepoBody { name, description, private: true };
                let created: Result<GithubRepo> =
                    client.post(format!("/orgs/{login}/repos"), Some(&body)).await.map_err(Error::from_octocrab);
                match created {
                    Ok(repo) => {
                        tracing::info!(installation_id, repo = %repo.full_name, "created a GitHub repository");
                        Ok(repo)
                    }
                    // 422 is also GitHub's answer for other validation failures: only an
                    // existing, visible repository turns it into a link.
                    Err(refused @ Error::Api { status: 422, .. }) => match get_repo(&client, &login, name).await {
                        Ok(repo) => {
                            tracing::info!(installation_id, repo = %repo.full_name, "linked an existing repository");
                            Ok(repo)
                        }
                        Err(Error::NotFound) => Err(refused),
                        Err(other) => Err(other),
                    },
                    Err(other) => Err(other),
                }
            }
            "User" => match get_repo(&client, &login, name).await {
                Ok(repo) => {
                    tracing::info!(installation_id, repo = %repo.full_name, "linked an existing repository");
                    Ok(repo)
                }
                Err(Error::NotFound) => Err(Error::CannotCreateForUser { login }),
                Err(other) => Err(other),
            },
            other => Err(Error::Unexpected(format!(
                "installation {installation_id} belongs to a `{other}` account, which cannot own repositories"
            ))),
        }
    }
}

/// `GET /repos/{owner}/{name}` with the installation's token: a repository the installation
/// cannot see answers 404, like a missing one.
async fn get_repo(client: &Octocrab, owner: &str, name: &str) -> Result<GithubRepo> {
    client.get(format!("/repos/{owner}/{name}"), None::<&()>).await.map_err(Error::from_octocrab)
}

/// GitHub's rule for repository names, checked here because GitHub silently rewrites other
/// characters to `-`, and because the name becomes a URL path segment.
fn validate_repo_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid { Ok(()) } else { Err(Error::InvalidName(name.to_owned())) }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so any `state` survives
/// the round trip through GitHub.
fn url_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../tests/fixtures/test-app.pem");

    fn config() -> AppConfig {
        AppConfig {
            app_id: 42,
            private_key_pem: KEY.to_owned(),
            api_base: "http://127.0.0.1:9".to_owned(),
            webhook_secret: "hook-secret".to_owned(),
            app_slug: "deploy-mcp-test".to_owned(),
        }
    }

    #[test]
    fn clone_url_carries_the_token_as_user_info() {
        assert_eq!(
            authenticated_clone_url("https://github.com/acme/web.git", "ghs_abc"),
            "https://x-access-token:ghs_abc@github.com/acme/web.git"
        );
        assert_eq!(
            authenticated_clone_url("https://old:secret@github.com/acme/web.git", "ghs_abc"),
            "https://x-access-token:ghs_abc@github.com/acme/web.git"
        );
        assert_eq!(
            authenticated_clone_url("http://127.0.0.1:8080/a@b/web.git", "t"),
            "http://x-access-token:t@127.0.0.1:8080/a@b/web.git"
        );
        assert_eq!(authenticated_clone_url("not a url", "t"), "not a url");
    }

    #[test]
    fn repo_names_follow_github_rules() {
        for ok in ["web", "my-app_2", "a.b", ".github", &"x".repeat(100)] {
            assert!(validate_repo_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../orgs", "a b", "é", "a?b", &"x".repeat(101)] {
            assert!(matches!(validate_repo_name(bad), Err(Error::InvalidName(_))), "{bad}");
        }
    }

    #[tokio::test]
    async fn install_url_encodes_the_state() {
        let app = GithubApp::new(config()).unwrap();
        assert_eq!(
            app.install_url("usr_01 a&b=c/é"),
            "https://github.com/apps/deploy-mcp-test/installations/new?state=usr_01%20a%26b%3Dc%2F%C3%A9"
        );
    }

    #[tokio::test]
    async fn debug_output_has_no_secrets() {
        let app = GithubApp::new(config()).unwrap();
        let printed = format!("{app:?} {:?}", config());
        assert!(!printed.contains("hook-secret") && !printed.contains("PRIVATE KEY"), "{printed}");
        let token = InstallationToken { token: "ghs_secret".to_owned(), expires_at: Utc::now() };
        assert!(!format!("{token:?}").contains("ghs_secret"));
    }

    #[tokio::test]
    async fn bad_configuration_is_reported_in_one_error() {
        let bad = AppConfig {
            app_id: 0,
            private_key_pem: "-----BEGIN RSA PRIVATE KEY-----\nnope\n-----END RSA PRIVATE KEY-----\n".to_owned(),
            api_base: "api.github.com".to_owned(),
            webhook_secret: String::new(),
            app_slug: "Deploy MCP".to_owned(),
        };
        let Err(Error::Config(message)) = GithubApp::new(bad) else { panic!("expected a Config error") };
        for part in ["App id", "webhook secret", "slug", "API base", "private key"] {
            assert!(message.contains(part), "{part} missing from: {message}");
        }
    }

    #[tokio::test]
    async fn a_pkcs8_key_is_accepted() {
        let pkcs8 =
            AppConfig { private_key_pem: include_str!("../tests/fixtures/test-wrong-app.pem").to_owned(), ..config() };
        assert!(GithubApp::new(pkcs8).is_ok());
    }
}
