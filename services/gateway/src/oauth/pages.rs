//! The server-rendered pages of the authorization server: sign-in/sign-up, consent, errors.
//! Plain HTML forms, no JavaScript; every value is escaped.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::authorize::AuthorizeParams;

/// The CSRF cookie; its value must come back in the `csrf` field of every form.
pub const CSRF_COOKIE: &str = "dmcp_oauth_csrf";

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · Deploy MCP</title></head><body><main><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title)
    )
}

/// A page with a status, no caching, no framing.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let mut res = (status, Html(layout(title, body))).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; form-action 'self'"));
    res
}

/// An error page: shown instead of redirecting when the redirect URI is not trusted.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    page(status, "Sign-in cannot continue", &format!("<p role=\"alert\">{}</p>", escape(message)))
}

fn hidden(name: &str, value: Option<&str>) -> String {
    value.map(|v| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape(v))).unwrap_or_default()
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
    let notice = notice.map(|n| format!("<p role=\"alert\">{}</p>", escape(n))).unwrap_or_default();
    layout(
        "Sign in to Deploy MCP",
        &format!(
            "{notice}<p><strong>{client}</strong> wants to connect to your Deploy MCP account.</p>\
             <form method=\"post\" action=\"/oauth/authorize\">{params}{csrf}\
             <p><label for=\"email\">E-mail</label><br><input id=\"email\" name=\"email\" type=\"email\" \
             autocomplete=\"username\" required></p>\
             <p><label for=\"password\">Password</label><br><input id=\"password\" name=\"password\" \
             type=\"password\" autocomplete=\"current-password\" minlength=\"10\" required></p>\
             <p><button name=\"action\" value=\"sign_in\">Sign in</button> \
             <button name=\"action\" value=\"sign_up\">Create an account</button></p></form>",
            client = escape(client),
            params = hidden_params(params),
            csrf = hidden("csrf", Some(csrf)),
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
    layout(
        "Allow access?",
        &format!(
            "<p><strong>{name}</strong>{uri} asks to act as <strong>{email}</strong> on <code>{resource}</code>.</p>\
             <p>It will be able to use every Deploy MCP tool on this account: create and deploy services, \
             manage repositories, resources and domains. It receives an API key you can revoke at any time.</p>\
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

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').filter_map(|c| c.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_cookies_parsed() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        let p = AuthorizeParams { state: Some("\"><script>".into()), ..Default::default() };
        assert!(!hidden_params(&p).contains("<script>"));
        assert_eq!(cookie(Some("a=1; dmcp_oauth_csrf=xyz; b=2"), CSRF_COOKIE), Some("xyz"));
        assert_eq!(cookie(Some("a=1"), CSRF_COOKIE), None);
        assert_eq!(cookie(None, CSRF_COOKIE), None);
    }
}
