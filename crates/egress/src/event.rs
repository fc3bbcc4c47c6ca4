//! What the proxy reports: every connection it opens and every request it refuses, for the build log.

use std::fmt;
use std::net::IpAddr;

use http::StatusCode;

/// The setting the builds' allowlist comes from, quoted in refusals so an agent (or its operator) knows what
/// to change.
pub const ALLOW_SETTING: &str = "DEPLOY_MCP_BUILD_EGRESS_ALLOW";
/// The setting the apps' allowlist comes from (when apps reach out through this proxy), quoted likewise.
pub const APP_ALLOW_SETTING: &str = "DEPLOY_MCP_APP_EGRESS_ALLOW";

/// One thing the proxy did for, or refused to, a sandbox. `Display` gives the line for the build log (without
/// a prefix: the log writer adds `egress: `).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection to an upstream was opened: a `CONNECT` tunnel, or a new upstream connection for
    /// plain-HTTP forwarding or a mirror (reused connections are not reported again).
    Allowed { host: String, port: u16, address: IpAddr, how: Via },
    /// A request was answered with an error before anything was sent upstream.
    Refused { host: String, port: u16, reason: Refusal },
    /// The policy allowed the destination, but it could not be reached (answered 502).
    Unreachable { host: String, port: u16, how: Via, reason: String },
}

/// How a sandbox reached an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A `CONNECT` tunnel (HTTPS, spliced as bytes).
    Connect,
    /// A plain-HTTP request in absolute form (`GET http://host/path`), forwarded.
    Http,
    /// The reverse path `/mirror/<name>/…` to the named mirror.
    Mirror(String),
}

/// Why a request was refused. Each names what the agent can change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The host matches no allow rule (and is no mirror's origin).
    NotAllowed,
    /// The host is allowed, but not on this port.
    PortNotAllowed,
    /// The destination is an IP address; only allowlisted names (and mirror origins) are reachable.
    AddressLiteral,
    /// The allowed name resolved only to addresses that are not public (this is the first of them).
    PrivateAddress(IpAddr),
    /// The name did not resolve. Not a policy decision: answered 502 (see [`Refusal::is_policy`]).
    ResolveFailed(String),
    /// `/mirror/<name>/` names no configured mirror (answered 404).
    UnknownMirror(String),
    /// The request could not be understood (answered 400).
    BadRequest(String),
}

impl Refusal {
    /// The status the sandbox is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::NotAllowed | Refusal::PortNotAllowed | Refusal::AddressLiteral | Refusal::PrivateAddress(_) => {
                StatusCode::FORBIDDEN
            }
            Refusal::ResolveFailed(_) => StatusCode::BAD_GATEWAY,
            Refusal::UnknownMirror(_) => StatusCode::NOT_FOUND,
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// Whether the egress policy itself refused (a destination the build is not allowed to reach), as
    /// opposed to a request that was malformed or a name that did not resolve. A build that failed after a
    /// policy refusal failed because of the allowlist.
    pub fn is_policy(&self) -> bool {
        self.status() == StatusCode::FORBIDDEN
    }
}

impl fmt::Display for Refusal {
    /// Why, and what to change, without the destination (the event names it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAllowed => write!(
                f,
                "not in the egress allowlist ({ALLOW_SETTING} for builds, {APP_ALLOW_SETTING} for apps); only \
                 package registries and hosts the operator allowed are reachable"
            ),
            Refusal::PortNotAllowed => write!(
                f,
                "the egress allowlist ({ALLOW_SETTING} for builds, {APP_ALLOW_SETTING} for apps) allows this host on \
                 other ports only (443 and 80 unless an entry names a port)"
            ),
            Refusal::AddressLiteral => f.write_str(
                "only allowlisted host names are reachable, not IP addresses (an operator can configure a package \
                 mirror for a private registry)",
            ),
            Refusal::PrivateAddress(ip) => write!(
                f,
                "it resolves to {ip}, which is not a public address (loopback, private, link-local or reserved); \
                 only public package registries are reachable"
            ),
            Refusal::ResolveFailed(reason) => write!(f, "the name did not resolve ({reason})"),
            Refusal::UnknownMirror(name) => write!(
                f,
                "no package mirror named `{name}` is configured; use the mirror URLs the build environment provides"
            ),
            Refusal::BadRequest(reason) => f.write_str(reason),
        }
    }
}

/// `host:port`, with brackets around an IPv6 address; empty when the request named no destination.
pub(crate) fn target(host: &str, port: u16) -> String {
    match (host, port) {
        ("", _) => String::new(),
        (h, p) if h.contains(':') => format!("[{h}]:{p}"),
        (h, p) => format!("{h}:{p}"),
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Via::Connect => f.write_str("CONNECT"),
            Via::Http => f.write_str("HTTP"),
            Via::Mirror(name) => write!(f, "mirror {name}"),
        }
    }
}

impl fmt::Display for Event {
    /// The log line, e.g. `allowed pypi.org:443 (203.0.113.80) via CONNECT` or
    /// `refused evil.example:443 — not in the egress allowlist (…)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Allowed { host, port, address, how } => {
                write!(f, "allowed {} ({address}) via {how}", target(host, *port))
            }
            Event::Refused { host, port, reason } => {
                let target = target(host, *port);
                match reason {
                    Refusal::UnknownMirror(_) => write!(f, "{reason}"),
                    Refusal::BadRequest(_) if target.is_empty() => write!(f, "bad proxy request — {reason}"),
                    Refusal::BadRequest(_) => write!(f, "bad proxy request for {target} — {reason}"),
                    Refusal::ResolveFailed(_) => write!(f, "could not resolve {target} — {reason}"),
                    _ => write!(f, "refused {target} — {reason}"),
                }
            }
            Event::Unreachable { host, port, how, reason } => {
                write!(f, "could not reach {} via {how} — {reason}", target(host, *port))
            }
        }
    }
}

impl Event {
    /// The one-line text body the sandbox is answered with when this event ends its request.
    pub(crate) fn body(&self) -> String {
        format!("deploy-mcp egress: {self}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_refused_host_when_displayed_then_it_names_host_setting_and_rule() {
        let event = Event::Refused { host: "evil.example".into(), port: 443, reason: Refusal::NotAllowed };
        assert_eq!(
            event.body(),
            "deploy-mcp egress: refused evil.example:443 — not in the egress allowlist \
             (DEPLOY_MCP_BUILD_EGRESS_ALLOW for builds, DEPLOY_MCP_APP_EGRESS_ALLOW for apps); only package \
             registries and hosts the operator allowed are reachable\n"
        );
    }

    #[test]
    fn given_an_ipv6_destination_when_displayed_then_it_is_bracketed() {
        let event = Event::Refused { host: "::1".into(), port: 443, reason: Refusal::AddressLiteral };
        assert!(event.to_string().contains("refused [::1]:443"), "{event}");
    }

    #[test]
    fn given_refusals_when_classified_then_only_policy_ones_are_403() {
        assert!(Refusal::NotAllowed.is_policy());
        assert!(Refusal::PrivateAddress("10.0.0.1".parse().unwrap()).is_policy());
        assert!(!Refusal::ResolveFailed("nxdomain".into()).is_policy());
        assert_eq!(Refusal::BadRequest("x".into()).status(), StatusCode::BAD_REQUEST);
        assert_eq!(Refusal::UnknownMirror("x".into()).status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn given_an_allowed_connection_when_displayed_then_it_names_address_and_way() {
        let event = Event::Allowed {
            host: "pypi.org".into(),
            port: 443,
            address: "203.0.113.80".parse().unwrap(),
            how: Via::Mirror("pypi".into()),
        };
        assert_eq!(event.to_string(), "allowed pypi.org:443 (203.0.113.80) via mirror pypi");
    }
}
