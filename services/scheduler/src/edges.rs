//! What the scheduler knows of its services' names beyond their own host: their custom domains
//! and the zone certificates that cover names. The router learns the same through `Routes` and
//! `Certs`; runtimes with their own ingress get it as an [`Edge`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use events::ServiceId;

use crate::driver::{Edge, ZoneCert};

#[derive(Debug, Default)]
pub(crate) struct Edges {
    /// Custom domains by service.
    domains: HashMap<ServiceId, BTreeSet<String>>,
    /// Each active zone's certificate, by zone name (a renewal replaces it).
    certs: BTreeMap<String, ZoneCert>,
}

impl Edges {
    pub(crate) fn add_domain(&mut self, service: ServiceId, domain: String) {
        self.domains.entry(service).or_default().insert(domain);
    }

    pub(crate) fn remove_domain(&mut self, service: ServiceId, domain: &str) {
        if let Some(set) = self.domains.get_mut(&service) {
            set.remove(domain);
        }
    }

    /// The service's domains, forgotten (it was deleted).
    pub(crate) fn forget(&mut self, service: ServiceId) -> BTreeSet<String> {
        self.domains.remove(&service).unwrap_or_default()
    }

    pub(crate) fn domains(&self, service: ServiceId) -> BTreeSet<String> {
        self.domains.get(&service).cloned().unwrap_or_default()
    }

    pub(crate) fn set_cert(&mut self, cert: ZoneCert) {
        self.certs.insert(cert.zone.clone(), cert);
    }

    /// The service's domains and every certificate covering one of them or its `host`. The base
    /// domain's certificate (when the platform certifies it) covers every service's host, so it
    /// reaches every service's runtime: a runtime with its own ingress must serve it from the
    /// controller, once, and never copy it next to a tenant's app (the Kubernetes driver makes it
    /// the ingress controller's default certificate).
    pub(crate) fn edge(&self, service: ServiceId, host: &str) -> Edge {
        let domains: Vec<String> = self.domains(service).into_iter().collect();
        let certs =
            self.certs.values().filter(|c| c.covers(host) || domains.iter().any(|d| c.covers(d))).cloned().collect();
        Edge { domains, certs }
    }

    /// Whether `cert` covers the service's `host` or one of its domains: whether its running
    /// deployment must hear of it.
    pub(crate) fn concerns(&self, service: ServiceId, host: &str, cert: &ZoneCert) -> bool {
        cert.covers(host) || self.domains.get(&service).is_some_and(|d| d.iter().any(|d| cert.covers(d)))
    }
}

#[cfg(test)]
mod tests {
    use events::ZoneId;

    use super::*;

    fn cert(zone: &str, serial: &str) -> ZoneCert {
        ZoneCert { zone_id: ZoneId::new(), zone: zone.into(), chain_pem: serial.into(), key_pem: "key".into() }
    }

    #[test]
    fn a_service_gets_its_domains_and_the_certificates_covering_its_names_only() {
        let (shop, other) = (ServiceId::new(), ServiceId::new());
        let mut edges = Edges::default();
        edges.add_domain(shop, "www.shop.example.com".into());
        edges.add_domain(shop, "api.example.net".into());
        edges.add_domain(other, "other.example.org".into());
        for zone in ["shop.example.com", "example.net", "apps.example.test", "example.org", "unrelated.test"] {
            edges.set_cert(cert(zone, "1"));
        }
        let edge = edges.edge(shop, "shop.apps.example.test");
        assert_eq!(edge.domains, ["api.example.net", "www.shop.example.com"]);
        let zones: Vec<_> = edge.certs.iter().map(|c| c.zone.as_str()).collect();
        assert_eq!(zones, ["apps.example.test", "example.net", "shop.example.com"]);

        // A renewal replaces the zone's certificate; a removed domain takes its certificate along.
        edges.set_cert(cert("example.net", "2"));
        edges.remove_domain(shop, "www.shop.example.com");
        let edge = edges.edge(shop, "shop.apps.example.test");
        assert_eq!(edge.domains, ["api.example.net"]);
        let certs: Vec<_> = edge.certs.iter().map(|c| (c.zone.as_str(), c.chain_pem.as_str())).collect();
        assert_eq!(certs, [("apps.example.test", "1"), ("example.net", "2")]);

        assert!(edges.concerns(shop, "shop.apps.example.test", &cert("example.net", "3")));
        assert!(edges.concerns(shop, "shop.apps.example.test", &cert("apps.example.test", "3")));
        assert!(!edges.concerns(shop, "shop.apps.example.test", &cert("example.org", "3")));
        assert!(edges.concerns(other, "other.apps.example.test", &cert("example.org", "3")));

        assert_eq!(edges.forget(shop).len(), 1);
        assert_eq!(edges.edge(shop, "nothing.test"), Edge::default());
    }
}
