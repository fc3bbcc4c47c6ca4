//! Wildcard issuance against the pebble and PowerDNS that `scripts/test --setup-only` starts:
//! pebble validates DNS-01 by asking that PowerDNS, where each test makes its own zone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acme::{Acme, AcmeConfig, Dns01, Error};
use chrono::{TimeDelta, Utc};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use x509_parser::extensions::GeneralName;

const WAIT: Duration = Duration::from_secs(60);

struct Env {
    directory: String,
    ca_root_pem: String,
    mgmt: String,
    pdns_url: String,
    pdns_key: String,
}

fn env() -> Env {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: run `eval \"$(scripts/test --setup-only)\"` first (it starts pebble and PowerDNS)"
            )
        })
    };
    let ca_root = var("DEPLOY_MCP_ACME_CA_ROOT");
    Env {
        directory: var("DEPLOY_MCP_ACME_DIRECTORY"),
        ca_root_pem: std::fs::read_to_string(&ca_root).unwrap_or_else(|e| {
            panic!("cannot read DEPLOY_MCP_ACME_CA_ROOT {ca_root}: {e}; rerun scripts/test --setup-only")
        }),
        mgmt: var("DEPLOY_MCP_PEBBLE_MGMT"),
        pdns_url: var("DEPLOY_MCP_PDNS_URL"),
        pdns_key: var("DEPLOY_MCP_PDNS_API_KEY"),
    }
}

impl Env {
    fn config(&self) -> AcmeConfig {
        AcmeConfig {
            directory_url: self.directory.clone(),
            contact_email: Some("ops@example.test".to_owned()),
            ca_root_pem: Some(self.ca_root_pem.clone()),
        }
    }

    /// Pebble's issuing root: a new one each time pebble starts.
    async fn pebble_root(&self) -> String {
        let cert = reqwest::Certificate::from_pem(self.ca_root_pem.as_bytes()).unwrap();
        let http = reqwest::Client::builder().add_root_certificate(cert).timeout(WAIT).build().unwrap();
        let rsp = http.get(format!("{}/roots/0", self.mgmt)).send().await.unwrap();
        assert!(rsp.status().is_success(), "pebble's /roots/0 answered {}", rsp.status());
        rsp.text().await.unwrap()
    }
}

/// A fresh, unique zone name (no trailing dot).
fn unique_zone(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}{nanos:x}{:x}.test", std::process::id())
}

// --- PowerDNS through its HTTP API -------------------------------------------------------------

struct Pdns {
    http: reqwest::Client,
    url: String,
    key: String,
    /// With the trailing dot, as the API wants it.
    zone: String,
}

impl Pdns {
    async fn create_zone(env: &Env, zone: &str) -> Pdns {
        let pdns = Pdns {
            http: reqwest::Client::builder().timeout(WAIT).build().unwrap(),
            url: format!("{}/api/v1/servers/localhost/zones", env.pdns_url),
            key: env.pdns_key.clone(),
            zone: format!("{zone}."),
        };
        let body = json!({"name": pdns.zone, "kind": "Native", "nameservers": [format!("ns1.{}", pdns.zone)]});
        let rsp = pdns.http.post(&pdns.url).header("X-API-Key", &pdns.key).json(&body).send().await.unwrap();
        assert_eq!(rsp.status().as_u16(), 201, "creating zone {}: {}", pdns.zone, rsp.text().await.unwrap());
        pdns
    }

    async fn delete_zone(&self) {
        let rsp = self.http.delete(format!("{}/{}", self.url, self.zone)).header("X-API-Key", &self.key).send().await;
        match rsp {
            Ok(rsp) if rsp.status().is_success() => {}
            other => eprintln!("could not delete zone {}: {other:?}", self.zone),
        }
    }

    /// Replaces the TXT RRset at `name` (no trailing dot) with `values`; none deletes it.
    async fn set_txt(&self, name: &str, values: &[String]) -> Result<(), String> {
        let rrset = if values.is_empty() {
            json!({"name": format!("{name}."), "type": "TXT", "changetype": "DELETE"})
        } else {
            let records: Vec<Value> =
                values.iter().map(|v| json!({"content": format!("\"{v}\""), "disabled": false})).collect();
            json!({"name": format!("{name}."), "type": "TXT", "ttl": 60, "changetype": "REPLACE", "records": records})
        };
        let rsp = self
            .http
            .patch(format!("{}/{}", self.url, self.zone))
            .header("X-API-Key", &self.key)
            .json(&json!({"rrsets": [rrset]}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match rsp.status().as_u16() {
            204 => Ok(()),
            status => Err(format!("PowerDNS answered {status}: {}", rsp.text().await.unwrap_or_default())),
        }
    }

    /// The TXT values at `name`, unquoted.
    async fn txt(&self, name: &str) -> Vec<String> {
        let rsp = self.http.get(format!("{}/{}", self.url, self.zone)).header("X-API-Key", &self.key).send().await;
        let zone: Value = rsp.unwrap().json().await.unwrap();
        let fqdn = format!("{name}.");
        zone["rrsets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["name"] == fqdn.as_str() && r["type"] == "TXT")
            .flat_map(|r| r["records"].as_array().unwrap().iter())
            .map(|r| r["content"].as_str().unwrap().trim_matches('"').to_owned())
            .collect()
    }
}

/// The test's `Dns01`: raw PowerDNS API calls, remembering the values it published per name.
struct PdnsDns01 {
    pdns: Arc<Pdns>,
    values: Mutex<HashMap<String, Vec<String>>>,
    /// The most values seen at one name at once (wildcard + apex need two).
    most_at_once: Mutex<usize>,
}

impl PdnsDns01 {
    fn new(pdns: Arc<Pdns>) -> Self {
        PdnsDns01 { pdns, values: Mutex::default(), most_at_once: Mutex::new(0) }
    }
}

#[async_trait::async_trait]
impl Dns01 for PdnsDns01 {
    async fn publish(&self, name: &str, value: &str) -> Result<(), String> {
        let values = {
            let mut all = self.values.lock().unwrap();
            let values = all.entry(name.to_owned()).or_default();
            values.push(value.to_owned());
            values.clone()
        };
        {
            let mut most = self.most_at_once.lock().unwrap();
            *most = (*most).max(values.len());
        }
        self.pdns.set_txt(name, &values).await
    }

    async fn clear(&self, name: &str) -> Result<(), String> {
        self.values.lock().unwrap().remove(name);
        self.pdns.set_txt(name, &[]).await
    }

    async fn wait_visible(&self, name: &str, value: &str) -> Result<(), String> {
        let served = self.pdns.txt(name).await;
        if served.iter().any(|v| v == value) { Ok(()) } else { Err(format!("{value} not among {served:?}")) }
    }
}

/// Fails every publish, as a PowerDNS that is down would; remembers what was cleared.
#[derive(Default)]
struct FailingDns01 {
    cleared: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Dns01 for FailingDns01 {
    async fn publish(&self, _name: &str, _value: &str) -> Result<(), String> {
        Err("PowerDNS API answered 503".to_owned())
    }

    async fn clear(&self, name: &str) -> Result<(), String> {
        self.cleared.lock().unwrap().push(name.to_owned());
        Ok(())
    }
}

/// Publishes nothing anywhere: the CA finds no record.
struct NowhereDns01;

#[async_trait::async_trait]
impl Dns01 for NowhereDns01 {
    async fn publish(&self, _name: &str, _value: &str) -> Result<(), String> {
        Ok(())
    }

    async fn clear(&self, _name: &str) -> Result<(), String> {
        Ok(())
    }
}

// --- certificate checks ------------------------------------------------------------------------

fn dns_names(chain_pem: &str) -> Vec<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let san = cert.subject_alternative_name().unwrap().expect("the leaf has a subjectAltName");
    let mut names: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(name) => Some((*name).to_owned()),
            _ => None,
        })
        .collect();
    names.sort();
    names
}

/// A real TLS handshake: a tokio-rustls server presenting the issued chain and key, a client
/// trusting only pebble's root and asking for `server_name`.
async fn handshake(chain_pem: &str, key_pem: &str, root_pem: &str, server_name: &str) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the issued key matches the certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(root_pem.as_bytes()).unwrap()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        if let Ok(mut tls) = acceptor.accept(tcp).await {
            let _ = tls.write_all(b"hello").await;
            let _ = tls.shutdown().await;
        }
    });
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
        let mut tls =
            tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp).await.map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.map_err(|e| e.to_string())?;
        if got == b"hello" { Ok(()) } else { Err(format!("read {got:?}")) }
    };
    let result = tokio::time::timeout(WAIT, connect).await.unwrap_or_else(|_| Err("handshake timed out".to_owned()));
    server.abort();
    result
}

/// Everything a caller can check about an issued certificate for `zone`.
async fn check_issued(issued: &acme::Issued, zone: &str, root_pem: &str) {
    let blocks = x509_parser::pem::Pem::iter_from_buffer(issued.cert_chain_pem.as_bytes()).count();
    assert!(blocks >= 2, "the chain has the leaf and pebble's intermediate, got {blocks} blocks");
    assert_eq!(dns_names(&issued.cert_chain_pem), vec![format!("*.{zone}"), zone.to_owned()]);
    assert!(issued.not_after > Utc::now() + TimeDelta::days(1), "not_after {}", issued.not_after);
    assert_eq!(acme::not_after(&issued.cert_chain_pem).unwrap(), issued.not_after);
    for name in [format!("app.{zone}"), zone.to_owned()] {
        handshake(&issued.cert_chain_pem, &issued.key_pem, root_pem, &name)
            .await
            .unwrap_or_else(|e| panic!("TLS to {name} with the issued certificate: {e}"));
    }
    let err = handshake(&issued.cert_chain_pem, &issued.key_pem, root_pem, &format!("a.b.{zone}")).await.unwrap_err();
    assert!(err.contains("NotValidForName") || err.contains("not valid for"), "two labels deep: {err}");
}

// --- tests -------------------------------------------------------------------------------------

#[tokio::test]
async fn issues_a_wildcard_certificate_then_again_with_the_restored_account() {
    let env = env();
    let zone = unique_zone("t");
    let pdns = Arc::new(Pdns::create_zone(&env, &zone).await);
    let body = {
        let pdns = pdns.clone();
        let zone = zone.clone();
        async move {
            let root = env.pebble_root().await;
            let challenge_name = format!("_acme-challenge.{zone}");
            let (acme, account_json) = Acme::connect(env.config(), None).await.unwrap();

            let dns = PdnsDns01::new(pdns.clone());
            let started = Instant::now();
            let issued = acme.issue_wildcard(&format!("{zone}."), &dns).await.unwrap();
            eprintln!("first issuance (new account): {:?}", started.elapsed());
            check_issued(&issued, &zone, &root).await;
            assert_eq!(*dns.most_at_once.lock().unwrap(), 2, "wildcard and apex values side by side");
            assert!(pdns.txt(&challenge_name).await.is_empty(), "the challenge TXT records are cleared");

            let (restored, json_again) = Acme::connect(env.config(), Some(&account_json)).await.unwrap();
            assert_eq!(restored.account_id(), acme.account_id());
            assert_eq!(json_again, account_json);
            let dns = PdnsDns01::new(pdns.clone());
            let started = Instant::now();
            let again = restored.issue_wildcard(&zone, &dns).await.unwrap();
            eprintln!("second issuance (restored account): {:?}", started.elapsed());
            check_issued(&again, &zone, &root).await;
            assert_ne!(again.key_pem, issued.key_pem, "each order gets a fresh key");
            assert!(pdns.txt(&challenge_name).await.is_empty(), "the challenge TXT records are cleared");

            // Stored credentials that do not fit are refused with what to do.
            let err = Acme::connect(env.config(), Some("{\"id\":")).await.unwrap_err();
            assert!(matches!(err, Error::AccountJson(_)), "{err}");
            let mut moved: Value = serde_json::from_str(&account_json).unwrap();
            moved["directory"] = json!("https://127.0.0.1:1/elsewhere");
            let err = Acme::connect(env.config(), Some(&moved.to_string())).await.unwrap_err();
            assert!(err.to_string().contains("registered at `https://127.0.0.1:1/elsewhere`"), "{err}");
        }
    };
    let outcome = tokio::spawn(body).await;
    pdns.delete_zone().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn a_failing_publish_names_the_step_and_still_clears() {
    let env = env();
    let zone = unique_zone("f");
    let (acme, _) = Acme::connect(env.config(), None).await.unwrap();
    let dns = FailingDns01::default();
    let err = acme.issue_wildcard(&zone, &dns).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Dns { step: "publishing", .. }), "{err:?}");
    assert!(message.contains(&format!("publishing TXT record `_acme-challenge.{zone}`")), "{message}");
    assert!(message.contains("PowerDNS API answered 503"), "{message}");
    assert_eq!(*dns.cleared.lock().unwrap(), vec![format!("_acme-challenge.{zone}")]);
}

#[tokio::test]
async fn a_zone_the_ca_cannot_resolve_fails_with_the_cas_reason() {
    let env = env();
    // Not a PowerDNS zone: pebble's lookup of the challenge is refused.
    let zone = unique_zone("n");
    let (acme, _) = Acme::connect(env.config(), None).await.unwrap();
    let err = acme.issue_wildcard(&zone, &NowhereDns01).await.unwrap_err();
    assert!(matches!(err, Error::ChallengeFailed { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&zone) && message.contains("delegated"), "{message}");
}

#[tokio::test]
async fn invalid_zones_and_trust_roots_are_refused_before_any_order() {
    let env = env();
    let (acme, _) = Acme::connect(env.config(), None).await.unwrap();
    let err = acme.issue_wildcard("localhost", &NowhereDns01).await.unwrap_err();
    assert!(matches!(err, Error::InvalidZone { .. }), "{err:?}");

    let config = AcmeConfig { ca_root_pem: Some("not a pem".to_owned()), ..env.config() };
    let err = Acme::connect(config, None).await.unwrap_err();
    assert!(matches!(err, Error::TrustRoots(_)), "{err:?}");
    // Pebble's HTTPS certificate is self-signed: the system's store does not know it.
    let config = AcmeConfig { ca_root_pem: None, ..env.config() };
    let err = Acme::connect(config, None).await.unwrap_err();
    assert!(matches!(err, Error::Ca { step: "registering an account", .. }), "{err:?}");
}

#[test]
fn needs_renewal_when_less_than_the_margin_is_left() {
    let now = Utc::now();
    let month = TimeDelta::days(30);
    assert!(!acme::needs_renewal(now + TimeDelta::days(90), now, month));
    assert!(!acme::needs_renewal(now + month + TimeDelta::seconds(1), now, month));
    assert!(!acme::needs_renewal(now + month, now, month), "exactly the margin left is still enough");
    assert!(acme::needs_renewal(now + month - TimeDelta::seconds(1), now, month));
    assert!(acme::needs_renewal(now + TimeDelta::hours(1), now, month));
    assert!(acme::needs_renewal(now - TimeDelta::days(1), now, month), "already expired");
}
