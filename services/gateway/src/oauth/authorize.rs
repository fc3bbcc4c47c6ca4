//! Validation of an authorization request (`GET /oauth/authorize`).
//!
//! The order matters for safety: until the client and its exact redirect URI are known good,
//! every problem is shown on an error page and never redirected (no open redirect). After that,
//! OAuth errors go back to the client on the redirect URI with `error`, `state` and `iss`.

use serde::Deserialize;
use url::Url;

use super::pkce;

/// The query of an authorization request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub resource: Option<String>,
    pub scope: Option<String>,
}

/// A request that may proceed to sign-in and consent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValidRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub resource: String,
}

/// Why an authorization request fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// No trustworthy redirect URI: show this on an HTML page, do not redirect.
    Page(String),
    /// An OAuth error to send back on the (validated) redirect URI.
    Redirect { redirect_uri: String, error: &'static str, description: String, state: Option<String> },
}

impl AuthorizeError {
    /// Where to send the browser for a `Redirect` error; `None` for a page.
    pub fn location(&self, issuer: &str) -> Option<String> {
        match self {
            AuthorizeError::Page(_) => None,
            AuthorizeError::Redirect { redirect_uri, error, description, state } => {
                let mut pairs = vec![("error", *error), ("error_description", description.as_str())];
                if let Some(s) = state {
                    pairs.push(("state", s));
                }
                pairs.push(("iss", issuer));
                Some(with_query(redirect_uri, &pairs))
            }
        }
    }
}

/// `redirect_uri` with `pairs` appended to its query (keeping the query it was registered with).
pub fn with_query(redirect_uri: &str, pairs: &[(&str, &str)]) -> String {
    match Url::parse(redirect_uri) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(pairs);
            url.to_string()
        }
        // Registered URIs were parsed at registration; this cannot happen for them.
        Err(_) => redirect_uri.to_owned(),
    }
}

/// The successful authorization response: `code`, `state` and `iss` (RFC 9207).
pub fn code_location(redirect_uri: &str, code: &str, state: Option<&str>, issuer: &str) -> String {
    let mut pairs = vec![("code", code)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", issuer));
    with_query(redirect_uri, &pairs)
}

/// Validates `params` for a client whose registered redirect URIs are `registered` (`None`:
/// unknown client) against the protected resource `mcp_url`.
pub fn validate(
    params: &AuthorizeParams,
    registered: Option<&[String]>,
    mcp_url: &str,
) -> Result<ValidRequest, AuthorizeError> {
    let client_id = params.client_id.as_deref().filter(|c| !c.is_empty()).ok_or_else(|| {
        AuthorizeError::Page("The request has no client_id. Start again from your MCP client.".into())
    })?;
    let registered = registered.ok_or_else(|| {
        AuthorizeError::Page("This client is not registered here. Start again from your MCP client.".into())
    })?;
    let redirect_uri = match params.redirect_uri.as_deref() {
        // Exact string match only: no prefix, no normalisation.
        Some(r) if registered.iter().any(|x| x == r) => r.to_owned(),
        Some(_) => {
            return Err(AuthorizeError::Page(
                "The redirect_uri is not one this client registered, so this page will not send you there.".into(),
            ));
        }
        None if registered.len() == 1 => registered[0].clone(),
        None => {
            return Err(AuthorizeError::Page(
                "The request has no redirect_uri and the client registered several.".into(),
            ));
        }
    };
    let state = params.state.clone();
    let redirect = |error: &'static str, description: String| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
        description,
        state: state.clone(),
    };
    match params.response_type.as_deref() {
        Some("code") => {}
        None => return Err(redirect("invalid_request", "response_type is required and must be `code`".into())),
        Some(_) => return Err(redirect("unsupported_response_type", "only response_type=code is supported".into())),
    }
    let code_challenge =
        pkce::check_challenge(params.code_challenge.as_deref(), params.code_challenge_method.as_deref())
            .map_err(|e| redirect("invalid_request", e.to_string()))?;
    let resource = match params.resource.as_deref() {
        Some(r) if r.trim_end_matches('/') == mcp_url => mcp_url.to_owned(),
        Some(_) => return Err(redirect("invalid_target", format!("resource must be the MCP URL `{mcp_url}`"))),
        None => return Err(redirect("invalid_target", format!("resource is required: send `resource={mcp_url}`"))),
    };
    Ok(ValidRequest { client_id: client_id.to_owned(), redirect_uri, state, code_challenge, resource })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MCP: &str = "https://deploy.example/mcp";
    const CB: &str = "http://127.0.0.1:4567/callback";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn params() -> AuthorizeParams {
        AuthorizeParams {
            response_type: Some("code".into()),
            client_id: Some("client-1".into()),
            redirect_uri: Some(CB.into()),
            state: Some("st".into()),
            code_challenge: Some(CHALLENGE.into()),
            code_challenge_method: Some("S256".into()),
            resource: Some(MCP.into()),
            scope: None,
        }
    }

    fn registered() -> Vec<String> {
        vec![CB.to_owned()]
    }

    #[test]
    fn a_good_request_is_valid() {
        let v = validate(&params(), Some(&registered()), MCP).unwrap();
        assert_eq!(v.redirect_uri, CB);
        assert_eq!(v.state.as_deref(), Some("st"));
        assert_eq!(v.resource, MCP);
    }

    #[test]
    fn unknown_clients_and_unregistered_redirects_get_a_page_not_a_redirect() {
        assert!(matches!(validate(&params(), None, MCP), Err(AuthorizeError::Page(_))));
        for evil in ["https://evil.example/cb", "http://127.0.0.1:4567/callback/", "http://127.0.0.1:4567/callbackx"] {
            let p = AuthorizeParams { redirect_uri: Some(evil.into()), ..params() };
            let e = validate(&p, Some(&registered()), MCP).unwrap_err();
            assert!(matches!(e, AuthorizeError::Page(_)), "{evil}");
            assert_eq!(e.location("https://deploy.example"), None);
        }
        let p = AuthorizeParams { client_id: None, ..params() };
        assert!(matches!(validate(&p, Some(&registered()), MCP), Err(AuthorizeError::Page(_))));
    }

    #[test]
    fn pkce_and_resource_errors_go_back_on_the_redirect_with_state_and_iss() {
        let cases = [
            (AuthorizeParams { code_challenge: None, ..params() }, "invalid_request"),
            (AuthorizeParams { code_challenge_method: Some("plain".into()), ..params() }, "invalid_request"),
            (AuthorizeParams { code_challenge_method: None, ..params() }, "invalid_request"),
            (AuthorizeParams { resource: Some("https://other.example/mcp".into()), ..params() }, "invalid_target"),
            (AuthorizeParams { resource: None, ..params() }, "invalid_target"),
            (AuthorizeParams { response_type: Some("token".into()), ..params() }, "unsupported_response_type"),
        ];
        for (p, code) in cases {
            let e = validate(&p, Some(&registered()), MCP).unwrap_err();
            let location = e.location("https://deploy.example").expect("a redirect");
            let url = Url::parse(&location).unwrap();
            let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
            assert!(location.starts_with(CB), "{location}");
            assert_eq!(q["error"], code, "{location}");
            assert_eq!(q["state"], "st");
            assert_eq!(q["iss"], "https://deploy.example");
        }
    }

    #[test]
    fn the_code_response_carries_code_state_and_iss() {
        let l = code_location("https://c.example/cb?keep=1", "abc", Some("s t"), "https://deploy.example");
        assert_eq!(l, "https://c.example/cb?keep=1&code=abc&state=s+t&iss=https%3A%2F%2Fdeploy.example");
    }
}
