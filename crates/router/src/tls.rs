//! TLS termination: certificates by host name, chosen by the client's SNI.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer};
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::host;

/// Chosen explicitly: other crates of the workspace may enable aws-lc in rustls too, and then rustls has no single
/// default provider.
static PROVIDER: LazyLock<Arc<CryptoProvider>> = LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));

/// A fatal `unrecognised_name` alert (RFC 8446, 6.2), sent in plaintext in answer to the ClientHello. rustls sends
/// `access_denied` when its resolver finds no certificate, so the router answers unknown names itself.
const UNRECOGNISED_NAME_ALERT: [u8; 7] = [21, 3, 3, 0, 2, 2, 112];

/// Why a certificate was not installed. The messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("`{name}` is not a host name or a wildcard; pass `app.example.com` or `*.apps.example.com`")]
    InvalidName { name: String },
    #[error(
        "the certificate chain is not valid PEM ({reason}); pass the leaf certificate, then its intermediates, each \
         as a `-----BEGIN CERTIFICATE-----` block"
    )]
    CertificatePem { reason: pem::Error },
    #[error("the certificate chain has no `-----BEGIN CERTIFICATE-----` block")]
    NoCertificate,
    #[error("the private key is not valid PEM; pass one PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key in PEM")]
    KeyPem,
    #[error("the private key does not belong to the certificate; pass the key the leaf certificate was issued for")]
    KeyMismatch,
    #[error("the certificate or its key cannot be used: {0}")]
    Unusable(rustls::Error),
}

/// Certificates by host name, swapped at run time (the dns service hands in new and renewed ones). Cloning shares
/// them; lookups are lock-free.
#[derive(Clone, Default)]
pub struct Certs {
    /// Replaced whole on every write, as handshakes read it far more often than it changes.
    table: Arc<ArcSwap<Table>>,
}

#[derive(Clone, Default)]
struct Table {
    /// By host name, lowercase.
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// By the domain under the `*.`: `*.apps.example.com` is kept as `apps.example.com`.
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
}

impl Table {
    fn names(&mut self, wildcard: bool) -> &mut HashMap<Box<str>, Arc<CertifiedKey>> {
        if wildcard { &mut self.wildcard } else { &mut self.exact }
    }
}

impl Certs {
    /// Installs a certificate (PEM chain + PEM private key) for `name`: an exact host (`app.example.com`) or a
    /// wildcard (`*.apps.example.com`, which matches exactly one extra label). Replaces a previous one; new
    /// connections use it at once. Errors if the PEM does not parse or the key does not match.
    pub fn set(&self, name: &str, cert_chain_pem: &str, key_pem: &str) -> Result<(), TlsError> {
        let (wildcard, key) = parse_name(name).ok_or_else(|| TlsError::InvalidName { name: name.to_owned() })?;
        let certified = Arc::new(certified_key(cert_chain_pem, key_pem)?);
        let key: Box<str> = key.into();
        self.table.rcu(|table| {
            let mut table = Table::clone(table);
            table.names(wildcard).insert(key.clone(), Arc::clone(&certified));
            table
        });
        Ok(())
    }

    /// Removes the certificate of `name` (as passed to `set`); new handshakes for it fail from now on.
    pub fn remove(&self, name: &str) {
        let Some((wildcard, key)) = parse_name(name) else { return };
        self.table.rcu(|table| {
            let mut table = Table::clone(table);
            table.names(wildcard).remove(key.as_str());
            table
        });
    }

    /// Whether a certificate covers `host` (exact match first, then the wildcard one label up).
    pub fn covers(&self, host: &str) -> bool {
        self.lookup(&host::normalize(host)).is_some()
    }

    /// The certificate for `host` (already normalised).
    pub(crate) fn lookup(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        if let Some(certified) = table.exact.get(host) {
            return Some(Arc::clone(certified));
        }
        // A wildcard covers exactly one label: `*.apps.test` covers `x.apps.test`, not `apps.test` or `y.x.apps.test`.
        let (label, parent) = host.split_once('.')?;
        if label.is_empty() || label == "*" {
            return None;
        }
        table.wildcard.get(parent).map(Arc::clone)
    }
}

impl fmt::Debug for Certs {
    /// Names only: never the keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.table.load();
        let mut names: Vec<String> = table.exact.keys().map(|name| name.to_string()).collect();
        names.extend(table.wildcard.keys().map(|domain| format!("*.{domain}")));
        names.sort();
        f.debug_tuple("Certs").field(&names).finish()
    }
}

/// Whether `name` is a wildcard, and the key it is stored under (lowercase, no trailing dot, no `*.`).
fn parse_name(name: &str) -> Option<(bool, String)> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let (wildcard, key) = match name.strip_prefix("*.") {
        Some(domain) => (true, domain.to_owned()),
        None => (false, name),
    };
    DnsName::try_from(key.as_str()).ok()?;
    Some((wildcard, key))
}

fn certified_key(cert_chain_pem: &str, key_pem: &str) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| TlsError::CertificatePem { reason })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    // The PEM error is not passed on: it may quote part of the key.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| TlsError::KeyPem)?;
    CertifiedKey::from_der(chain, key, &PROVIDER).map_err(|error| match error {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => TlsError::KeyMismatch,
        error => TlsError::Unusable(error),
    })
}

/// Hands rustls the certificate for the SNI of each handshake.
#[derive(Debug)]
struct Resolver(Certs);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.lookup(&host::normalize(client_hello.server_name()?))
    }
}

/// The TLS side of one `serve_tls`.
pub(crate) struct Tls {
    certs: Certs,
    config: Arc<ServerConfig>,
}

impl Tls {
    pub(crate) fn new(certs: Certs) -> io::Result<Self> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&PROVIDER))
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(certs.clone())));
        // The router speaks HTTP/1.1 only; a client offering only h2 is refused rather than misunderstood.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { certs, config: Arc::new(config) })
    }

    /// The server side of a handshake. A ClientHello without SNI, or with a name no certificate covers, is refused
    /// with `unrecognised_name`: there is no default certificate, which would tell the client the names it holds.
    pub(crate) async fn accept(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
        let hello = start.client_hello();
        let covered = hello.server_name().is_some_and(|name| self.certs.lookup(&host::normalize(name)).is_some());
        if !covered {
            let name = hello.server_name().unwrap_or("(none)").to_owned();
            let mut io = start.io;
            // Best effort: the connection is refused either way.
            let _ = io.write_all(&UNRECOGNISED_NAME_ALERT).await;
            let _ = io.shutdown().await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("no certificate for SNI {name}")));
        }
        start.into_stream(Arc::clone(&self.config)).await
    }
}

#[cfg(test)]
mod tests {
    use super::parse_name;

    #[test]
    fn parses_names() {
        assert_eq!(parse_name("App.Example.com."), Some((false, "app.example.com".to_owned())));
        assert_eq!(parse_name("*.apps.test"), Some((true, "apps.test".to_owned())));
        for bad in ["", "*", "*.", "a.*.test", "**.test", "a b.test", "app.test:443", "127.0.0.1", "a..test"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
