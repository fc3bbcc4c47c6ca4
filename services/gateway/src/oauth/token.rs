//! `POST /oauth/token`: the authorization_code and refresh_token grants. The access token is a
//! real API key (`dk_live_…`); refresh tokens rotate. Errors are RFC 6749 §5.2 JSON.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;

use super::grants::{RefreshGrant, TokenError};
use crate::AppState;
use crate::accounts;

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub client_id: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub resource: Option<String>,
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let status = match self {
            TokenError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            TokenError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let body = Json(json!({"error": self.code(), "error_description": self.to_string()}));
        (status, [(header::CACHE_CONTROL, "no-store")], body).into_response()
    }
}

fn server_error(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "oauth: cannot issue a token");
    let body = Json(json!({"error": "temporarily_unavailable", "error_description": "retry in a few seconds"}));
    (StatusCode::SERVICE_UNAVAILABLE, [(header::CACHE_CONTROL, "no-store")], body).into_response()
}

/// `POST /oauth/token`
pub async fn post_token(State(state): State<AppState>, Form(form): Form<TokenForm>) -> Response {
    let client_id = match form.client_id.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => c.to_owned(),
        None => return TokenError::InvalidRequest("client_id is required (public clients)".into()).into_response(),
    };
    match state.oauth.client(&client_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return TokenError::InvalidClient("unknown client_id; register again".into()).into_response(),
        Err(e) => return server_error(e),
    }
    if let Some(r) = form.resource.as_deref()
        && r.trim_end_matches('/') != state.mcp_url()
    {
        return TokenError::InvalidRequest(format!("resource must be `{}`", state.mcp_url())).into_response();
    }
    match form.grant_type.as_deref() {
        Some("authorization_code") => authorization_code(&state, &client_id, &form).await,
        Some("refresh_token") => refresh(&state, &client_id, &form).await,
        None => TokenError::InvalidRequest("grant_type is required".into()).into_response(),
        Some(_) => TokenError::UnsupportedGrantType.into_response(),
    }
}

async fn authorization_code(state: &AppState, client_id: &str, form: &TokenForm) -> Response {
    let Some(code) = form.code.as_deref() else {
        return TokenError::InvalidRequest("code is required".into()).into_response();
    };
    let grant = match state
        .oauth
        .grants
        .redeem_code(code, client_id, form.redirect_uri.as_deref(), form.code_verifier.as_deref())
        .await
    {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let refresh = RefreshGrant { client_id: grant.client_id, resource: grant.resource, user_id: grant.user_id };
    issue(state, refresh, None).await
}

async fn refresh(state: &AppState, client_id: &str, form: &TokenForm) -> Response {
    let Some(token) = form.refresh_token.as_deref() else {
        return TokenError::InvalidRequest("refresh_token is required".into()).into_response();
    };
    match state.oauth.grants.rotate(token, client_id).await {
        Ok(rotated) => {
            revoke(state, &rotated.superseded).await;
            issue(state, rotated.grant, Some((rotated.family, rotated.refresh_token))).await
        }
        Err(refused) => {
            if !refused.revoke.is_empty() {
                tracing::warn!(client_id, "oauth: a rotated refresh token was replayed; revoking its grant");
            }
            revoke(state, &refused.revoke).await;
            refused.error.into_response()
        }
    }
}

async fn revoke(state: &AppState, prefixes: &[String]) {
    for prefix in prefixes {
        if let Err(e) = accounts::revoke_api_key(&state.commands, prefix).await {
            tracing::warn!(key = %prefix, error = %e, "oauth: cannot revoke a superseded key");
        }
    }
}

/// Issues an API key as the access token, and the family's next refresh token.
async fn issue(state: &AppState, grant: RefreshGrant, rotated: Option<(String, super::secret::Secret)>) -> Response {
    let label = format!("OAuth: {}", grant.client_id);
    let cost = state.oauth.config.bcrypt_cost;
    let resource = Some(grant.resource.clone());
    let issued = match accounts::create_bound_api_key(&state.commands, grant.user_id, &label, cost, resource).await {
        Ok(k) => k,
        Err(accounts::AccountError::Rejected(r)) => return TokenError::InvalidGrant(r.to_string()).into_response(),
        Err(e) => return server_error(e),
    };
    let prefix = issued.key.prefix.clone();
    crate::projection::key_visible(state, &prefix).await;
    let refresh_token = match rotated {
        Some((family, token)) => match state.oauth.grants.add_key(&family, &prefix).await {
            Ok(()) => token,
            Err(e) => return e.into_response(),
        },
        None => match state.oauth.grants.start_family(&grant, &prefix).await {
            Ok(token) => token,
            Err(e) => return e.into_response(),
        },
    };
    tracing::info!(user = %grant.user_id, key = %prefix, client_id = %grant.client_id, "oauth: access token issued");
    let body = json!({
        "access_token": issued.key.plaintext,
        "token_type": "Bearer",
        "refresh_token": refresh_token.expose(),
        "scope": "",
    });
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}
