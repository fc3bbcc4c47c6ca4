//! Client ID Metadata Documents: a `client_id` that is an https URL names a JSON document
//! listing the client's redirect URIs. It is fetched once (timeout, size limit, no redirects)
//! and kept with the registered clients.
//!
//! http on a loopback host is accepted only when the gateway itself is served on loopback
//! (development and tests). Hosts must be names, not IP literals, otherwise.

use std::time::Duration;

use super::authorize::AuthorizeError;
use super::register::{self, ClientMetadata, ValidClient};
use crate::AppState;

const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BYTES: usize = 64 << 10;

fn serves_loopback(public_url: &str) -> bool {
    url::Url::parse(public_url).is_ok_and(|u| match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    })
}

/// The registered client `client_id`, fetching its metadata document when it names one.
/// `Ok(None)`: unknown. A document that cannot be used is an error page.
pub async fn resolve(state: &AppState, client_id: &str) -> Result<Option<ValidClient>, AuthorizeError> {
    let known = state.oauth.client(client_id).await.map_err(|e| {
        tracing::error!(error = %e, "oauth: cannot read a client");
        AuthorizeError::Page("Sign-in is temporarily unavailable; try again shortly.".into())
    })?;
    if let Some(c) = known {
        return Ok(Some(c));
    }
    let dev = serves_loopback(&state.public_url);
    let Some(url) = register::metadata_document_url(client_id, dev) else { return Ok(None) };
    if !dev && !matches!(url.host(), Some(url::Host::Domain(_))) {
        return Err(AuthorizeError::Page("A client metadata document must be served from a host name.".into()));
    }
    let page = |m: String| AuthorizeError::Page(format!("The client's metadata document at {url} {m}"));
    let http = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| page(format!("cannot be fetched: {e}")))?;
    let mut res = http.get(url.clone()).send().await.map_err(|_| page("cannot be fetched".into()))?;
    if !res.status().is_success() {
        return Err(page(format!("answered {}", res.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|_| page("could not be read".into()))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BYTES {
            return Err(page("is larger than 64 KiB".into()));
        }
    }
    let meta: ClientMetadata = serde_json::from_slice(&body).map_err(|e| page(format!("is not valid JSON: {e}")))?;
    let client = register::validate_document(client_id, &meta).map_err(|e| page(format!("is refused: {e}")))?;
    tracing::info!(client_id, "oauth: client metadata document fetched");
    if let Err(e) = state.oauth.add_client(client_id, &client).await {
        // The document was valid: go on, and fetch it again next time.
        tracing::warn!(error = %e, "oauth: cannot store a client metadata document");
    }
    Ok(Some(client))
}
