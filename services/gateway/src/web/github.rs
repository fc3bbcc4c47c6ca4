//! Sign-in with GitHub. `/signin/github` sends the browser to GitHub with a random `state`
//! (also in a short-lived HttpOnly cookie, with where to go next); the callback checks it in
//! constant time, exchanges the code, and signs in the account linked to that GitHub user id
//! (a `github_user` claim). A GitHub user seen for the first time is linked to the account of
//! their verified primary e-mail, opened if needed: GitHub vouches for that mailbox.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use domain::{Account, Claim, ClaimCommand, Rejection};
use events::{ClaimKind, Limits, UserId};
use github::login::{GithubUser, LoginError};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use super::{html, session, signin};
use crate::oauth::secret::Secret;
use crate::{AppState, accounts};

const STATE_COOKIE: &str = "dmcp_github";
const COOKIE_PATH: &str = "/signin/github";

/// The "Sign in with GitHub" link, when GitHub sign-in is configured.
pub fn link(state: &AppState, next: &str) -> Option<String> {
    state.github_login.as_ref()?;
    let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    Some(format!("/signin/github?next={next}"))
}

fn callback_url(state: &AppState) -> String {
    format!("{}/signin/github/callback", state.public_url)
}

fn not_configured() -> Response {
    html::error_page(
        StatusCode::NOT_FOUND,
        "Sign-in with GitHub is not configured on this platform: sign in with your e-mail address instead.",
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct StartQuery {
    pub next: Option<String>,
}

/// `GET /signin/github`
pub async fn start(State(state): State<AppState>, Query(q): Query<StartQuery>) -> Response {
    let Some(login) = &state.github_login else { return not_configured() };
    let nonce = Secret::generate();
    let next: String = url::form_urlencoded::byte_serialize(session::safe_next(q.next.as_deref()).as_bytes()).collect();
    let cookie =
        session::cookie_at(&state, COOKIE_PATH, STATE_COOKIE, &format!("{}.{next}", nonce.expose()), Some(600));
    let mut res = Redirect::to(&login.authorize_url(&callback_url(&state), nonce.expose())).into_response();
    res.headers_mut().append(header::SET_COOKIE, cookie);
    res
}

#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// `GET /signin/github/callback`
pub async fn callback(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<CallbackQuery>) -> Response {
    let Some(login) = &state.github_login else { return not_configured() };
    let refused = |m: &str| html::error_page(StatusCode::BAD_REQUEST, m);
    if let Some(e) = &q.error {
        let why = q.error_description.as_deref().unwrap_or(e);
        return refused(&format!("GitHub did not sign you in ({why}). Go back and try again."));
    }
    let cookie = html::cookie(headers.get(header::COOKIE).and_then(|v| v.to_str().ok()), STATE_COOKIE);
    let Some((nonce, next)) = cookie.and_then(|c| c.split_once('.')) else {
        return refused(
            "This sign-in link expired or was opened in another browser: start again from the sign-in page.",
        );
    };
    let presented = q.state.as_deref().unwrap_or("");
    if !bool::from(nonce.as_bytes().ct_eq(presented.as_bytes())) {
        return refused("This sign-in did not start here (state mismatch): start again from the sign-in page.");
    }
    let Some(code) = q.code.as_deref() else { return refused("GitHub sent no code: start again.") };
    let next: String = url::form_urlencoded::parse(format!("n={next}").as_bytes())
        .find(|(k, _)| k == "n")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let user = match login.exchange(code, &callback_url(&state)).await {
        Ok(token) => login.user(&token).await,
        Err(e) => Err(e),
    };
    let user = match user {
        Ok(u) => u,
        Err(e @ LoginError::Unavailable(_)) => {
            tracing::warn!(error = %e, "web: GitHub sign-in failed");
            return html::error_page(StatusCode::BAD_GATEWAY, &e.to_string());
        }
        Err(e) => return refused(&e.to_string()),
    };
    let (user_id, email) = match account_of(&state, &user).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    tracing::info!(user = %user_id, github_user = user.id, "web: signed in with GitHub");
    let mut res = signin::signed_in(&state, user_id, &email, &next).await;
    res.headers_mut().append(header::SET_COOKIE, session::cookie_at(&state, COOKIE_PATH, STATE_COOKIE, "", Some(0)));
    res
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "web: GitHub sign-in cannot reach the event store");
    html::error_page(StatusCode::SERVICE_UNAVAILABLE, "Sign-in is temporarily unavailable; try again shortly.")
}

/// The account this GitHub user signs in to, linking one on first sign-in.
async fn account_of(state: &AppState, user: &GithubUser) -> Result<(UserId, String), Response> {
    let claim_id = ClaimKind::GithubUser.claim_id(&user.id.to_string());
    let claim: Claim = state.commands.load(&claim_id).await.map_err(unavailable)?;
    let owner = match claim.holder {
        Some(h) => h.owner,
        None => {
            let Some(email) = &user.verified_email else {
                return Err(html::error_page(StatusCode::BAD_REQUEST, &LoginError::NoVerifiedEmail.to_string()));
            };
            let owner =
                accounts::ensure_account(&state.commands, email, Limits::default()).await.map_err(unavailable)?;
            let cmd = ClaimCommand::Claim {
                kind: ClaimKind::GithubUser,
                name: user.id.to_string(),
                owner,
                target: owner.to_string(),
                now: Utc::now(),
            };
            match state.commands.claims.execute(&claim_id, cmd).await {
                Ok(()) => owner,
                // Two first sign-ins at once: whoever linked first wins, for both.
                Err(
                    cqrs_es::AggregateError::AggregateConflict
                    | cqrs_es::AggregateError::UserError(Rejection::Taken { .. }),
                ) => {
                    let claim: Claim = state.commands.load(&claim_id).await.map_err(unavailable)?;
                    claim.holder.map(|h| h.owner).ok_or_else(|| unavailable("the GitHub claim vanished"))?
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
    };
    let account: Account = state.commands.load(&owner.to_string()).await.map_err(unavailable)?;
    let email = account.opened.map(|o| o.email).ok_or_else(|| unavailable("a linked account is not open"))?;
    Ok((owner, email))
}
