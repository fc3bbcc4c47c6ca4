//! Opening connections to upstreams: resolve once, check the addresses, connect to a checked address.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::address::is_public;
use crate::event::Refusal;
use crate::policy::Host;

/// How long resolving a name, and connecting to all its addresses together, may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Name resolution, behind a trait so tests can map names to addresses without DNS.
#[async_trait]
pub trait Resolve: Send + Sync {
    /// The addresses of `host` (a DNS name, never an IP literal).
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>>;
}

/// The system resolver (`getaddrinfo` through tokio), as the host's other programs resolve.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.map(|addr| addr.ip()).collect())
    }
}

/// Why no connection was opened.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Refused before connecting (or resolving failed).
    Refused(Refusal),
    /// Every checked address failed to connect.
    Unreachable(String),
}

/// Resolves `host` (unless it is an address), keeps only public addresses when `public_only`, and connects
/// to the first of them that answers. The address connected to is one that was checked: the name is never
/// resolved a second time, so a DNS answer that changes in between (rebinding) cannot slip a private address in.
pub(crate) async fn open(
    resolver: &dyn Resolve,
    host: &Host,
    port: u16,
    public_only: bool,
) -> Result<(TcpStream, IpAddr), Failure> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let addresses = match host {
        Host::Ip(ip) => vec![*ip],
        Host::Name(name) => match timeout(CONNECT_TIMEOUT, resolver.resolve(name, port)).await {
            Ok(Ok(addresses)) if addresses.is_empty() => {
                return Err(Failure::Refused(Refusal::ResolveFailed("the name has no addresses".to_owned())));
            }
            Ok(Ok(addresses)) => addresses,
            Ok(Err(e)) => return Err(Failure::Refused(Refusal::ResolveFailed(e.to_string()))),
            Err(_) => {
                return Err(Failure::Refused(Refusal::ResolveFailed(format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))));
            }
        },
    };
    let candidates: Vec<IpAddr> = if public_only {
        let public: Vec<IpAddr> = addresses.iter().copied().filter(|ip| is_public(*ip)).collect();
        if public.is_empty() {
            return Err(Failure::Refused(Refusal::PrivateAddress(addresses[0])));
        }
        public
    } else {
        addresses
    };
    let mut last_error = String::new();
    for ip in candidates {
        let addr = SocketAddr::new(ip, port);
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, ip));
            }
            Ok(Err(e)) => last_error = format!("connecting to {addr} failed: {e}"),
            Err(_) => {
                last_error = format!("connecting to {addr} timed out after {} s", CONNECT_TIMEOUT.as_secs());
                break;
            }
        }
    }
    Err(Failure::Unreachable(last_error))
}

/// TLS to https mirrors, trusting the system's certificate store (rustls-platform-verifier), on ring: the
/// workspace's provider (rustls' process default is ambiguous when another crate enables aws-lc-rs).
#[derive(Default)]
pub(crate) struct Tls {
    connector: OnceLock<Result<TlsConnector, String>>,
}

impl Tls {
    fn connector(&self) -> Result<TlsConnector, String> {
        self.connector
            .get_or_init(|| {
                use hyper_rustls::ConfigBuilderExt as _;
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .and_then(|builder| builder.try_with_platform_verifier())
                    .map_err(|e| format!("the system's TLS trust store cannot be used ({e})"))?
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Ok(TlsConnector::from(Arc::new(config)))
            })
            .clone()
    }

    /// A TLS session over `stream` to `host`, verified against the system's roots.
    pub(crate) async fn wrap(&self, host: &Host, stream: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        let connector = self.connector()?;
        let name = match host {
            Host::Name(name) => ServerName::try_from(name.clone()).map_err(|e| format!("invalid TLS name ({e})"))?,
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        };
        match timeout(CONNECT_TIMEOUT, connector.connect(name, stream)).await {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => Err(format!("TLS handshake with {host} failed: {e}")),
            Err(_) => Err(format!("TLS handshake with {host} timed out after {} s", CONNECT_TIMEOUT.as_secs())),
        }
    }
}
