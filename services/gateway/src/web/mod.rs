//! The web pages for the people behind the agents, for what MCP deliberately does not do:
//! sign-in and sign-up (`signin`, or with GitHub: `github`), API keys (`settings`) and DNS
//! zone delegation (`dns`). Server-rendered, no JavaScript, every form CSRF-protected, sessions
//! in HttpOnly SameSite cookies (`session`). The OAuth consent screen reuses all of it.

pub mod dns;
pub mod github;
pub mod html;
pub mod session;
pub mod settings;
pub mod signin;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use store::credentials::Session;

use crate::AppState;

/// The pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/settings") }))
        .route("/assets/site.css", get(stylesheet))
        .route("/signin", get(signin::get_signin).post(signin::post_signin))
        .route("/signout", post(signin::post_signout))
        .route("/signin/github", get(github::start))
        .route("/signin/github/callback", get(github::callback))
        .route("/settings", get(settings::get_settings))
        .route("/settings/keys", post(settings::create_key))
        .route("/settings/keys/revoke", post(settings::revoke_key))
        .route("/dns", get(dns::get_dns).post(dns::post_dns))
}

async fn stylesheet() -> Response {
    let mut res = html::CSS.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    res
}

/// A signed-in page's context: who, and the CSRF token for its forms.
pub struct Page {
    pub session: Session,
    pub user: events::UserId,
    pub csrf: String,
    set_csrf: Option<HeaderValue>,
}

impl Page {
    /// The signed-in user of this request, or a redirect to sign in and come back to `here`.
    pub async fn require(state: &AppState, headers: &HeaderMap, here: &str) -> Result<Self, Response> {
        let Some(session) = session::current(state, headers).await? else {
            let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
            return Err(Redirect::to(&format!("/signin?next={next}")).into_response());
        };
        let Ok(user) = session.user_id.parse() else {
            return Err(html::error_page(
                StatusCode::BAD_REQUEST,
                "Your session is not valid any more: sign in again.",
            ));
        };
        let (csrf, set_csrf) = session::csrf(state, headers);
        Ok(Self { session, user, csrf, set_csrf })
    }

    /// `require`, for a form post: the form's CSRF token must match too.
    pub async fn submitted(
        state: &AppState,
        headers: &HeaderMap,
        here: &str,
        csrf: Option<&str>,
    ) -> Result<Self, Response> {
        let page = Self::require(state, headers, here).await?;
        if !session::csrf_ok(headers, csrf) {
            return Err(session::csrf_refused());
        }
        Ok(page)
    }

    /// A page of this user's.
    pub fn render(&self, status: StatusCode, title: &str, body: &str) -> Response {
        let mut res = html::respond(status, html::layout(title, Some((&self.session.email, &self.csrf)), body));
        if let Some(c) = &self.set_csrf {
            res.headers_mut().append(header::SET_COOKIE, c.clone());
        }
        res
    }
}
