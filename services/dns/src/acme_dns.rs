//! DNS-01 challenges written into the zone the platform serves on PowerDNS.

use async_trait::async_trait;

pub struct PowerDnsChallenge {
    pub pdns: dnsops::PowerDns,
    /// The zone holding the challenge names (the delegated zone itself).
    pub zone: String,
}

#[async_trait]
impl acme::Dns01 for PowerDnsChallenge {
    async fn publish(&self, name: &str, value: &str) -> Result<(), String> {
        // The wildcard and the apex share one name: keep the values already there.
        let mut values = self.pdns.rrset(&self.zone, name, "TXT").await.map_err(|e| e.to_string())?;
        if !values.iter().any(|v| v == value) {
            values.push(value.to_owned());
        }
        self.pdns.set_rrset(&self.zone, name, "TXT", 60, &values).await.map_err(|e| e.to_string())
    }

    async fn clear(&self, name: &str) -> Result<(), String> {
        self.pdns.delete_rrset(&self.zone, name, "TXT").await.map_err(|e| e.to_string())
    }
}
