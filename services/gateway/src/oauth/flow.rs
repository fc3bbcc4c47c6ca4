//! The browser side: `GET /oauth/authorize` shows sign-in, `POST /oauth/authorize` signs in or
//! up, `POST /oauth/consent` answers the consent screen and redirects with the code.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::Utc;
use domain::{Account, AccountCommand, Claim};
use events::{ClaimKind, Limits};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use super::authorize::{self, AuthorizeError, AuthorizeParams, ValidRequest};
use super::grants::CodeGrant;
use super::pages::{self, CSRF_COOKIE};
use super::secret::Secret;
use crate::AppState;
use crate::accounts;

const MIN_PASSWORD: usize = 10;

fn csrf_cookie(state: &AppState, value: &str) -> HeaderValue {
    let secure = if state.public_url.starts_with("https://") { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{CSRF_COOKIE}={value}; Path=/oauth; HttpOnly; SameSite=Lax{secure}"))
        .expect("ascii cookie")
}

/// The CSRF token of the browser (from its cookie), or a new one to set.
fn csrf_of(headers: &HeaderMap) -> (String, bool) {
    let existing = pages::cookie(headers.get(header::COOKIE).and_then(|v| v.to_str().ok()), CSRF_COOKIE);
    match existing {
        Some(v) if v.len() == 43 => (v.to_owned(), false),
        _ => (Secret::generate().expose().to_owned(), true),
    }
}

/// Whether the form's `csrf` field matches the cookie, in constant time.
fn csrf_ok(headers: &HeaderMap, field: Option<&str>) -> bool {
    let cookie = pages::cookie(headers.get(header::COOKIE).and_then(|v| v.to_str().ok()), CSRF_COOKIE);
    match (cookie, field) {
        (Some(c), Some(f)) if !c.is_empty() => bool::from(c.as_bytes().ct_eq(f.as_bytes())),
        _ => false,
    }
}

/// Validates an authorization request against the registered client.
async fn check(
    state: &AppState,
    params: &AuthorizeParams,
) -> Result<(ValidRequest, String, Option<String>), AuthorizeError> {
    let client = match params.client_id.as_deref() {
        Some(id) => super::client_document::resolve(state, id).await?,
        None => None,
    };
    let registered = client.as_ref().map(|c| c.redirect_uris.as_slice());
    match authorize::validate(params, registered, &state.mcp_url()) {
        Ok(valid) => {
            let client = client.expect("validated");
            let name = client.client_name.clone().unwrap_or_else(|| valid.client_id.clone());
            Ok((valid, name, client.client_uri))
        }
        Err(e) => Err(e),
    }
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

fn html(state: &AppState, status: StatusCode, body: String, set_csrf: Option<&str>) -> Response {
    let mut res = pages::page(status, "", "");
    *res.body_mut() = axum::body::Body::from(body);
    if let Some(v) = set_csrf {
        res.headers_mut().insert(header::SET_COOKIE, csrf_cookie(state, v));
    }
    res
}

/// `GET /oauth/authorize`
pub async fn get_authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<AuthorizeParams>,
) -> Response {
    let (_, name, _) = match check(&state, &params).await {
        Ok(v) => v,
        Err(e) => return refuse(&state, e),
    };
    let (csrf, new) = csrf_of(&headers);
    let body = pages::sign_in(&name, &params, &csrf, None);
    html(&state, StatusCode::OK, body, new.then_some(csrf.as_str()))
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(flatten)]
    pub params: AuthorizeParams,
    pub csrf: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    pub action: Option<String>,
}

/// `POST /oauth/authorize`: sign in (or sign up), then show the consent screen.
pub async fn post_authorize(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    if !csrf_ok(&headers, form.csrf.as_deref()) {
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "The form expired or did not come from this site (missing CSRF token). Go back and try again.",
        );
    }
    let (valid, name, uri) = match check(&state, &form.params).await {
        Ok(v) => v,
        Err(e) => return refuse(&state, e),
    };
    let csrf = form.csrf.clone().unwrap_or_default();
    let again = |status: StatusCode, notice: &str| {
        html(&state, status, pages::sign_in(&name, &form.params, &csrf, Some(notice)), None)
    };
    let Ok(email) = accounts::normalize_email(form.email.as_deref().unwrap_or("")) else {
        return again(StatusCode::BAD_REQUEST, "Enter a valid e-mail address.");
    };
    let password = form.password.clone().unwrap_or_default();
    let now = Instant::now();
    if let Some(Extension(ConnectInfo(peer))) = peer
        && !state.oauth.allow_attempt(&format!("ip:{}", peer.ip()), super::SIGN_IN_ATTEMPTS_PER_IP, now)
    {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts from your network. Wait a minute, then try again.",
        );
    }
    if !state.oauth.allow_attempt(&format!("email:{email}"), super::SIGN_IN_ATTEMPTS, now) {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts for this e-mail address. Wait a minute, then try again.",
        );
    }
    let user = match form.action.as_deref() {
        Some("sign_up") => sign_up(&state, &email, &password).await,
        _ => sign_in(&state, &email, &password).await,
    };
    let user = match user {
        Ok(u) => u,
        Err((status, message)) => return again(status, &message),
    };
    let ticket = state.oauth.start_consent(user, email.clone(), valid.clone(), Instant::now());
    let body = pages::consent(&name, uri.as_deref(), &email, &valid.resource, ticket.expose(), &csrf);
    html(&state, StatusCode::OK, body, None)
}

type Refusal = (StatusCode, String);

fn unavailable(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "oauth: sign-in failed");
    (StatusCode::SERVICE_UNAVAILABLE, "Sign-in is temporarily unavailable; try again shortly.".into())
}

async fn account_of(state: &AppState, email: &str) -> Result<Option<(events::UserId, Account)>, Refusal> {
    let claim: Claim = state.commands.load(&ClaimKind::Email.claim_id(email)).await.map_err(unavailable)?;
    let Some(holder) = claim.holder else { return Ok(None) };
    let account: Account = state.commands.load(&holder.owner.to_string()).await.map_err(unavailable)?;
    Ok(Some((holder.owner, account)))
}

async fn hash(password: String, cost: u32) -> Result<String, Refusal> {
    tokio::task::spawn_blocking(move || bcrypt::hash(password, cost)).await.map_err(unavailable)?.map_err(unavailable)
}

async fn sign_up(state: &AppState, email: &str, password: &str) -> Result<events::UserId, Refusal> {
    if password.chars().count() < MIN_PASSWORD {
        return Err((StatusCode::BAD_REQUEST, format!("Choose a password of at least {MIN_PASSWORD} characters.")));
    }
    // An existing account, even one opened without a password (by the admin CLI), is not
    // taken over by signing up with its address: that would need proof of the mailbox.
    if account_of(state, email).await?.is_some() {
        return Err((StatusCode::CONFLICT, "An account with this e-mail exists: sign in instead.".into()));
    }
    let user = accounts::ensure_account(&state.commands, email, Limits::default()).await.map_err(unavailable)?;
    let hash = hash(password.to_owned(), state.oauth.config.password_bcrypt_cost).await?;
    let cmd = AccountCommand::SetPassword { hash, now: Utc::now() };
    state.commands.accounts.execute(&user.to_string(), cmd).await.map_err(unavailable)?;
    tracing::info!(user = %user, "oauth: account signed up");
    Ok(user)
}

async fn sign_in(state: &AppState, email: &str, password: &str) -> Result<events::UserId, Refusal> {
    let wrong = || (StatusCode::UNAUTHORIZED, "Wrong e-mail or password.".to_owned());
    let Some((user, account)) = account_of(state, email).await? else { return Err(wrong()) };
    let Some(stored) = account.password_hash else { return Err(wrong()) };
    let presented = password.to_owned();
    let ok =
        tokio::task::spawn_blocking(move || bcrypt::verify(presented, &stored).unwrap_or(false)).await.unwrap_or(false);
    if ok { Ok(user) } else { Err(wrong()) }
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
    if !csrf_ok(&headers, form.csrf.as_deref()) {
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "The form expired or did not come from this site (missing CSRF token). Go back and try again.",
        );
    }
    let Some((user, _email, request)) =
        form.ticket.as_deref().and_then(|t| state.oauth.take_consent(t, Instant::now()))
    else {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "This consent screen expired. Start again from your MCP client.",
        );
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
    let code = state.oauth.grants.issue_code(grant, Instant::now());
    let location =
        authorize::code_location(&request.redirect_uri, code.expose(), request.state.as_deref(), &state.public_url);
    Redirect::to(&location).into_response()
}
