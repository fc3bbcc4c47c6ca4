//! DNS operations for delegated zones: the PowerDNS HTTP API client that serves them ([`PowerDns`]) and the
//! DNS queries that verify a user's delegation ([`Checker`], [`verify_delegation`]).
//!
//! Architecture invariant: this crate knows nothing of events, the bus or the store. It speaks HTTP to one
//! PowerDNS API and DNS to one configured resolver, nothing else.

mod check;
mod pdns;

pub use check::{Checker, Verification, txt_name, verification_name, verify_delegation};
pub use pdns::PowerDns;

/// Errors, sorted by what the caller must do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is wrong (a zone or record name, a type, an empty list): fix it, retrying will not help.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// PowerDNS refused the request (4xx other than a handled 404/409); `message` says why.
    #[error("PowerDNS API error {status}: {message}")]
    Api { status: u16, message: String },
    /// PowerDNS or the resolver could not be reached, timed out or failed (5xx, SERVFAIL): retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Normalises a zone name as users type it: lowercase, no trailing dot, letters/digits/hyphens labels of 1-63
/// characters (no leading or trailing hyphen), at most 253 characters and at least two labels.
pub fn normalize_zone(raw: &str) -> Result<String> {
    let zone = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    if zone.is_empty() {
        return Err(Error::Invalid("the zone name is empty: give a domain such as apps.example.com".into()));
    }
    if zone.len() > 253 {
        return Err(Error::Invalid(format!("zone `{raw}` is {} characters long; at most 253 are allowed", zone.len())));
    }
    let labels: Vec<&str> = zone.split('.').collect();
    if labels.len() < 2 {
        return Err(Error::Invalid(format!(
            "zone `{raw}` has a single label: give a domain with at least two, such as apps.example.com"
        )));
    }
    for label in &labels {
        check_label(raw, label, false)?;
    }
    Ok(zone)
}

/// Checks one label: LDH (plus `_` when `underscore`), 1-63 characters, no hyphen at either end.
fn check_label(raw: &str, label: &str, underscore: bool) -> Result<()> {
    if label.is_empty() {
        return Err(Error::Invalid(format!("`{raw}` contains an empty label (two dots in a row or a leading dot)")));
    }
    if label.len() > 63 {
        return Err(Error::Invalid(format!(
            "label `{label}` in `{raw}` is {} characters long; at most 63 are allowed",
            label.len()
        )));
    }
    if let Some(c) = label.chars().find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || (underscore && c == '_'))) {
        return Err(Error::Invalid(format!(
            "label `{label}` in `{raw}` contains `{c}`: only letters, digits and hyphens are allowed{}",
            if underscore { " (and underscores)" } else { "" }
        )));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(Error::Invalid(format!("label `{label}` in `{raw}` starts or ends with a hyphen")));
    }
    Ok(())
}

/// Normalises a record name below `zone` (already normalised): absolute when it ends with a dot or with the zone,
/// otherwise relative to it (`@` or empty is the apex). Allows `_` labels and a leading `*` wildcard label.
/// Returns the absolute name without trailing dot.
fn record_name(zone: &str, name: &str) -> Result<String> {
    let lower = name.trim().to_ascii_lowercase();
    let absolute = if lower.is_empty() || lower == "@" {
        zone.to_owned()
    } else if let Some(stripped) = lower.strip_suffix('.') {
        stripped.to_owned()
    } else if lower == zone || lower.ends_with(&format!(".{zone}")) {
        lower
    } else {
        format!("{lower}.{zone}")
    };
    if absolute != zone && !absolute.ends_with(&format!(".{zone}")) {
        return Err(Error::Invalid(format!("record name `{name}` is outside zone `{zone}`")));
    }
    if absolute.len() > 253 {
        return Err(Error::Invalid(format!("record name `{name}` is longer than 253 characters")));
    }
    for (i, label) in absolute.split('.').enumerate() {
        if i == 0 && label == "*" {
            continue;
        }
        check_label(name, label, true)?;
    }
    Ok(absolute)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names() {
        let z = "apps.example.com";
        assert_eq!(record_name(z, "@").unwrap(), z);
        assert_eq!(record_name(z, "").unwrap(), z);
        assert_eq!(record_name(z, "www").unwrap(), "www.apps.example.com");
        assert_eq!(record_name(z, "WWW.apps.example.com").unwrap(), "www.apps.example.com");
        assert_eq!(record_name(z, "apps.example.com.").unwrap(), z);
        assert_eq!(record_name(z, "*").unwrap(), "*.apps.example.com");
        assert_eq!(record_name(z, "_acme-challenge.x").unwrap(), "_acme-challenge.x.apps.example.com");
        assert!(matches!(record_name(z, "other.com."), Err(Error::Invalid(_))));
        assert!(matches!(record_name(z, "a.*"), Err(Error::Invalid(_))));
        assert!(matches!(record_name(z, "a..b"), Err(Error::Invalid(_))));
    }
}
