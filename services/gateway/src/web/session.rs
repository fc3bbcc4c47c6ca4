//! Browser sessions and CSRF protection.
//!
//! The session cookie holds a random secret; Postgres keeps only its SHA-256 with the user and
//! an expiry, so signing out (or a leaked database) ends it. Every form carries a CSRF token
//! that must equal the `dmcp_csrf` cookie (double submit, compared in constant time); both
//! cookies are HttpOnly and SameSite=Lax, and Secure when the platform is served over https.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::Utc;
use events::UserId;
use store::credentials::Session;
use subtle::ConstantTimeEq as _;

use super::html;
use crate::AppState;
use crate::oauth::secret::{self, Secret};

pub const CSRF_COOKIE: &str = "dmcp_csrf";
pub const SESSION_COOKIE: &str = "dmcp_session";
/// How long a sign-in lasts.
pub const SESSION_TTL: chrono::Duration = chrono::Duration::days(7);

fn cookie_of<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    html::cookie(headers.get(header::COOKIE).and_then(|v| v.to_str().ok()), name)
}

fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    cookie_at(state, "/", name, value, max_age)
}

/// An HttpOnly, SameSite=Lax cookie for `path` (Secure over https). `value` must be cookie-safe
/// (base64url, or percent-encoded).
pub fn cookie_at(state: &AppState, path: &str, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let secure = if state.public_url.starts_with("https://") { "; Secure" } else { "" };
    let age = max_age.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
    HeaderValue::from_str(&format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax{secure}{age}"))
        .expect("cookie values are cookie-safe")
}

/// The browser's CSRF token, and the `Set-Cookie` to send when it had none.
pub fn csrf(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie_of(headers, CSRF_COOKIE) {
        Some(v) if v.len() == 43 => (v.to_owned(), None),
        _ => {
            let token = Secret::generate().expose().to_owned();
            let cookie = set_cookie(state, CSRF_COOKIE, &token, None);
            (token, Some(cookie))
        }
    }
}

/// Whether the form's `csrf` field matches the cookie, in constant time.
pub fn csrf_ok(headers: &HeaderMap, field: Option<&str>) -> bool {
    match (cookie_of(headers, CSRF_COOKIE), field) {
        (Some(c), Some(f)) if !c.is_empty() => bool::from(c.as_bytes().ct_eq(f.as_bytes())),
        _ => false,
    }
}

/// The page shown for a form without a valid CSRF token.
pub fn csrf_refused() -> Response {
    html::error_page(
        StatusCode::FORBIDDEN,
        "The form expired or did not come from this site (missing CSRF token). Go back, reload the page and try again.",
    )
}

fn unavailable(e: store::Error) -> Response {
    tracing::error!(error = %e, "web: the session store failed");
    html::error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The platform cannot check your sign-in right now; retry in a few seconds.",
    )
}

/// The signed-in user of this request, if any.
pub async fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, Response> {
    let Some(value) = cookie_of(headers, SESSION_COOKIE).filter(|v| v.len() == 43) else { return Ok(None) };
    state.store.session(&secret::digest(value)).await.map_err(unavailable)
}

/// Starts a session for `user`; returns the `Set-Cookie` header.
pub async fn start(state: &AppState, user: UserId, email: &str) -> Result<HeaderValue, Response> {
    let secret = Secret::generate();
    let expires = Utc::now() + SESSION_TTL;
    state.store.put_session(&secret.digest(), &user.to_string(), email, expires).await.map_err(unavailable)?;
    tracing::info!(user = %user, "web: signed in");
    Ok(set_cookie(state, SESSION_COOKIE, secret.expose(), Some(SESSION_TTL.num_seconds())))
}

/// Ends this request's session; returns the `Set-Cookie` that clears it.
pub async fn end(state: &AppState, headers: &HeaderMap) -> Result<HeaderValue, Response> {
    if let Some(value) = cookie_of(headers, SESSION_COOKIE) {
        state.store.delete_session(&secret::digest(value)).await.map_err(unavailable)?;
    }
    Ok(set_cookie(state, SESSION_COOKIE, "", Some(0)))
}

/// Where to go after signing in: a path on this site only, never another origin (no open
/// redirect through `//host`, `/\host` or a scheme).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() <= 512
                && !n.chars().any(|c| c.is_control() || c == '\\') =>
        {
            n
        }
        _ => "/settings",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/dns")), "/dns");
        assert_eq!(safe_next(Some("/settings?x=1")), "/settings?x=1");
        for bad in
            ["//evil.example", "/\\evil.example", "https://evil.example", "javascript:alert(1)", "", "/a\\b", "/\r\nx"]
        {
            assert_eq!(safe_next(Some(bad)), "/settings", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/settings");
    }
}
