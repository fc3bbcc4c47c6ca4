//! The OAuth pages: sign-in/sign-up carrying the authorization request, consent, errors.
//! Built on the web pages' layout (`crate::web::html`): plain forms, every value escaped.

use axum::http::StatusCode;
use axum::response::Response;

use super::authorize::AuthorizeParams;
use crate::web::html::{self, escape, hidden};

/// An error page: shown instead of redirecting when the redirect URI is not trusted.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    html::respond(status, html::layout("Sign-in cannot continue", None, &html::alert(message)))
}

/// The authorization request carried through the sign-in form.
pub fn hidden_params(p: &AuthorizeParams) -> String {
    [
        hidden("response_type", p.response_type.as_deref()),
        hidden("client_id", p.client_id.as_deref()),
        hidden("redirect_uri", p.redirect_uri.as_deref()),
        hidden("state", p.state.as_deref()),
        hidden("code_challenge", p.code_challenge.as_deref()),
        hidden("code_challenge_method", p.code_challenge_method.as_deref()),
        hidden("resource", p.resource.as_deref()),
        hidden("scope", p.scope.as_deref()),
    ]
    .concat()
}

/// Sign-in and sign-up on one form.
pub fn sign_in(client: &str, params: &AuthorizeParams, csrf: &str, notice: Option<&str>) -> String {
    let notice = notice.map(html::alert).unwrap_or_default();
    html::layout(
        "Sign in to Deploy MCP",
        None,
        &format!(
            "{notice}<p><strong>{client}</strong> wants to connect to your Deploy MCP account.</p>{form}",
            client = escape(client),
            form = html::sign_in_form("/oauth/authorize", &hidden_params(params), csrf, None),
        ),
    )
}

/// The consent screen: which client, which account, what it may do.
pub fn consent(
    client_name: &str,
    client_uri: Option<&str>,
    email: &str,
    resource: &str,
    ticket: &str,
    csrf: &str,
) -> String {
    let uri = client_uri.map(|u| format!(" ({})", escape(u))).unwrap_or_default();
    html::layout(
        "Allow access?",
        None,
        &format!(
            "<p><strong>{name}</strong>{uri} asks to act as <strong>{email}</strong> on <code>{resource}</code>.</p>\
             <p>It will be able to use every Deploy MCP tool on this account: create and deploy services, \
             manage repositories, resources and domains. It receives an API key you can revoke at any time \
             on the <a href=\"/settings\">API keys</a> page.</p>\
             <form method=\"post\" action=\"/oauth/consent\">{ticket}{csrf}\
             <p><button name=\"decision\" value=\"allow\">Allow</button> \
             <button name=\"decision\" value=\"deny\">Deny</button></p></form>",
            name = escape(client_name),
            email = escape(email),
            resource = escape(resource),
            ticket = hidden("ticket", Some(ticket)),
            csrf = hidden("csrf", Some(csrf)),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_carried_escaped() {
        let p = AuthorizeParams { state: Some("\"><script>".into()), ..Default::default() };
        assert!(!hidden_params(&p).contains("<script>"));
        assert!(hidden_params(&p).contains("name=\"state\""));
    }
}
