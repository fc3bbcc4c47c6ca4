//! DNS queries that verify a delegation, sent to one configured server.
//!
//! What [`Checker::ns`] sees depends on that server:
//! - a recursive resolver (production) follows the parent's delegation and returns the NS set the zone's own
//!   servers answer; when those servers do not serve the zone yet (lame delegation) it answers SERVFAIL, which
//!   is [`Error::Unavailable`];
//! - an authoritative server holding the zone (PowerDNS for an activated zone) returns the zone's apex NS set,
//!   whatever the parent delegates;
//! - an authoritative server holding only the parent (tests, pre-activation) answers with a referral, whose NS
//!   records are the delegation published in the parent; those are returned.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};

use crate::{Error, Result, normalize_zone};

/// Queries one resolver (`ip:port`) over UDP, retrying over TCP on truncation or error, without caching:
/// verification must see a record the moment it is published.
#[derive(Clone)]
pub struct Checker {
    resolver: TokioResolver,
    /// For error messages.
    addr: SocketAddr,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").field("resolver", &self.addr).finish()
    }
}

impl Checker {
    pub fn new(resolver: SocketAddr) -> Self {
        let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
            .into_iter()
            .map(|mut c| {
                c.port = resolver.port();
                c
            })
            .collect();
        let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(resolver.ip(), true, connections)]);
        let mut opts = ResolverOpts::default();
        // A zero-sized cache whose entries also expire at once: every call asks the server.
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        opts.try_tcp_on_error = true;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 1;
        let resolver_handle = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .expect("a resolver without TLS or DNSSEC settings builds");
        Self { resolver: resolver_handle, addr: resolver }
    }

    /// TXT values at `name` (each record's character-strings joined); none when the name or type is absent.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>> {
        let records = self.lookup(name, RecordType::TXT).await?;
        Ok(records
            .iter()
            .filter_map(|r| match r {
                RData::TXT(txt) => Some(
                    String::from_utf8_lossy(&txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect::<Vec<_>>())
                        .into_owned(),
                ),
                _ => None,
            })
            .collect())
    }

    /// Nameservers of `zone`, lowercase without trailing dot, sorted (see the module docs for what they are).
    pub async fn ns(&self, zone: &str) -> Result<Vec<String>> {
        let fqdn = fqdn(zone)?;
        let records = match self.resolver.lookup(fqdn.clone(), RecordType::NS).await {
            // A referral (no answer, the delegation's NS records in the authority section) counts as an answer
            // for an NS query; an authoritative answer may repeat the apex NS set there too.
            Ok(lookup) => lookup
                .answers()
                .iter()
                .chain(lookup.authorities())
                .map(|r| (r.name.clone(), r.data.clone()))
                .collect::<Vec<_>>(),
            Err(NetError::Dns(DnsError::NoRecordsFound(no))) => {
                no.ns.iter().flat_map(|ns| ns.iter()).map(|f| (f.ns.name.clone(), f.ns.data.clone())).collect()
            }
            Err(e) => return Err(self.error(zone, RecordType::NS, e)),
        };
        let mut hosts: Vec<String> = records
            .into_iter()
            .filter(|(owner, _)| *owner == fqdn) // Name equality ignores case
            .filter_map(|(_, data)| match data {
                RData::NS(ns) => Some(host(&ns.0)),
                _ => None,
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        Ok(hosts)
    }

    /// Addresses of `name`: its A and AAAA records (after CNAMEs), IPv4 first.
    pub async fn a(&self, name: &str) -> Result<Vec<IpAddr>> {
        let (v4, v6) = tokio::try_join!(self.lookup(name, RecordType::A), self.lookup(name, RecordType::AAAA))?;
        Ok(v4
            .iter()
            .chain(v6.iter())
            .filter_map(|r| match r {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect())
    }

    /// Answer data of type `rtype` (CNAMEs followed); empty on NXDOMAIN or no data.
    async fn lookup(&self, name: &str, rtype: RecordType) -> Result<Vec<RData>> {
        match self.resolver.lookup(fqdn(name)?, rtype).await {
            Ok(lookup) => {
                Ok(lookup.answers().iter().filter(|r| r.record_type() == rtype).map(|r| r.data.clone()).collect())
            }
            Err(e) if e.is_no_records_found() => Ok(vec![]),
            Err(e) => Err(self.error(name, rtype, e)),
        }
    }

    fn error(&self, name: &str, rtype: RecordType, e: NetError) -> Error {
        let reason = match &e {
            NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => {
                "it answered SERVFAIL (the name's nameservers may be unreachable or not serving it yet)".to_owned()
            }
            NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => {
                "it answered REFUSED (it neither serves nor recurses for this name: configure a recursive resolver)"
                    .to_owned()
            }
            NetError::Timeout => "it did not answer in time".to_owned(),
            other => other.to_string(),
        };
        Error::Unavailable(format!("DNS query {rtype} {name} to {} failed: {reason}; retry later", self.addr))
    }
}

fn fqdn(name: &str) -> Result<Name> {
    let trimmed = name.trim().trim_end_matches('.');
    Name::from_ascii(format!("{trimmed}."))
        .map_err(|e| Error::Invalid(format!("`{name}` is not a valid DNS name: {e}")))
}

fn host(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

/// The ownership TXT name users are told first: `_dp-verify.<zone>`, under the zone itself.
/// Seen only while the parent still answers for it; [`verification_name`] is the sibling that
/// stays visible whatever the order of publishing.
pub fn txt_name(zone: &str) -> String {
    format!("_dp-verify.{zone}")
}

/// Where the ownership TXT record of `zone` lives. For a subdomain zone (`apps.example.com`) it is
/// `apps._dp-verify.example.com`: a sibling in the parent zone, next to the delegation NS records. The
/// obvious `_dp-verify.apps.example.com` would sit below the zone cut, so once the NS records exist the parent's
/// servers answer for it with a referral and the TXT is never seen. A two-label zone (`example.com`) has no
/// parent the user can write to, so its record is `_dp-verify.example.com`, published at the domain's current
/// DNS host and checked before its nameservers are switched at the registrar.
pub fn verification_name(zone: &str) -> Result<String> {
    let zone = normalize_zone(zone)?;
    let name = match zone.split_once('.') {
        Some((label, parent)) if parent.contains('.') => format!("{label}._dp-verify.{parent}"),
        _ => format!("_dp-verify.{zone}"),
    };
    if name.len() > 253 {
        return Err(Error::Invalid(format!(
            "zone `{zone}` is too long for its verification record `{name}` (over 253 characters)"
        )));
    }
    Ok(name)
}

/// What verification of a delegated zone found: the TXT record at [`verification_name`] must contain the
/// expected token, and the zone's NS set must include every platform nameserver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub txt_ok: bool,
    pub ns_ok: bool,
    /// TXT values found at `txt_name`.
    pub found_txt: Vec<String>,
    /// NS hosts found for the zone, lowercase, no trailing dot.
    pub found_ns: Vec<String>,
    /// The normalised zone.
    pub zone: String,
    /// Where the TXT record was looked up.
    pub txt_name: String,
    pub expected_txt: String,
    /// The platform nameservers that must be delegated to, normalised.
    pub platform_ns: Vec<String>,
}

impl Verification {
    pub fn is_ok(&self) -> bool {
        self.txt_ok && self.ns_ok
    }

    /// One sentence per unmet condition, saying what to publish; empty when verified.
    pub fn missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.txt_ok {
            let found = if self.found_txt.is_empty() {
                "none is published yet".to_owned()
            } else {
                format!("found {}", list(&self.found_txt))
            };
            out.push(format!(
                "Publish a TXT record `{}` with the value `{}` ({found}).",
                self.txt_name, self.expected_txt
            ));
        }
        if !self.ns_ok {
            let absent: Vec<String> =
                self.platform_ns.iter().filter(|ns| !self.found_ns.contains(ns)).cloned().collect();
            let found = if self.found_ns.is_empty() {
                "no NS records found".to_owned()
            } else {
                format!("found {}", list(&self.found_ns))
            };
            let (zone, all, absent) = (&self.zone, list(&self.platform_ns), list(&absent));
            out.push(format!(
                "Delegate `{zone}` by publishing NS records for it in its parent zone pointing to {all} \
                 (missing {absent}; {found})."
            ));
        }
        out
    }
}

fn list(items: &[String]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

/// Checks that `zone` is delegated to the platform: the TXT record at [`verification_name`] holds
/// `expected_txt`, and the zone's NS set (as [`Checker::ns`] sees it) includes all `platform_ns`.
pub async fn verify_delegation(
    checker: &Checker,
    zone: &str,
    expected_txt: &str,
    platform_ns: &[String],
) -> Result<Verification> {
    let zone = normalize_zone(zone)?;
    if platform_ns.is_empty() {
        return Err(Error::Invalid("no platform nameservers given to verify the delegation against".into()));
    }
    if expected_txt.is_empty() {
        return Err(Error::Invalid("the expected verification token is empty".into()));
    }
    let mut platform_ns: Vec<String> =
        platform_ns.iter().map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase()).collect();
    platform_ns.sort();
    platform_ns.dedup();
    let txt_name = verification_name(&zone)?;
    let (found_txt, found_ns) = tokio::try_join!(checker.txt(&txt_name), checker.ns(&zone))?;
    Ok(Verification {
        txt_ok: found_txt.iter().any(|t| t == expected_txt),
        ns_ok: platform_ns.iter().all(|ns| found_ns.contains(ns)),
        found_txt,
        found_ns,
        zone,
        txt_name,
        expected_txt: expected_txt.to_owned(),
        platform_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_names() {
        assert_eq!(verification_name("Apps.Example.com.").unwrap(), "apps._dp-verify.example.com");
        assert_eq!(verification_name("a.b.example.com").unwrap(), "a._dp-verify.b.example.com");
        assert_eq!(verification_name("example.com").unwrap(), "_dp-verify.example.com");
    }
}
