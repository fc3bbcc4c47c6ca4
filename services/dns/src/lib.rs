//! The dns service: verifies delegated zones, serves them on PowerDNS, obtains their wildcard
//! certificates over ACME DNS-01, and publishes custom domains.
//!
//! - Verification: each pending zone is checked (its `_dp-verify` TXT and its NS delegation,
//!   through the configured resolver) with back-off until verified or expired.
//! - Durable consumer `dns` (`zone.*`, `domain.*`), idempotent: `ZoneVerified` creates the zone in
//!   PowerDNS with a wildcard record to the ingress and records `ZoneActivated` (once: the
//!   aggregate decides); `ZoneActivated` orders the certificate unless one is recorded;
//!   custom domains get their records.
//! - Renewal: certificates with less than 30 days left are ordered again.

mod acme_dns;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Bus, Delivery};
use chrono::Utc;
use cqrs_es::AggregateError;
use domain::{CustomDomain, Rejection, Zone, ZoneCommand, ZoneStatus};
use events::{AnyEvent, ClaimKind, Decoded, DomainEvent, ZoneEvent};
use futures::StreamExt;
use store::{Commands, Store};
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Config {
    pub bus: Bus,
    pub store: Store,
    pub commands: Arc<Commands>,
    pub keyring: vault::Keyring,
    pub pdns: dnsops::PowerDns,
    pub checker: dnsops::Checker,
    /// The platform's name servers (what zones are delegated to).
    pub nameservers: Vec<String>,
    /// Where custom domains point: the router's public addresses.
    pub ingress: Vec<IpAddr>,
    /// The ACME CA, when certificates are wanted.
    pub acme: Option<acme::AcmeConfig>,
    /// Longest pause between two verification attempts of a pending zone.
    pub max_check_interval: Duration,
    /// The platform's own base domain, when its DNS is served here too: it becomes a zone owned
    /// by the platform (no delegation check: the operator configured it), with its wildcard
    /// certificate, so `https://<service>.<base-domain>` works.
    pub base_domain: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config").field("nameservers", &self.nameservers).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] bus::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// The owner of the platform's own zones (the base domain): no user can hold it.
pub fn platform_owner() -> events::UserId {
    "usr_00000000000000000000000001".parse().expect("a valid id")
}

struct Check {
    txt_ok: bool,
    ns_ok: bool,
    missing: Vec<String>,
}

/// A certificate this close to its end is renewed.
const RENEW_BEFORE_DAYS: i64 = 30;

#[derive(Clone)]
struct Dns {
    config: Config,
    /// Zones with a verification loop running.
    checking: Arc<Mutex<HashSet<String>>>,
    /// Zones with a certificate order in flight: one order at a time per zone.
    certifying: Arc<Mutex<HashSet<String>>>,
    shutdown: CancellationToken,
    acme: Arc<tokio::sync::OnceCell<Option<acme::Acme>>>,
}

/// Runs until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    config.bus.ping().await?;
    let dns = Dns {
        config: config.clone(),
        checking: Arc::default(),
        certifying: Arc::default(),
        shutdown: shutdown.clone(),
        acme: Arc::default(),
    };
    for zone in config.store.pending_zones().await? {
        dns.watch(zone.zone_id);
    }
    if let Some(base) = &config.base_domain
        && let Err(e) = dns.adopt_base_domain(base).await
    {
        tracing::warn!(zone = %base, error = %e, "the base domain's zone was not set up; retrying at the next start");
    }
    // Work a stopped process left half done: verified zones to activate, active ones to certify.
    tokio::spawn(dns.clone().resume());
    tokio::spawn(dns.clone().renewals());
    let mut batches = config.bus.batches_until("EVENTS", "dns", 16, shutdown.clone()).await?;
    tracing::info!("dns ready");
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        for delivery in batch {
            tokio::select! {
                _ = dns.handle(&delivery) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }
    Ok(())
}

impl Dns {
    async fn handle(&self, delivery: &Delivery) {
        let result = match Decoded::from_slice(delivery.payload()) {
            Ok(Decoded { event: AnyEvent::Zone(e), id, .. }) => self.zone_event(&id.aggregate_id, e, delivery).await,
            Ok(Decoded { event: AnyEvent::Domain(e), id, .. }) => self.domain_event(&id.aggregate_id, e).await,
            _ => Ok(()),
        };
        let _ = match result {
            Ok(()) => delivery.ack().await,
            Err(e) => {
                tracing::warn!(error = %e, "dns: will retry");
                delivery.retry_after(Duration::from_secs(3)).await
            }
        };
    }

    async fn load_zone(&self, id: &str) -> Result<Zone, String> {
        self.config.commands.load(id).await.map_err(|e| e.to_string())
    }

    async fn execute(&self, id: &str, command: ZoneCommand) -> Result<(), String> {
        match self.config.commands.zones.execute(id, command).await {
            Ok(()) | Err(AggregateError::UserError(Rejection::NotFound { .. })) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn zone_event(&self, id: &str, event: ZoneEvent, delivery: &Delivery) -> Result<(), String> {
        match event {
            ZoneEvent::ZoneDelegationRequested { owner, .. } => {
                // The platform's own zone is verified by configuration, not by DNS.
                if owner != platform_owner() {
                    self.watch(id.to_owned());
                }
                Ok(())
            }
            ZoneEvent::ZoneVerified { .. } => self.activate(id).await,
            ZoneEvent::ZoneActivated { .. } => {
                let zone = self.load_zone(id).await?;
                if zone.certificate.is_none() {
                    let progress = async {
                        loop {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            let _ = delivery.progress().await;
                        }
                    };
                    tokio::select! {
                        r = self.certify(id, &zone) => r?,
                        _ = progress => {}
                    }
                }
                Ok(())
            }
            ZoneEvent::ZoneExpired { .. } => {
                // The name is free for anyone again.
                let zone = self.load_zone(id).await?;
                if let Some(spec) = zone.spec {
                    let release = domain::ClaimCommand::Release { owner: spec.owner, now: Utc::now() };
                    let _ = self.config.commands.claims.execute(&ClaimKind::Zone.claim_id(&spec.zone), release).await;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Serves the zone on PowerDNS (SOA, NS, a wildcard to the ingress), then records it active.
    async fn activate(&self, id: &str) -> Result<(), String> {
        let zone = self.load_zone(id).await?;
        let Some(spec) = zone.spec.as_ref().filter(|_| zone.status == ZoneStatus::Verified) else { return Ok(()) };
        let pdns = &self.config.pdns;
        pdns.ensure_zone(&spec.zone, &self.config.nameservers).await.map_err(|e| e.to_string())?;
        for (rtype, ips) in self.ingress_by_type() {
            pdns.set_rrset(&spec.zone, &format!("*.{}", spec.zone), rtype, 300, &ips)
                .await
                .map_err(|e| e.to_string())?;
            pdns.set_rrset(&spec.zone, &spec.zone, rtype, 300, &ips).await.map_err(|e| e.to_string())?;
        }
        self.execute(id, ZoneCommand::Activate { now: Utc::now() }).await
    }

    fn ingress_by_type(&self) -> Vec<(&'static str, Vec<String>)> {
        let v4: Vec<String> = self.config.ingress.iter().filter(|ip| ip.is_ipv4()).map(|ip| ip.to_string()).collect();
        let v6: Vec<String> = self.config.ingress.iter().filter(|ip| ip.is_ipv6()).map(|ip| ip.to_string()).collect();
        [("A", v4), ("AAAA", v6)].into_iter().filter(|(_, ips)| !ips.is_empty()).collect()
    }

    /// Records the base domain as a verified zone of the platform (once); activation and the
    /// certificate follow through the ordinary events.
    async fn adopt_base_domain(&self, base: &str) -> Result<(), String> {
        let zone = dnsops::normalize_zone(base).map_err(|e| e.to_string())?;
        let owner = platform_owner();
        let claim_id = ClaimKind::Zone.claim_id(&zone);
        let claim: domain::Claim = self.config.commands.load(&claim_id).await.map_err(|e| e.to_string())?;
        let zone_id: events::ZoneId = match claim.holder {
            Some(h) if h.owner == owner => h.target.parse()?,
            Some(_) => return Err(format!("`{zone}` is delegated by a user; the base domain cannot be served")),
            None => {
                let id = events::ZoneId::new();
                let cmd = domain::ClaimCommand::Claim {
                    kind: ClaimKind::Zone,
                    name: zone.clone(),
                    owner,
                    target: id.to_string(),
                    now: Utc::now(),
                };
                self.config.commands.claims.execute(&claim_id, cmd).await.map_err(|e| e.to_string())?;
                id
            }
        };
        let id = zone_id.to_string();
        let spec = domain::ZoneSpec {
            zone_id,
            owner,
            zone,
            txt_value: String::new(),
            expires_at: Utc::now() + chrono::Duration::days(36500),
        };
        self.execute(&id, ZoneCommand::Request { spec, now: Utc::now() }).await?;
        self.execute(&id, ZoneCommand::ProveOwnership { now: Utc::now() }).await?;
        self.execute(&id, ZoneCommand::Verify { now: Utc::now() }).await
    }

    async fn resume(self) {
        let Ok(zones) = self.config.store.zones_to_finish().await else { return };
        for row in zones {
            let result = match row.status.as_str() {
                "verified" => self.activate(&row.zone_id).await,
                _ => match self.load_zone(&row.zone_id).await {
                    Ok(zone) if zone.certificate.is_none() => self.certify(&row.zone_id, &zone).await,
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = result {
                tracing::warn!(zone = %row.zone, error = %e, "resuming a zone failed; its event will be retried");
            }
        }
    }

    /// Orders the zone's wildcard certificate and records it (the key sealed), unless an order
    /// for it is already running here.
    async fn certify(&self, id: &str, zone: &Zone) -> Result<(), String> {
        if !self.certifying.lock().expect("not poisoned").insert(id.to_owned()) {
            return Ok(());
        }
        let result = self.certify_now(id, zone).await;
        self.certifying.lock().expect("not poisoned").remove(id);
        result
    }

    async fn certify_now(&self, id: &str, zone: &Zone) -> Result<(), String> {
        let Some(spec) = &zone.spec else { return Ok(()) };
        let Some(acme) = self.acme().await? else { return Ok(()) };
        let dns01 = acme_dns::PowerDnsChallenge { pdns: self.config.pdns.clone(), zone: spec.zone.clone() };
        let issued = acme.issue_wildcard(&spec.zone, &dns01).await.map_err(|e| e.to_string())?;
        let key = self.config.keyring.seal(&issued.key_pem, &vault::zone_context(id));
        let cmd = ZoneCommand::Certify {
            chain_pem: issued.cert_chain_pem,
            key,
            not_after: issued.not_after,
            now: Utc::now(),
        };
        self.execute(id, cmd).await?;
        tracing::info!(zone = %spec.zone, not_after = %issued.not_after, "certificate issued");
        Ok(())
    }

    /// The ACME account, made once (and kept for the process: its key is in memory only).
    async fn acme(&self) -> Result<Option<&acme::Acme>, String> {
        let cell = self
            .acme
            .get_or_try_init(|| async {
                match &self.config.acme {
                    None => Ok(None),
                    Some(c) => {
                        acme::Acme::connect(c.clone(), None).await.map(|(a, _)| Some(a)).map_err(|e| e.to_string())
                    }
                }
            })
            .await?;
        Ok(cell.as_ref())
    }

    async fn domain_event(&self, id: &str, event: DomainEvent) -> Result<(), String> {
        let d: CustomDomain = self.config.commands.load(id).await.map_err(|e| e.to_string())?;
        let Some(spec) = d.spec else { return Ok(()) };
        let zone = self.load_zone(&spec.zone.to_string()).await?;
        let Some(zone_name) = zone.spec.map(|z| z.zone) else { return Ok(()) };
        let pdns = &self.config.pdns;
        match event {
            DomainEvent::CustomDomainAdded { .. } if !d.removed => {
                for (rtype, ips) in self.ingress_by_type() {
                    pdns.set_rrset(&zone_name, &spec.domain, rtype, 300, &ips).await.map_err(|e| e.to_string())?;
                }
            }
            DomainEvent::CustomDomainRemoved { .. } => {
                // The wildcard must not keep answering for a removed name: an explicit empty
                // answer would need a record; removing ours is what "gone" means here.
                for (rtype, _) in self.ingress_by_type() {
                    pdns.delete_rrset(&zone_name, &spec.domain, rtype).await.map_err(|e| e.to_string())?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Starts checking a pending zone, unless a check of it is running.
    fn watch(&self, id: String) {
        if !self.checking.lock().expect("not poisoned").insert(id.clone()) {
            return;
        }
        let dns = self.clone();
        tokio::spawn(async move {
            let result = dns.check_until_settled(&id).await;
            if let Err(e) = result {
                tracing::warn!(zone = %id, error = %e, "zone verification stopped");
            }
            dns.checking.lock().expect("not poisoned").remove(&id);
        });
    }

    /// Verifies with back-off (1 s doubling up to the configured maximum) until the zone is
    /// verified or expired.
    async fn check_until_settled(&self, id: &str) -> Result<(), String> {
        let mut pause = Duration::from_secs(1);
        loop {
            let zone = self.load_zone(id).await?;
            let Some(spec) = zone.spec.clone().filter(|_| zone.status == ZoneStatus::Pending) else { return Ok(()) };
            if Utc::now() >= spec.expires_at {
                return self.execute(id, ZoneCommand::Expire { now: Utc::now() }).await;
            }
            match self.check(&zone, &spec).await {
                Ok(Check { txt_ok, ns_ok, missing }) => {
                    if txt_ok && !zone.txt_seen {
                        self.execute(id, ZoneCommand::ProveOwnership { now: Utc::now() }).await?;
                    }
                    if txt_ok && ns_ok {
                        return self.execute(id, ZoneCommand::Verify { now: Utc::now() }).await;
                    }
                    self.execute(id, ZoneCommand::Checked { missing, now: Utc::now() }).await?;
                }
                Err(e) => tracing::debug!(zone = %spec.zone, error = %e, "verification query failed"),
            }
            let until_expiry = (spec.expires_at - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(pause.min(until_expiry)) => {}
                _ = self.shutdown.cancelled() => return Ok(()),
            }
            pause = (pause * 2).min(self.config.max_check_interval);
        }
    }

    /// One verification. The TXT is accepted at `_dp-verify.<zone>` (what users are told: it
    /// must be seen before the NS delegation hides it, and once seen it is remembered) or at the
    /// sibling `<label>._dp-verify.<parent>`, which stays visible in any order.
    async fn check(&self, zone: &Zone, spec: &domain::ZoneSpec) -> Result<Check, String> {
        let checker = &self.config.checker;
        let v = dnsops::verify_delegation(checker, &spec.zone, &spec.txt_value, &self.config.nameservers)
            .await
            .map_err(|e| e.to_string())?;
        let primary = dnsops::txt_name(&spec.zone);
        // Once seen, the TXT need not be looked up again (it may be hidden by the NS records now).
        let at_primary =
            if zone.txt_seen || v.txt_ok { Vec::new() } else { checker.txt(&primary).await.unwrap_or_default() };
        let txt_ok = zone.txt_seen || v.txt_ok || at_primary.contains(&spec.txt_value);
        let mut missing = Vec::new();
        if !txt_ok {
            let found: Vec<&String> = at_primary.iter().chain(&v.found_txt).collect();
            let found = if found.is_empty() {
                "none is visible yet".to_owned()
            } else {
                format!("found {}", found.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "))
            };
            missing.push(format!(
                "Publish a TXT record `{primary}` with the value `{}` in the parent zone ({found}); publish it before the NS records, which hide it once they exist (or publish it at `{}`, which works in any order).",
                spec.txt_value, v.txt_name
            ));
        }
        if !v.ns_ok {
            let found = if v.found_ns.is_empty() { "none yet".to_owned() } else { v.found_ns.join(", ") };
            missing.push(format!(
                "Delegate `{}` with NS records in the parent zone to {} (found: {found}).",
                spec.zone,
                self.config.nameservers.join(", ")
            ));
        }
        Ok(Check { txt_ok, ns_ok: v.ns_ok, missing })
    }

    /// Renews certificates that near their end, hourly.
    async fn renewals(self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = self.shutdown.cancelled() => return,
            }
            let Ok(zones) = self.config.store.active_zones().await else { continue };
            for row in zones {
                let Ok(zone) = self.load_zone(&row.zone_id).await else { continue };
                let due = zone.certificate.as_ref().is_none_or(|c| {
                    acme::needs_renewal(c.not_after, Utc::now(), chrono::Duration::days(RENEW_BEFORE_DAYS))
                });
                if due && let Err(e) = self.certify(&row.zone_id, &zone).await {
                    tracing::warn!(zone = %row.zone, error = %e, "certificate renewal failed; retrying next hour");
                }
            }
        }
    }
}
