//! `/settings`: create an API key (shown once), list keys by prefix with their last use,
//! revoke one. Also says where the account's repositories live on the platform's git server.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::Page;
use super::html::{self, escape, hidden};
use crate::AppState;
use crate::accounts::{self, AccountError};

const MAX_LABEL: usize = 100;

#[derive(Debug, Default, Deserialize)]
pub struct SettingsQuery {
    pub revoked: Option<String>,
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "web: settings failed");
    html::error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The platform cannot show your keys right now; retry in a few seconds.",
    )
}

/// The keys table and the create form.
async fn body(state: &AppState, page: &Page, top: &str) -> Result<String, Response> {
    let keys = state.store.api_keys_of(&page.session.user_id).await.map_err(unavailable)?;
    let ids: Vec<String> = keys.iter().map(|k| k.key_id.clone()).collect();
    let used: HashMap<String, _> =
        state.store.api_keys_last_used(&ids).await.map_err(unavailable)?.into_iter().collect();
    let csrf = hidden("csrf", Some(&page.csrf));
    let rows: String = keys
        .iter()
        .map(|k| {
            let last = used.get(&k.key_id).map(|t| html::when(*t)).unwrap_or_else(|| "never".into());
            let status = match k.revoked_at {
                Some(t) => format!("<td>revoked {}</td><td></td>", html::when(t)),
                None => format!(
                    "<td>active</td><td><form method=\"post\" action=\"/settings/keys/revoke\">{csrf}{prefix}\
                     <button aria-label=\"Revoke {p}\">Revoke</button></form></td>",
                    prefix = hidden("prefix", Some(&k.prefix)),
                    p = escape(&k.prefix),
                ),
            };
            format!(
                "<tr><td><code>{}…</code></td><td>{}</td><td>{}</td><td>{last}</td>{status}</tr>",
                escape(&k.prefix),
                escape(&k.label),
                html::when(k.created_at),
            )
        })
        .collect();
    let table = if keys.is_empty() {
        "<p>You have no API keys yet.</p>".to_owned()
    } else {
        format!(
            "<table><caption class=\"muted\">Keys are listed by prefix; the rest is never shown again.</caption>\
             <thead><tr><th scope=\"col\">Prefix</th><th scope=\"col\">Label</th><th scope=\"col\">Created</th>\
             <th scope=\"col\">Last used</th><th scope=\"col\">Status</th><th scope=\"col\"><span class=\"muted\">Action</span></th></tr></thead>\
             <tbody>{rows}</tbody></table>"
        )
    };
    Ok(format!(
        "{top}<h2>Create an API key</h2>\
         <form method=\"post\" action=\"/settings/keys\">{csrf}<p><label for=\"label\">Label</label><br>\
         <input id=\"label\" name=\"label\" maxlength=\"{MAX_LABEL}\" placeholder=\"laptop, CI, …\" required> \
         <button>Create key</button></p></form>\
         <h2>Your API keys</h2>{table}\
         <h2>Git</h2><p>Your repositories live at <code>{git}/git/{user}/&lt;name&gt;.git</code>. Push with the \
         token the MCP tool <code>get_git_token</code> gives you.</p>",
        git = escape(&state.public_url),
        user = escape(&page.session.user_id),
    ))
}

/// `GET /settings`
pub async fn get_settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SettingsQuery>,
) -> Response {
    let page = match Page::require(&state, &headers, "/settings").await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let top = q
        .revoked
        .as_deref()
        .map(|p| html::notice(&format!("Key {p}… is revoked: it no longer works.")))
        .unwrap_or_default();
    match body(&state, &page, &top).await {
        Ok(b) => page.render(StatusCode::OK, "API keys", &b),
        Err(res) => res,
    }
}

/// The page again, with what went wrong on top.
async fn with_alert(state: &AppState, page: &Page, status: StatusCode, message: &str) -> Response {
    match body(state, page, &html::alert(message)).await {
        Ok(b) => page.render(status, "API keys", &b),
        Err(res) => res,
    }
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    pub csrf: Option<String>,
    pub label: Option<String>,
}

/// `POST /settings/keys`: the new key is in this response only (no redirect: it must never be
/// in a URL or history).
pub async fn create_key(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CreateForm>) -> Response {
    let page = match Page::submitted(&state, &headers, "/settings", form.csrf.as_deref()).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let user = page.user;
    let label = form.label.as_deref().unwrap_or("").trim();
    if label.is_empty() || label.chars().count() > MAX_LABEL || label.chars().any(char::is_control) {
        let message = format!("Give the key a label of 1 to {MAX_LABEL} characters.");
        return with_alert(&state, &page, StatusCode::BAD_REQUEST, &message).await;
    }
    let issued = match accounts::create_api_key(&state.commands, user, label, state.oauth.config.bcrypt_cost).await {
        Ok(k) => k,
        Err(AccountError::Rejected(r)) => return with_alert(&state, &page, StatusCode::CONFLICT, &r.to_string()).await,
        Err(e) => return unavailable(e),
    };
    tracing::info!(user = %user, key = %issued.key.prefix, "web: API key created");
    let shown = format!(
        "<p class=\"notice\" role=\"status\">Your new key <strong>{label}</strong> — copy it now, it is shown only once:</p>\
         <output class=\"secret\" id=\"new-key\">{key}</output>\
         <p>Use it as <code>Authorization: Bearer …</code>, or: <code>claude mcp add --transport http deploy {mcp} \
         --header \"Authorization: Bearer {key}\"</code></p>",
        label = escape(label),
        key = escape(&issued.key.plaintext),
        mcp = escape(&state.mcp_url()),
    );
    // The projector may not have listed the key yet: wait briefly, so that the table shows it.
    crate::projection::key_visible(&state, &issued.key.prefix).await;
    match body(&state, &page, &shown).await {
        Ok(b) => page.render(StatusCode::CREATED, "API keys", &b),
        Err(res) => res,
    }
}

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    pub csrf: Option<String>,
    pub prefix: Option<String>,
}

/// `POST /settings/keys/revoke`: revokes one of the user's keys (another user's is not found).
pub async fn revoke_key(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<RevokeForm>) -> Response {
    let page = match Page::submitted(&state, &headers, "/settings", form.csrf.as_deref()).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let user = page.user;
    let prefix = form.prefix.as_deref().unwrap_or("").trim();
    match accounts::revoke_own_api_key(&state.commands, user, prefix).await {
        Ok(key_id) => {
            tracing::info!(user = %user, key = %prefix, "web: API key revoked");
            // Let the projector record it, so that the page after the redirect shows it.
            let key_id = key_id.to_string();
            let shown = || async { !state.store.api_key_active(&key_id).await.unwrap_or(true) };
            if !crate::projection::wait_until(shown).await {
                tracing::warn!(key = %prefix, "web: the revocation is not in the read model yet");
            }
            let q: String = url::form_urlencoded::byte_serialize(prefix.as_bytes()).collect();
            Redirect::to(&format!("/settings?revoked={q}")).into_response()
        }
        Err(e @ (AccountError::KeyNotFound(_) | AccountError::Rejected(_))) => {
            with_alert(&state, &page, StatusCode::NOT_FOUND, &e.to_string()).await
        }
        Err(e) => unavailable(e),
    }
}
