//! Server-rendered HTML: one layout, escaped values, plain forms that work without JavaScript.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

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

/// The stylesheet, served from `/assets/site.css` so that the CSP needs no inline styles.
pub const CSS: &str = "\
:root{color-scheme:light dark;font-family:system-ui,sans-serif;line-height:1.5}\
body{margin:0}header{display:flex;gap:1rem;align-items:center;padding:.75rem 1.5rem;border-bottom:1px solid #8884}\
header nav{display:flex;gap:1rem;align-items:center;margin-left:auto}header form{margin:0}\
main{max-width:46rem;margin:0 auto;padding:1rem 1.5rem}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #8883}\
input{font:inherit;padding:.3rem .4rem}button{font:inherit;padding:.3rem .8rem;cursor:pointer}\
code,.secret{font-family:ui-monospace,monospace;overflow-wrap:anywhere}\
.secret{display:block;padding:.6rem;border:2px dashed #c80;margin:.5rem 0}\
[role=alert]{padding:.5rem .75rem;border-left:4px solid #c33}.notice{padding:.5rem .75rem;border-left:4px solid #3a3}\
.muted{opacity:.75}";

/// A whole page. `account`: the signed-in user's e-mail and CSRF token (shows the navigation).
pub fn layout(title: &str, account: Option<(&str, &str)>, body: &str) -> String {
    let nav = match account {
        Some((email, csrf)) => format!(
            "<nav aria-label=\"Account\"><a href=\"/settings\">API keys</a><a href=\"/dns\">DNS zones</a>\
             <span class=\"muted\">{}</span><form method=\"post\" action=\"/signout\">{}\
             <button>Sign out</button></form></nav>",
            escape(email),
            hidden("csrf", Some(csrf)),
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · Deploy MCP</title><link rel=\"stylesheet\" href=\"/assets/site.css\"></head>\
         <body><header><strong>Deploy MCP</strong>{nav}</header><main><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title)
    )
}

/// An HTML response: no caching (pages show secrets and CSRF tokens), no framing, forms
/// posted to this site only.
pub fn respond(status: StatusCode, html: String) -> Response {
    respond_with_form_target(status, html, None)
}

/// `respond`, letting forms also end at `target` (a source expression): browsers apply
/// `form-action` to the redirect after a post too, and the consent form redirects to the client.
pub fn respond_with_form_target(status: StatusCode, html: String, target: Option<&str>) -> Response {
    let mut res = (status, Html(html)).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    let extra = target.map(|t| format!(" {t}")).unwrap_or_default();
    let csp = format!("default-src 'none'; style-src 'self'; form-action 'self'{extra}; frame-ancestors 'none'");
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&csp)
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; style-src 'self'")),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    res
}

/// The CSP source expression of a URL's origin: `https://host:port`, or `scheme:` for the
/// custom schemes of native clients.
pub fn csp_source(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    match u.scheme() {
        "http" | "https" => Some(u.origin().ascii_serialization()),
        scheme => Some(format!("{scheme}:")),
    }
}

/// A page with a status.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    respond(status, layout(title, None, body))
}

/// An error page with what went wrong and what to do.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    page(status, "Something is in the way", &alert(message))
}

pub fn alert(message: &str) -> String {
    format!("<p role=\"alert\">{}</p>", escape(message))
}

pub fn notice(message: &str) -> String {
    format!("<p class=\"notice\" role=\"status\">{}</p>", escape(message))
}

pub fn hidden(name: &str, value: Option<&str>) -> String {
    value.map(|v| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape(v))).unwrap_or_default()
}

/// The sign-in and sign-up form, posted to `action` with `fields` (hidden inputs) carried along.
pub fn sign_in_form(action: &str, fields: &str, csrf: &str, github: Option<&str>) -> String {
    let github = github
        .map(|href| format!("<p>or <a href=\"{}\">Sign in with GitHub</a></p>", escape(href)))
        .unwrap_or_default();
    format!(
        "<form method=\"post\" action=\"{action}\">{fields}{csrf}\
         <p><label for=\"email\">E-mail</label><br><input id=\"email\" name=\"email\" type=\"email\" \
         autocomplete=\"username\" required></p>\
         <p><label for=\"password\">Password</label><br><input id=\"password\" name=\"password\" \
         type=\"password\" autocomplete=\"current-password\" minlength=\"10\" required></p>\
         <p><button name=\"action\" value=\"sign_in\">Sign in</button> \
         <button name=\"action\" value=\"sign_up\">Create an account</button></p></form>{github}",
        action = escape(action),
        csrf = hidden("csrf", Some(csrf)),
    )
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').filter_map(|c| c.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// A date for people: `2026-11-24 12:00 UTC`.
pub fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_cookies_parsed() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert!(!hidden("state", Some("\"><script>")).contains("<script>"));
        assert!(!layout("t", Some(("<b>@x", "c")), "").contains("<b>@x"));
        assert_eq!(cookie(Some("a=1; dmcp_csrf=xyz; b=2"), "dmcp_csrf"), Some("xyz"));
        assert_eq!(cookie(Some("a=1"), "dmcp_csrf"), None);
        assert_eq!(cookie(None, "dmcp_csrf"), None);
        assert_eq!(csp_source("http://127.0.0.1:4567/cb?x=1").as_deref(), Some("http://127.0.0.1:4567"));
        assert_eq!(csp_source("cursor://anysphere.cursor-mcp/oauth").as_deref(), Some("cursor:"));
    }
}
