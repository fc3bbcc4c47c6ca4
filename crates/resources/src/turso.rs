//! Turso (hosted libSQL) through its Platform API: one database per resource, named `r-<id>` in a fixed group,
//! with a full-access auth token for the app.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use crate::{Credentials, Provider, ProviderError, ResourceKind, Result, Size, validate_id};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TursoProvider {
    /// Base of the Platform API, `https://api.turso.tech` in production.
    pub api_url: String,
    pub organization: String,
    /// Platform API token (not a database token): it can create and delete every database of the organization.
    pub api_token: String,
    /// The group new databases join; it must already exist and fixes their location.
    pub group: String,
}

impl fmt::Debug for TursoProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TursoProvider")
            .field("api_url", &self.api_url)
            .field("organization", &self.organization)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// One client for the process: it pools connections to the API across calls and providers.
fn http() -> Result<reqwest::Client> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client.clone());
    }
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ProviderError::Failed(format!("cannot build the HTTP client for Turso: {e}")))?;
    Ok(CLIENT.get_or_init(|| client).clone())
}

#[derive(Debug, Deserialize)]
struct DatabaseEnvelope {
    database: Database,
}

#[derive(Debug, Deserialize)]
struct Database {
    #[serde(rename = "Hostname")]
    hostname: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    jwt: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

impl TursoProvider {
    pub fn new(
        api_url: impl Into<String>,
        organization: impl Into<String>,
        api_token: impl Into<String>,
        group: impl Into<String>,
    ) -> Self {
        Self {
            api_url: api_url.into(),
            organization: organization.into(),
            api_token: api_token.into(),
            group: group.into(),
        }
    }

    /// `<api_url>/v1/organizations/<org>/databases/<segments…>`, each segment percent-encoded.
    fn endpoint(&self, segments: &[&str]) -> Result<Url> {
        let mut url =
            Url::parse(&self.api_url).ok().filter(|u| matches!(u.scheme(), "http" | "https")).ok_or_else(|| {
                ProviderError::Failed(format!("the Turso API URL `{}` is not an http(s) URL", self.api_url))
            })?;
        url.path_segments_mut()
            .map_err(|()| ProviderError::Failed(format!("the Turso API URL `{}` cannot be a base", self.api_url)))?
            .pop_if_empty()
            .extend(["v1", "organizations", &self.organization, "databases"])
            .extend(segments);
        Ok(url)
    }

    async fn call(&self, method: Method, url: Url, body: Option<serde_json::Value>, what: &str) -> Result<Reply> {
        let mut request = http()?.request(method, url).bearer_auth(&self.api_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let unreachable = |e: reqwest::Error| {
            ProviderError::Unavailable(format!("Turso did not answer while {what} ({e}); retry later"))
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        Ok(Reply { status, body: body.to_vec() })
    }

    /// Creates the database, or finds it when an earlier attempt already did. `true` when this call created it.
    async fn create_database(&self, name: &str) -> Result<(Result<Database>, bool)> {
        let what = format!("creating database {name}");
        let body = serde_json::json!({ "name": name, "group": self.group });
        let reply = self.call(Method::POST, self.endpoint(&[])?, Some(body), &what).await?;
        match reply.status {
            s if s.is_success() => Ok((reply.json::<DatabaseEnvelope>(&what).map(|d| d.database), true)),
            StatusCode::CONFLICT => {
                let what = format!("reading existing database {name}");
                let reply = self.call(Method::GET, self.endpoint(&[name])?, None, &what).await?;
                match reply.status {
                    s if s.is_success() => Ok((reply.json::<DatabaseEnvelope>(&what).map(|d| d.database), false)),
                    StatusCode::NOT_FOUND => Err(ProviderError::Unavailable(format!(
                        "Turso reported database {name} as existing, then not found (a concurrent delete?); retry"
                    ))),
                    _ => Err(self.refusal(&what, &reply)),
                }
            }
            _ => Err(self.refusal(&what, &reply)),
        }
    }

    async fn create_token(&self, name: &str) -> Result<String> {
        let what = format!("creating an auth token for database {name}");
        let mut url = self.endpoint(&[name, "auth", "tokens"])?;
        // Tokens never expire: they are stored sealed with the resource; creating again issues a new one.
        url.query_pairs_mut().append_pair("expiration", "never").append_pair("authorization", "full-access");
        let reply = self.call(Method::POST, url, None, &what).await?;
        if !reply.status.is_success() {
            return Err(self.refusal(&what, &reply));
        }
        Ok(reply.json::<TokenResponse>(&what)?.jwt)
    }

    async fn delete_database(&self, name: &str) -> Result<()> {
        let what = format!("deleting database {name}");
        let reply = self.call(Method::DELETE, self.endpoint(&[name])?, None, &what).await?;
        match reply.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self.refusal(&what, &reply)),
        }
    }

    fn refusal(&self, what: &str, reply: &Reply) -> ProviderError {
        let status = reply.status;
        let detail = reply.message();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProviderError::Failed(format!(
                "Turso rejected the platform's API token while {what} ({status}: {detail}); the operator must \
                 configure a valid Turso API token for organization `{}`",
                self.organization
            )),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => {
                ProviderError::Unavailable(format!("Turso is busy while {what} ({status}: {detail}); retry later"))
            }
            s if s.is_server_error() => {
                ProviderError::Unavailable(format!("Turso failed while {what} ({status}: {detail}); retry later"))
            }
            _ => ProviderError::Failed(format!("Turso refused {what} ({status}: {detail})")),
        }
    }
}

struct Reply {
    status: StatusCode,
    body: Vec<u8>,
}

impl Reply {
    fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ProviderError::Failed(format!("Turso answered {what} with an unexpected body ({e}): {}", self.message()))
        })
    }

    /// Turso's `{"error": "..."}` message, or the start of the raw body.
    fn message(&self) -> String {
        if let Ok(body) = serde_json::from_slice::<ErrorBody>(&self.body) {
            return body.error;
        }
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(200) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None if text.is_empty() => "no details".to_owned(),
            None => text.to_owned(),
        }
    }
}

/// `r-<id>` with `_` turned into `-`: Turso names allow lowercase letters, digits and dashes. Ids never contain
/// `-`, so two ids never share a name.
fn database_name(id: &str) -> Result<String> {
    validate_id(id)?;
    Ok(format!("r-{}", id.replace('_', "-")))
}

#[async_trait::async_trait]
impl Provider for TursoProvider {
    fn kind(&self) -> ResourceKind {
        ResourceKind::Sqlite
    }

    async fn create(&self, id: &str, size: &str) -> Result<Credentials> {
        // Every size gets the same database for now; the size is still checked so agents learn the choices.
        Size::parse(size)?;
        let name = database_name(id)?;
        let (database, created) = self.create_database(&name).await?;
        let result = match database {
            Ok(database) => self.create_token(&name).await.map(|jwt| (database, jwt)),
            Err(e) => Err(e),
        };
        match result {
            Ok((database, jwt)) => Ok(Credentials {
                url: format!("libsql://{}", database.hostname),
                host: Some(database.hostname),
                port: None,
                database: Some(name),
                user: None,
                password: None,
                token: Some(jwt),
            }),
            Err(e) => {
                // Only what this call made is removed: a database found existing may hold the app's data.
                if created && let Err(cleanup) = self.delete_database(&name).await {
                    tracing::warn!(database = name, error = %cleanup, "could not delete a half-created Turso database");
                }
                Err(e)
            }
        }
    }

    async fn delete(&self, id: &str) -> Result<()> {
        self.delete_database(&database_name(id)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_endpoints() {
        assert_eq!(database_name("res_01ab").unwrap(), "r-res-01ab");
        let p = TursoProvider::new("https://api.turso.tech/", "my org", "t", "default");
        assert_eq!(
            p.endpoint(&["r-x", "auth", "tokens"]).unwrap().as_str(),
            "https://api.turso.tech/v1/organizations/my%20org/databases/r-x/auth/tokens"
        );
        assert!(TursoProvider::new("api.turso.tech", "o", "t", "g").endpoint(&[]).is_err());
    }
}
