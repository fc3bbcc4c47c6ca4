//! `/dns`: delegate a zone to the platform, and see what to publish (the TXT record and the NS
//! records), each zone's status and when an unverified delegation expires.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::Page;
use super::html::{self, escape, hidden};
use crate::AppState;
use crate::zones::{self, ZoneView};

#[derive(Debug, Default, Deserialize)]
pub struct DnsQuery {
    pub delegated: Option<String>,
}

/// An RFC 3339 time as people read it.
fn readable(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| html::when(t.with_timezone(&chrono::Utc)))
        .unwrap_or_else(|_| t.to_owned())
}

fn zone_html(z: &ZoneView) -> String {
    let ns: String = z.nameservers.iter().map(|n| format!("<li><code>{}</code></li>", escape(n))).collect();
    let missing = if z.missing.is_empty() {
        String::new()
    } else {
        format!("<p>Not seen yet: {}</p>", escape(&z.missing.join(", ")))
    };
    let cert = z
        .certificate_valid_until
        .as_deref()
        .map(|t| format!("<p>Wildcard certificate valid until {}.</p>", escape(&readable(t))))
        .unwrap_or_default();
    let expiry = if z.status == "pending" {
        format!("<p>Publish the records before {}, or the delegation expires.</p>", escape(&readable(&z.expires_at)))
    } else {
        String::new()
    };
    format!(
        "<section aria-labelledby=\"zone-{id}\"><h3 id=\"zone-{id}\"><code>{zone}</code> — <span class=\"status\">{status}</span></h3>\
         <table><tbody>\
         <tr><th scope=\"row\">TXT name</th><td><code>{txt_name}</code></td></tr>\
         <tr><th scope=\"row\">TXT value</th><td><code>{txt_value}</code></td></tr>\
         <tr><th scope=\"row\">or TXT at</th><td><code>{alt}</code></td></tr>\
         <tr><th scope=\"row\">NS records</th><td><ul>{ns}</ul></td></tr>\
         </tbody></table>{missing}{expiry}{cert}</section>",
        id = escape(&z.zone.replace('.', "-")),
        zone = escape(&z.zone),
        status = escape(&z.status),
        txt_name = escape(&z.txt_name),
        txt_value = escape(&z.txt_value),
        alt = escape(&z.txt_alternative_name),
    )
}

async fn render(state: &AppState, page: &Page, status: StatusCode, top: &str) -> Response {
    let zones = match zones::list(state, &page.session.user_id).await {
        Ok(z) => z,
        Err(e) => return html::error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let list = if zones.is_empty() {
        "<p>No zones delegated yet.</p>".to_owned()
    } else {
        zones.iter().map(zone_html).collect()
    };
    let body = format!(
        "{top}<p>Delegate a DNS zone you own (say <code>apps.example.com</code>) and the platform serves it: \
         services get names in it with certificates. Publish the TXT record to prove the zone is yours, and the NS \
         records to delegate it; the platform checks them and turns the zone active.</p>\
         <form method=\"post\" action=\"/dns\">{csrf}<p><label for=\"zone\">Zone</label><br>\
         <input id=\"zone\" name=\"zone\" placeholder=\"apps.example.com\" required> <button>Delegate</button></p></form>\
         <h2>Your zones</h2>{list}",
        csrf = hidden("csrf", Some(&page.csrf)),
    );
    page.render(status, "DNS zones", &body)
}

/// Waits (briefly) until the projector lists a new zone, so that the page after the redirect
/// shows it.
async fn visible(state: &AppState, owner: &str, zone: &str) {
    let shown = || async { zones::list(state, owner).await.is_ok_and(|zs| zs.iter().any(|z| z.zone == zone)) };
    if !crate::projection::wait_until(shown).await {
        tracing::warn!(zone, "web: the delegated zone is not in the read model yet");
    }
}

/// `GET /dns`
pub async fn get_dns(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<DnsQuery>) -> Response {
    let page = match Page::require(&state, &headers, "/dns").await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let top = q
        .delegated
        .as_deref()
        .map(|z| html::notice(&format!("Delegation of {z} requested: publish the records below.")))
        .unwrap_or_default();
    render(&state, &page, StatusCode::OK, &top).await
}

#[derive(Debug, Deserialize)]
pub struct DelegateForm {
    pub csrf: Option<String>,
    pub zone: Option<String>,
}

/// `POST /dns`: asks to delegate a zone (the same call as `POST /api/zones`).
pub async fn post_dns(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<DelegateForm>) -> Response {
    let page = match Page::submitted(&state, &headers, "/dns", form.csrf.as_deref()).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let user = page.user;
    match zones::delegate(&state, user, form.zone.as_deref().unwrap_or("")).await {
        Ok(view) => {
            visible(&state, &page.session.user_id, &view.zone).await;
            let q: String = url::form_urlencoded::byte_serialize(view.zone.as_bytes()).collect();
            Redirect::to(&format!("/dns?delegated={q}")).into_response()
        }
        Err(e) => render(&state, &page, e.status(), &html::alert(&e.to_string())).await,
    }
}
