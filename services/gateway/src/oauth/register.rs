//! Client registration rules for public clients: RFC 7591 dynamic registration requests and
//! Client ID Metadata Documents share them.

use serde::Deserialize;
use url::Url;

/// Why a registration (or a metadata document) is refused: RFC 7591 `invalid_redirect_uri` or
/// `invalid_client_metadata`, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("redirect_uri `{0}`: {1}")]
    InvalidRedirectUri(String, &'static str),
    #[error("{0}")]
    InvalidClientMetadata(String),
}

impl RegisterError {
    /// The RFC 7591 error code.
    pub fn code(&self) -> &'static str {
        match self {
            RegisterError::InvalidRedirectUri(..) => "invalid_redirect_uri",
            RegisterError::InvalidClientMetadata(_) => "invalid_client_metadata",
        }
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A redirect URI a public client may register: absolute https, or http on a loopback host
/// (native apps, RFC 8252), never with a fragment or user info.
pub fn check_redirect_uri(raw: &str) -> Result<Url, RegisterError> {
    let bad = |why| RegisterError::InvalidRedirectUri(raw.to_owned(), why);
    let url = Url::parse(raw).map_err(|_| bad("not an absolute URL"))?;
    if url.fragment().is_some() {
        return Err(bad("must not contain a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain user information"));
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(bad("http is allowed only for loopback (127.0.0.1, [::1], localhost); use https")),
        _ => Err(bad("use https (or http on a loopback address)")),
    }
}

/// The parts of RFC 7591 client metadata this server reads. Unknown fields are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientMetadata {
    /// Required in a metadata document (it must equal the document's URL).
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub client_uri: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub response_types: Option<Vec<String>>,
}

/// A client as the authorization server keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValidClient {
    pub redirect_uris: Vec<String>,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
}

const MAX_REDIRECT_URIS: usize = 10;
const MAX_NAME: usize = 200;

/// Validates the metadata of a public client.
pub fn validate(meta: &ClientMetadata) -> Result<ValidClient, RegisterError> {
    let invalid = |m: &str| RegisterError::InvalidClientMetadata(m.to_owned());
    if meta.redirect_uris.is_empty() {
        return Err(invalid("redirect_uris is required: list the exact URIs the client receives codes at"));
    }
    if meta.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid("at most 10 redirect_uris"));
    }
    for uri in &meta.redirect_uris {
        check_redirect_uri(uri)?;
    }
    if meta.token_endpoint_auth_method.as_deref().is_some_and(|m| m != "none") {
        return Err(invalid("only public clients are supported: token_endpoint_auth_method must be `none`"));
    }
    if let Some(g) = &meta.grant_types
        && !g.iter().all(|g| g == "authorization_code" || g == "refresh_token")
    {
        return Err(invalid("grant_types may contain only `authorization_code` and `refresh_token`"));
    }
    if let Some(r) = &meta.response_types
        && !r.iter().all(|r| r == "code")
    {
        return Err(invalid("response_types may contain only `code`"));
    }
    if meta.client_name.as_ref().is_some_and(|n| n.len() > MAX_NAME || n.chars().any(char::is_control)) {
        return Err(invalid("client_name must be at most 200 printable characters"));
    }
    if let Some(uri) = &meta.client_uri
        && !Url::parse(uri).is_ok_and(|u| matches!(u.scheme(), "https" | "http"))
    {
        return Err(invalid("client_uri must be an http(s) URL"));
    }
    Ok(ValidClient {
        redirect_uris: meta.redirect_uris.clone(),
        client_name: meta.client_name.clone(),
        client_uri: meta.client_uri.clone(),
    })
}

/// Whether a `client_id` names a Client ID Metadata Document: an https URL with a path
/// (http on loopback only when `allow_loopback_http`, for tests).
pub fn metadata_document_url(client_id: &str, allow_loopback_http: bool) -> Option<Url> {
    let url = Url::parse(client_id).ok()?;
    let scheme_ok = url.scheme() == "https" || (allow_loopback_http && url.scheme() == "http" && is_loopback(&url));
    let ok = scheme_ok
        && url.host().is_some()
        && url.path() != "/"
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    ok.then_some(url)
}

/// Validates a fetched metadata document: its `client_id` must be the URL it was fetched from.
pub fn validate_document(url: &str, meta: &ClientMetadata) -> Result<ValidClient, RegisterError> {
    if meta.client_id.as_deref() != Some(url) {
        return Err(RegisterError::InvalidClientMetadata(format!(
            "the metadata document's client_id must be its own URL `{url}`"
        )));
    }
    validate(meta)
}

/// `POST /oauth/register` (RFC 7591): registers a public client; its id is random.
pub async fn post_register(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse as _;
    let error = |code: &str, description: String| {
        let body = serde_json::json!({"error": code, "error_description": description});
        (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
    };
    let meta: ClientMetadata = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return error("invalid_client_metadata", format!("the body must be RFC 7591 client metadata JSON: {e}"));
        }
    };
    let client = match validate(&meta) {
        Ok(c) => c,
        Err(e) => return error(e.code(), e.to_string()),
    };
    let client_id = format!("dmcp_{}", ulid::Ulid::generate().to_string().to_lowercase());
    if let Err(e) = state.oauth.add_client(&client_id, &client).await {
        tracing::error!(error = %e, "oauth: cannot store a client");
        let body =
            serde_json::json!({"error": "temporarily_unavailable", "error_description": "retry in a few seconds"});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    tracing::info!(%client_id, name = client.client_name.as_deref().unwrap_or(""), "oauth: client registered");
    let body = serde_json::json!({
        "client_id": client_id,
        "client_id_issued_at": chrono::Utc::now().timestamp(),
        "redirect_uris": client.redirect_uris,
        "client_name": client.client_name,
        "client_uri": client.client_uri,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    });
    (StatusCode::CREATED, [(axum::http::header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_https_or_loopback_http() {
        for ok in [
            "https://client.example/cb",
            "http://127.0.0.1:3456/callback",
            "http://localhost/cb",
            "http://[::1]:80/cb",
            "https://client.example/cb?x=1",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://client.example/cb",
            "https://client.example/cb#frag",
            "javascript:alert(1)",
            "/relative",
            "https://user:pw@client.example/cb",
            "ftp://client.example/cb",
            "http://127.0.0.1.evil.example/cb",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    fn meta(uris: &[&str]) -> ClientMetadata {
        ClientMetadata { redirect_uris: uris.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn registrations_of_public_clients_only() {
        assert!(validate(&meta(&["https://c.example/cb"])).is_ok());
        assert_eq!(validate(&meta(&[])).unwrap_err().code(), "invalid_client_metadata");
        assert_eq!(validate(&meta(&["http://c.example/cb"])).unwrap_err().code(), "invalid_redirect_uri");
        let secret = ClientMetadata {
            token_endpoint_auth_method: Some("client_secret_basic".into()),
            ..meta(&["https://c.example/cb"])
        };
        assert!(validate(&secret).is_err());
        let implicit = ClientMetadata { response_types: Some(vec!["token".into()]), ..meta(&["https://c.example/cb"]) };
        assert!(validate(&implicit).is_err());
    }

    #[test]
    fn metadata_documents_are_https_urls_naming_themselves() {
        assert!(metadata_document_url("https://app.example/oauth/client.json", false).is_some());
        assert!(metadata_document_url("https://app.example/", false).is_none(), "needs a path");
        assert!(metadata_document_url("http://127.0.0.1:9/c.json", false).is_none());
        assert!(metadata_document_url("http://127.0.0.1:9/c.json", true).is_some());
        assert!(metadata_document_url("http://app.example/c.json", true).is_none());
        assert!(metadata_document_url("0b3f9e2a-uuid", false).is_none());
        let url = "https://app.example/c.json";
        let good = ClientMetadata { client_id: Some(url.into()), ..meta(&["https://app.example/cb"]) };
        assert!(validate_document(url, &good).is_ok());
        let other = ClientMetadata { client_id: Some("https://evil.example/c.json".into()), ..good };
        assert!(validate_document(url, &other).is_err());
    }
}
