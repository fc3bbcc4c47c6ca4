//! RFC 8414 authorization server metadata, and the RFC 9728 pointer to it.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;

/// The metadata document of the authorization server whose issuer is `issuer` (the gateway's
/// public URL, no trailing slash). `S256` is the only PKCE method: `plain` is refused.
pub fn authorization_server(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "registration_endpoint": format!("{issuer}/oauth/register"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
    })
}

/// `GET /.well-known/oauth-authorization-server`
pub async fn get_authorization_server(State(state): State<AppState>) -> Json<Value> {
    Json(authorization_server(&state.public_url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_the_endpoints_and_only_s256() {
        let m = authorization_server("https://deploy.example");
        assert_eq!(m["issuer"], "https://deploy.example");
        assert_eq!(m["authorization_endpoint"], "https://deploy.example/oauth/authorize");
        assert_eq!(m["token_endpoint"], "https://deploy.example/oauth/token");
        assert_eq!(m["registration_endpoint"], "https://deploy.example/oauth/register");
        assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(m["response_types_supported"], json!(["code"]));
        assert_eq!(m["grant_types_supported"], json!(["authorization_code", "refresh_token"]));
        assert_eq!(m["token_endpoint_auth_methods_supported"], json!(["none"]));
        assert_eq!(m["client_id_metadata_document_supported"], true);
    }
}
