//! The browser side: `GET /oauth/authorize` shows sign-in (or, for a signed-in browser, the
//! consent screen), `POST /oauth/authorize` signs in or up, `POST /oauth/consent` answers the
//! consent screen and redirects with the code.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use events::UserId;
use serde::Deserialize;

use super::authorize::{self, AuthorizeError, AuthorizeParams, ValidRequest};
use super::grants::CodeGrant;
use super::pages;
use crate::AppState;
use crate::web::{html, session, signin};

/// Validates an authorization request against the registered client; returns it with the
/// client's name and URI.
async fn check(
    state: &AppState,
    params: &AuthorizeParams,
) -> Result<(ValidRequest, String, Option<String>), AuthorizeError> {
    let client = match params.client_id.as_deref() {
        Some(id) => super::client_document::resolve(state, id).await?,
        None => None,
    };
    let registered = client.as_ref().map(|c| c.redirect_uris.as_slice());
    let valid = authorize::validate(params, registered, &state.mcp_url())?;
    let client = client.expect("validated");
    let name = client.client_name.clone().unwrap_or_else(|| valid.client_id.clone());
    Ok((valid, name, client.client_uri))
}

fn refuse(state: &AppState, e: AuthorizeError) -> Response {
    match e.location(&state.public_url) {
        Some(location) => Redirect::to(&location).into_response(),
        None => match e {
            AuthorizeError::Page(message) => pages::error_page(StatusCode::BAD_REQUEST, &message),
            AuthorizeError::Redirect { .. } => unreachable!("redirect errors have a location"),
        },
    }
}

fn with_cookies(mut res: Response, cookies: impl IntoIterator<Item = HeaderValue>) -> Response {
    for c in cookies {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

/// The consent screen for `user`, with a fresh ticket.
async fn consent(
    state: &AppState,
    user: UserId,
    email: &str,
    request: &ValidRequest,
    client: (&str, Option<&str>),
    csrf: &str,
) -> Response {
    match state.oauth.start_consent(user, request).await {
        Ok(ticket) => html::respond_with_form_target(
            StatusCode::OK,
            pages::consent(client.0, client.1, email, &request.resource, ticket.expose(), csrf),
            html::csp_source(&request.redirect_uri).as_deref(),
        ),
        Err(e) => unavailable(e),
    }
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "oauth: the authorization server's store failed");
    pages::error_page(StatusCode::SERVICE_UNAVAILABLE, "Sign-in is temporarily unavailable; try again shortly.")
}

/// `GET /oauth/authorize`
pub async fn get_authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<AuthorizeParams>,
) -> Response {
    let (valid, name, uri) = match check(&state, &params).await {
        Ok(v) => v,
        Err(e) => return refuse(&state, e),
    };
    let (csrf, set) = session::csrf(&state, &headers);
    let signed_in = match session::current(&state, &headers).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let res = match signed_in.and_then(|s| Some((s.user_id.parse::<UserId>().ok()?, s.email))) {
        Some((user, email)) => consent(&state, user, &email, &valid, (&name, uri.as_deref()), &csrf).await,
        None => html::respond(StatusCode::OK, pages::sign_in(&name, &params, &csrf, None)),
    };
    with_cookies(res, set)
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(flatten)]
    pub params: AuthorizeParams,
    #[serde(flatten)]
    pub credentials: signin::Credentials,
}

/// `POST /oauth/authorize`: sign in (or sign up), then show the consent screen.
pub async fn post_authorize(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    if !session::csrf_ok(&headers, form.credentials.csrf.as_deref()) {
        return session::csrf_refused();
    }
    let (valid, name, uri) = match check(&state, &form.params).await {
        Ok(v) => v,
        Err(e) => return refuse(&state, e),
    };
    let csrf = form.credentials.csrf.clone().unwrap_or_default();
    let peer = peer.map(|Extension(ConnectInfo(p))| p);
    let signed = signin::authenticate(&state, peer, &form.credentials).await;
    let (user, email) = match signed {
        Ok(v) => v,
        Err((status, notice)) => {
            return html::respond(status, pages::sign_in(&name, &form.params, &csrf, Some(&notice)));
        }
    };
    // Signed in for the web pages too, and for the next authorization of this browser.
    let cookie = match session::start(&state, user, &email).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    with_cookies(consent(&state, user, &email, &valid, (&name, uri.as_deref()), &csrf).await, [cookie])
}

#[derive(Debug, Deserialize)]
pub struct ConsentForm {
    pub csrf: Option<String>,
    pub ticket: Option<String>,
    pub decision: Option<String>,
}

/// `POST /oauth/consent`: allow → redirect with `code`, `state`, `iss`; deny → `access_denied`.
pub async fn post_consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ConsentForm>,
) -> Response {
    if !session::csrf_ok(&headers, form.csrf.as_deref()) {
        return session::csrf_refused();
    }
    let taken = match form.ticket.as_deref() {
        Some(t) => state.oauth.take_consent(t).await,
        None => Ok(None),
    };
    let (user, request) = match taken {
        Ok(Some(v)) => v,
        Ok(None) => {
            return pages::error_page(
                StatusCode::BAD_REQUEST,
                "This consent screen expired or was already answered. Start again from your MCP client.",
            );
        }
        Err(e) => return unavailable(e),
    };
    if form.decision.as_deref() != Some("allow") {
        return refuse(
            &state,
            AuthorizeError::Redirect {
                redirect_uri: request.redirect_uri,
                error: "access_denied",
                description: "the user denied access".into(),
                state: request.state,
            },
        );
    }
    let grant = CodeGrant {
        client_id: request.client_id,
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge,
        resource: request.resource,
        user_id: user,
    };
    let code = match state.oauth.grants.issue_code(&grant).await {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let location =
        authorize::code_location(&request.redirect_uri, code.expose(), request.state.as_deref(), &state.public_url);
    Redirect::to(&location).into_response()
}
