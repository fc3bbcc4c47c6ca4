//! Wildcard TLS certificates (`*.<zone>` and `<zone>`) from an ACME CA through DNS-01.
//!
//! The platform serves the zones users delegate to it from its own PowerDNS, so it can answer the
//! CA's DNS-01 challenges itself: [`Acme::issue_wildcard`] publishes the challenge TXT records
//! through a [`Dns01`], lets the CA validate, finalizes the order with a fresh key and clears the
//! records again, whatever the outcome.
//!
//! Architecture invariant: this crate knows nothing of PowerDNS, of the event store or of where
//! secrets live. Challenge records go through [`Dns01`]; the account credentials and the issued
//! key come back to the caller as strings, to be sealed and stored by it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, ChallengeType, HttpClient, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an ACME operation failed, sorted by what the caller must do: fix the input, fix the
/// configuration, retry later, or look at the infrastructure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot order a certificate for zone `{zone}`: {reason}")]
    InvalidZone { zone: String, reason: &'static str },
    #[error(
        "the CA could not validate DNS-01 for `{identifier}`: {detail}; check that the zone is delegated to the \
         platform's name servers and that they serve TXT `_acme-challenge.{zone}`, then retry"
    )]
    ChallengeFailed { zone: String, identifier: String, detail: String },
    #[error("the stored ACME account is unusable: {0}; drop it so that `connect` registers a new account")]
    AccountJson(String),
    #[error(
        "cannot set up the roots that authenticate the ACME CA's HTTPS endpoint: {0}; check `ca_root_pem` \
         (PEM certificates) or the system's certificate store"
    )]
    TrustRoots(String),
    #[error("timed out after {after:?} while {step}; the CA or the DNS backend is slow or unreachable, retry later")]
    Timeout { step: &'static str, after: Duration },
    #[error("DNS-01: {step} TXT record `{name}` failed: {message}; check the DNS backend (PowerDNS API), then retry")]
    Dns { step: &'static str, name: String, message: String },
    #[error(
        "the ACME CA failed while {step}: {detail}; retry later if the CA is down or rate-limiting, check the \
         directory URL `{directory_url}` (and `ca_root_pem` for a test CA) if it never answers"
    )]
    Ca {
        step: &'static str,
        directory_url: String,
        /// `source` with its causes (a TLS failure hides two levels down).
        detail: String,
        #[source]
        source: Box<instant_acme::Error>,
    },
    #[error("the certificate is unusable: {0}")]
    Certificate(String),
}

/// Where DNS-01 challenge records go (the platform implements it with its PowerDNS client; tests
/// with raw HTTP calls).
#[async_trait::async_trait]
pub trait Dns01: Send + Sync {
    /// Publishes TXT `value` at `name` (e.g. `_acme-challenge.apps.example.com`, no trailing dot),
    /// adding to values already there: the wildcard and the apex need two values at the same name.
    async fn publish(&self, name: &str, value: &str) -> Result<(), String>;

    /// Removes every TXT value at `name`. Called once per name after an issuance, also a failed
    /// one, and possibly for a name whose `publish` failed half-way.
    async fn clear(&self, name: &str) -> Result<(), String>;

    /// Returns once `value` is served at `name` by the zone's authoritative servers (those the CA
    /// asks). The default returns at once, which is right for a PowerDNS whose API changes are
    /// served immediately; a backend with replication lag should poll its servers here.
    async fn wait_visible(&self, name: &str, value: &str) -> Result<(), String> {
        let _ = (name, value);
        Ok(())
    }
}

/// How to reach the ACME CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The CA's directory, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory_url: String,
    /// Where the CA sends expiry notices (with or without `mailto:`).
    pub contact_email: Option<String>,
    /// PEM root(s) for the CA's own HTTPS endpoint, for a test CA such as pebble. When set, only
    /// these roots are trusted; when not, the system's certificate store is.
    pub ca_root_pem: Option<String>,
}

/// A certificate for `*.<zone>` and `<zone>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The leaf first, then the intermediates, as the CA sent them.
    pub cert_chain_pem: String,
    /// The certificate's private key (PKCS#8 PEM): a secret, seal it before storing.
    pub key_pem: String,
    pub not_after: DateTime<Utc>,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

/// An ACME account at one CA. Cheap to clone; orders may run concurrently.
#[derive(Clone)]
pub struct Acme {
    account: Account,
    directory_url: String,
    timeout: Duration,
}

impl fmt::Debug for Acme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acme")
            .field("account", &self.account.id())
            .field("directory_url", &self.directory_url)
            .finish_non_exhaustive()
    }
}

/// Bounds `connect` (one directory fetch, maybe an account registration).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound of a whole issuance (Let's Encrypt usually validates within seconds; pebble at once).
const ISSUE_TIMEOUT: Duration = Duration::from_secs(180);
/// Bounds each `Dns01::clear` (it runs after the issuance's own deadline).
const CLEAR_TIMEOUT: Duration = Duration::from_secs(30);

impl Acme {
    /// Creates (or restores from `account_json`) the ACME account; returns it with the credentials
    /// JSON to store (the caller seals it: it holds the account's private key).
    pub async fn connect(config: AcmeConfig, account_json: Option<&str>) -> Result<(Acme, String)> {
        let directory_url = config.directory_url.clone();
        let step = if account_json.is_some() { "restoring the account" } else { "registering an account" };
        match tokio::time::timeout(CONNECT_TIMEOUT, connect(config, account_json)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout { step, after: CONNECT_TIMEOUT }),
        }
        .map(|(account, json)| (Acme { account, directory_url, timeout: ISSUE_TIMEOUT }, json))
    }

    /// Bounds each [`Acme::issue_wildcard`] (default 180 s, DNS clean-up not included).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The account's URL at the CA.
    pub fn account_id(&self) -> &str {
        self.account.id()
    }

    /// Orders a certificate for `*.<zone>` and `<zone>` through DNS-01: publishes each pending
    /// challenge's TXT through `dns`, waits until `dns` says they are visible, tells the CA,
    /// polls the order until ready (with backoff), finalizes with a fresh ECDSA P-256 key,
    /// downloads the chain, and clears the TXT records (also on failure; a failed clear is logged,
    /// not returned, so that a certificate already issued is not lost).
    pub async fn issue_wildcard(&self, zone: &str, dns: &dyn Dns01) -> Result<Issued> {
        let zone = normalize_zone(zone)?;
        let mut progress = Progress { step: "creating the order", published: Vec::new() };
        let result = match tokio::time::timeout(self.timeout, self.order(&zone, dns, &mut progress)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout { step: progress.step, after: self.timeout }),
        };
        for name in &progress.published {
            let outcome = match tokio::time::timeout(CLEAR_TIMEOUT, dns.clear(name)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {CLEAR_TIMEOUT:?}")),
            };
            if let Err(message) = outcome {
                tracing::warn!(%zone, %name, %message, "could not clear an ACME challenge TXT record; remove it by hand");
            }
        }
        result
    }

    async fn order(&self, zone: &str, dns: &dyn Dns01, progress: &mut Progress) -> Result<Issued> {
        let identifiers = [Identifier::Dns(format!("*.{zone}")), Identifier::Dns(zone.to_owned())];
        progress.step = "creating the order";
        let mut order = self.account.new_order(&NewOrder::new(&identifiers)).await.map_err(|e| self.ca(progress, e))?;

        // The CA may reuse authorizations this account already validated: only pending ones need a record.
        progress.step = "reading the order's authorizations";
        let mut records = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| self.ca(progress, e))?;
            let identifier = authz.identifier().to_string();
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                status => {
                    return Err(Error::ChallengeFailed {
                        zone: zone.to_owned(),
                        identifier,
                        detail: format!("the authorization is {status:?} before any challenge was answered"),
                    });
                }
            }
            let challenge = authz.challenge(ChallengeType::Dns01).ok_or_else(|| Error::ChallengeFailed {
                zone: zone.to_owned(),
                identifier: identifier.clone(),
                detail: "the CA offers no dns-01 challenge for it".to_owned(),
            })?;
            let Identifier::Dns(domain) = challenge.identifier().identifier else {
                return Err(Error::ChallengeFailed {
                    zone: zone.to_owned(),
                    identifier,
                    detail: "the CA returned a non-DNS identifier".to_owned(),
                });
            };
            records.push((format!("_acme-challenge.{domain}"), challenge.key_authorization().dns_value()));
        }

        progress.step = "publishing the challenge TXT records";
        for (name, value) in &records {
            if !progress.published.contains(name) {
                progress.published.push(name.clone());
            }
            dns.publish(name, value).await.map_err(|message| Error::Dns {
                step: "publishing",
                name: name.clone(),
                message,
            })?;
        }
        progress.step = "waiting until the challenge TXT records are visible";
        for (name, value) in &records {
            dns.wait_visible(name, value).await.map_err(|message| Error::Dns {
                step: "waiting for the visibility of",
                name: name.clone(),
                message,
            })?;
        }

        progress.step = "telling the CA the challenges are ready";
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| self.ca(progress, e))?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut challenge) = authz.challenge(ChallengeType::Dns01) {
                challenge.set_ready().await.map_err(|e| self.ca(progress, e))?;
            }
        }

        progress.step = "waiting for the CA to validate the challenges";
        let polling = RetryPolicy::new()
            .initial_delay(Duration::from_millis(200))
            .backoff(1.5)
            // Leaves time to download the chain within the issuance's bound.
            .timeout(self.timeout.saturating_sub(Duration::from_secs(5)).max(self.timeout / 2));
        match order.poll_ready(&polling).await {
            Ok(OrderStatus::Ready) => {}
            Ok(_) | Err(instant_acme::Error::Api(_)) => return Err(self.validation_failure(zone, &mut order).await),
            Err(e) => return Err(self.ca(progress, e)),
        }

        progress.step = "finalizing the order";
        let key_pem = order.finalize().await.map_err(|e| self.ca(progress, e))?;
        progress.step = "downloading the certificate";
        let cert_chain_pem = order.poll_certificate(&polling).await.map_err(|e| self.ca(progress, e))?;
        let not_after = not_after(&cert_chain_pem)?;
        tracing::info!(%zone, %not_after, "issued a wildcard certificate");
        Ok(Issued { cert_chain_pem, key_pem, not_after })
    }

    /// Finds out which authorization failed and why, for an order that became invalid.
    async fn validation_failure(&self, zone: &str, order: &mut instant_acme::Order) -> Error {
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authz)) = authorizations.next().await {
            if authz.refresh().await.is_err() || authz.status == AuthorizationStatus::Valid {
                continue;
            }
            let identifier = authz.identifier().to_string();
            let problem =
                authz.challenges.iter().find(|c| c.r#type == ChallengeType::Dns01).and_then(|c| c.error.as_ref());
            let detail = match problem {
                Some(problem) => problem.to_string(),
                None => format!("the authorization is {:?}", authz.status),
            };
            return Error::ChallengeFailed { zone: zone.to_owned(), identifier, detail };
        }
        let detail = match order.state().error.as_ref() {
            Some(problem) => problem.to_string(),
            None => format!("the order is {:?}", order.state().status),
        };
        Error::ChallengeFailed { zone: zone.to_owned(), identifier: format!("*.{zone}"), detail }
    }

    fn ca(&self, progress: &Progress, source: instant_acme::Error) -> Error {
        match source {
            instant_acme::Error::Timeout(_) => Error::Timeout { step: progress.step, after: self.timeout },
            source => ca_error(progress.step, &self.directory_url, source),
        }
    }
}

fn ca_error(step: &'static str, directory_url: &str, source: instant_acme::Error) -> Error {
    let mut detail = source.to_string();
    let mut cause = std::error::Error::source(&source);
    while let Some(e) = cause {
        let text = e.to_string();
        if !detail.contains(&text) {
            detail = format!("{detail}: {text}");
        }
        cause = e.source();
    }
    Error::Ca { step, directory_url: directory_url.to_owned(), detail, source: Box::new(source) }
}

/// What an issuance got to: the step for error messages, the TXT names to clear.
struct Progress {
    step: &'static str,
    published: Vec<String>,
}

async fn connect(config: AcmeConfig, account_json: Option<&str>) -> Result<(Account, String)> {
    let ca = |step: &'static str| {
        let directory_url = config.directory_url.clone();
        move |source| ca_error(step, &directory_url, source)
    };
    let builder = Account::builder_with_http(http_client(config.ca_root_pem.as_deref())?);
    match account_json {
        Some(json) => {
            let credentials: AccountCredentials =
                serde_json::from_str(json).map_err(|e| Error::AccountJson(format!("its JSON does not parse ({e})")))?;
            // The credentials name the directory they were made at: a changed CA needs a new account.
            let stored = serde_json::from_str::<serde_json::Value>(json)
                .ok()
                .and_then(|v| v.get("directory").and_then(|d| d.as_str()).map(str::to_owned));
            if let Some(stored) = stored
                && stored != config.directory_url
            {
                return Err(Error::AccountJson(format!(
                    "it was registered at `{stored}`, the configured CA is `{}`",
                    config.directory_url
                )));
            }
            let account = builder.from_credentials(credentials).await.map_err(ca("restoring the account"))?;
            Ok((account, json.to_owned()))
        }
        None => {
            let contact = config.contact_email.as_deref().map(|email| match email.strip_prefix("mailto:") {
                Some(_) => email.to_owned(),
                None => format!("mailto:{email}"),
            });
            let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
            let new_account =
                NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false };
            let (account, credentials) = builder
                .create(&new_account, config.directory_url.clone(), None)
                .await
                .map_err(ca("registering an account"))?;
            let json = serde_json::to_string(&credentials)
                .map_err(|e| Error::AccountJson(format!("the new credentials do not serialize ({e})")))?;
            Ok((account, json))
        }
    }
}

/// An HTTPS client on ring (the workspace's provider: rustls' process default is ambiguous when
/// another crate also enables aws-lc-rs).
fn http_client(ca_root_pem: Option<&str>) -> Result<Box<dyn HttpClient>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match ca_root_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| Error::TrustRoots(format!("the PEM does not parse ({e})")))?;
                roots.add(cert).map_err(|e| Error::TrustRoots(format!("a certificate is not a usable root ({e})")))?;
            }
            if roots.is_empty() {
                return Err(Error::TrustRoots("the PEM holds no CERTIFICATE block".to_owned()));
            }
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::TrustRoots(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder.with_tls_config(config)
        }
        None => builder.with_provider_and_platform_verifier(provider).map_err(|e| Error::TrustRoots(e.to_string()))?,
    };
    let connector = builder.https_only().enable_http1().build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, BodyWrapper<Bytes>>(connector);
    Ok(Box::new(client))
}

/// `Apps.Example.com.` → `apps.example.com`; refuses what cannot be a DNS zone.
fn normalize_zone(zone: &str) -> Result<String> {
    let invalid = |reason| Error::InvalidZone { zone: zone.to_owned(), reason };
    let name = zone.trim().trim_end_matches('.').to_ascii_lowercase();
    let name = name.strip_prefix("*.").unwrap_or(&name).to_owned();
    if name.is_empty() {
        return Err(invalid("the zone name is empty"));
    }
    if !name.contains('.') {
        return Err(invalid("give a domain with at least two labels, e.g. `apps.example.com`"));
    }
    if name.len() > 253 {
        return Err(invalid("a domain name has at most 253 characters"));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !name.split('.').all(label_ok) {
        return Err(invalid("labels are 1-63 letters, digits or inner `-`, separated by single dots"));
    }
    Ok(name)
}

/// Whether a certificate should be renewed: less than `before` left (e.g. 30 days).
pub fn needs_renewal(not_after: DateTime<Utc>, now: DateTime<Utc>, before: chrono::Duration) -> bool {
    not_after - now < before
}

/// Reads not_after from a PEM chain's first certificate.
pub fn not_after(cert_chain_pem: &str) -> Result<DateTime<Utc>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_chain_pem.as_bytes())
        .map_err(|e| Error::Certificate(format!("no PEM block found ({e})")))?;
    if pem.label != "CERTIFICATE" {
        return Err(Error::Certificate(format!("the first PEM block is a {}, not a CERTIFICATE", pem.label)));
    }
    let cert =
        pem.parse_x509().map_err(|e| Error::Certificate(format!("the first certificate does not parse ({e})")))?;
    let seconds = cert.validity().not_after.timestamp();
    DateTime::from_timestamp(seconds, 0)
        .ok_or_else(|| Error::Certificate(format!("not_after {seconds} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_are_normalized_or_refused() {
        assert_eq!(normalize_zone("Apps.Example.COM.").unwrap(), "apps.example.com");
        assert_eq!(normalize_zone("*.apps.example.com").unwrap(), "apps.example.com");
        for bad in ["", ".", "com", "a..b", "-a.b", "a_b.c", "a.b c"] {
            assert!(matches!(normalize_zone(bad), Err(Error::InvalidZone { .. })), "{bad:?}");
        }
    }

    #[test]
    fn not_after_refuses_what_is_not_a_certificate() {
        assert!(matches!(not_after("hello"), Err(Error::Certificate(_))));
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = not_after(key).unwrap_err().to_string();
        assert!(err.contains("PRIVATE KEY"), "{err}");
    }
}
