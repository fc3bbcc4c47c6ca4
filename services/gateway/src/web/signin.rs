//! Sign-in and sign-up (e-mail and password), shared by the web pages and the OAuth flow, and
//! sign-out.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::Utc;
use domain::{Account, AccountCommand, Claim};
use events::{ClaimKind, Limits, UserId};
use serde::Deserialize;

use super::{html, session};
use crate::oauth::{SIGN_IN_ATTEMPTS, SIGN_IN_ATTEMPTS_PER_IP};
use crate::{AppState, accounts};

const MIN_PASSWORD: usize = 10;

/// Why signing in did not work: the status and what to tell the person.
pub type Refusal = (StatusCode, String);

fn unavailable(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "web: sign-in failed");
    (StatusCode::SERVICE_UNAVAILABLE, "Sign-in is temporarily unavailable; try again shortly.".into())
}

/// The fields of every sign-in form (the web pages' and the OAuth flow's).
#[derive(Debug, Deserialize)]
pub struct Credentials {
    pub csrf: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    /// `sign_up`, or anything else to sign in.
    pub action: Option<String>,
}

/// Signs in (`action` other than `sign_up`) or signs up, throttled per IP address and per
/// e-mail address. Returns the user and their normalised e-mail.
pub async fn authenticate(
    state: &AppState,
    peer: Option<SocketAddr>,
    form: &Credentials,
) -> Result<(UserId, String), Refusal> {
    let Ok(email) = accounts::normalize_email(form.email.as_deref().unwrap_or("")) else {
        return Err((StatusCode::BAD_REQUEST, "Enter a valid e-mail address.".into()));
    };
    let now = Instant::now();
    if let Some(peer) = peer
        && !state.oauth.throttle.allow_attempt(&format!("ip:{}", peer.ip()), SIGN_IN_ATTEMPTS_PER_IP, now)
    {
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts from your network. Wait a minute, then try again.".into(),
        ));
    }
    if !state.oauth.throttle.allow_attempt(&format!("email:{email}"), SIGN_IN_ATTEMPTS, now) {
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts for this e-mail address. Wait a minute, then try again.".into(),
        ));
    }
    let password = form.password.as_deref().unwrap_or_default();
    let user = match form.action.as_deref() {
        Some("sign_up") => sign_up(state, &email, password).await?,
        _ => sign_in(state, &email, password).await?,
    };
    Ok((user, email))
}

async fn account_of(state: &AppState, email: &str) -> Result<Option<(UserId, Account)>, Refusal> {
    let claim: Claim = state.commands.load(&ClaimKind::Email.claim_id(email)).await.map_err(unavailable)?;
    let Some(holder) = claim.holder else { return Ok(None) };
    let account: Account = state.commands.load(&holder.owner.to_string()).await.map_err(unavailable)?;
    Ok(Some((holder.owner, account)))
}

async fn sign_up(state: &AppState, email: &str, password: &str) -> Result<UserId, Refusal> {
    if password.chars().count() < MIN_PASSWORD {
        return Err((StatusCode::BAD_REQUEST, format!("Choose a password of at least {MIN_PASSWORD} characters.")));
    }
    // An existing account, even one opened without a password (by the admin CLI or GitHub
    // sign-in), is not taken over by signing up with its address: that needs proof of the mailbox.
    if account_of(state, email).await?.is_some() {
        return Err((StatusCode::CONFLICT, "An account with this e-mail exists: sign in instead.".into()));
    }
    let user = accounts::ensure_account(&state.commands, email, Limits::default()).await.map_err(unavailable)?;
    let cost = state.oauth.config.password_bcrypt_cost;
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
    let cmd = AccountCommand::SetPassword { hash, now: Utc::now() };
    state.commands.accounts.execute(&user.to_string(), cmd).await.map_err(unavailable)?;
    tracing::info!(user = %user, "web: account signed up");
    Ok(user)
}

async fn sign_in(state: &AppState, email: &str, password: &str) -> Result<UserId, Refusal> {
    let wrong = || (StatusCode::UNAUTHORIZED, "Wrong e-mail or password.".to_owned());
    let Some((user, account)) = account_of(state, email).await? else { return Err(wrong()) };
    let Some(stored) = account.password_hash else { return Err(wrong()) };
    let presented = password.to_owned();
    let ok =
        tokio::task::spawn_blocking(move || bcrypt::verify(presented, &stored).unwrap_or(false)).await.unwrap_or(false);
    if ok { Ok(user) } else { Err(wrong()) }
}

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    pub next: Option<String>,
}

fn sign_in_page(state: &AppState, next: &str, csrf: &str, notice: Option<&str>) -> String {
    let notice = notice.map(html::alert).unwrap_or_default();
    let github = super::github::link(state, next);
    html::layout(
        "Sign in to Deploy MCP",
        None,
        &format!(
            "{notice}<p>Sign in to manage your API keys and DNS zones. New here? Enter an e-mail address and a \
             password of at least {MIN_PASSWORD} characters, then choose <em>Create an account</em>.</p>{}",
            html::sign_in_form("/signin", &html::hidden("next", Some(next)), csrf, github.as_deref())
        ),
    )
}

/// `GET /signin`
pub async fn get_signin(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    let next = session::safe_next(q.next.as_deref());
    match session::current(&state, &headers).await {
        Ok(Some(_)) => return Redirect::to(next).into_response(),
        Ok(None) => {}
        Err(res) => return res,
    }
    let (csrf, set) = session::csrf(&state, &headers);
    let mut res = html::respond(StatusCode::OK, sign_in_page(&state, next, &csrf, None));
    if let Some(c) = set {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(flatten)]
    pub credentials: Credentials,
    pub next: Option<String>,
}

/// `POST /signin`: sign in or up, start a session, go to `next`.
pub async fn post_signin(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let form_csrf = form.credentials.csrf.as_deref();
    if !session::csrf_ok(&headers, form_csrf) {
        return session::csrf_refused();
    }
    let next = session::safe_next(form.next.as_deref());
    let peer = peer.map(|Extension(ConnectInfo(p))| p);
    let (user, email) = match authenticate(&state, peer, &form.credentials).await {
        Ok(v) => v,
        Err((status, message)) => {
            let page = sign_in_page(&state, next, form_csrf.unwrap_or_default(), Some(&message));
            return html::respond(status, page);
        }
    };
    signed_in(&state, user, &email, next).await
}

/// Starts a session and redirects to `next` (a local path).
pub async fn signed_in(state: &AppState, user: UserId, email: &str, next: &str) -> Response {
    let cookie = match session::start(state, user, email).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    let mut res = Redirect::to(session::safe_next(Some(next))).into_response();
    res.headers_mut().append(header::SET_COOKIE, cookie);
    res
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

/// `POST /signout`
pub async fn post_signout(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    if !session::csrf_ok(&headers, form.csrf.as_deref()) {
        return session::csrf_refused();
    }
    let cookie = match session::end(&state, &headers).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    let mut res = Redirect::to("/signin").into_response();
    res.headers_mut().append(header::SET_COOKIE, cookie);
    res
}
