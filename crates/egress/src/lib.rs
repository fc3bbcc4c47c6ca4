//! The builds' controlled egress path: an HTTP forward proxy with package-mirror reverse paths.
//!
//! A build step runs in a sandbox whose network namespace reaches only the host end of its veth pair, and the
//! firewall opens exactly one address there: a listener of this proxy, bound to `10.201.x.1:<port>`, set as
//! `HTTP_PROXY`/`HTTPS_PROXY` in the sandbox. Through it, and only through it, builds reach:
//!
//! - allowlisted registry hosts ([`Policy::default_allow`], or [`parse_allow`] of the operator's setting), by
//!   `CONNECT host:port` (HTTPS, spliced as bytes) or absolute-form plain HTTP, on public addresses only: a name
//!   that resolves to loopback, a private range, link-local or the metadata address is refused before any
//!   connection ([`is_public`]), and the connection goes to the very address that was checked (no second
//!   resolution, so DNS rebinding cannot slip one in);
//! - the operator's package mirrors ([`parse_mirrors`]), by `/mirror/<name>/…` on the proxy itself
//!   ([`Proxy::mirror_url`]; for tools that never proxy loopback, such as Go) or by `CONNECT`/plain HTTP to the
//!   mirror's origin, whatever its address (the operator chose it).
//!
//! Nothing here forwards IP packets, so the host needs no `ip_forward` or other sysctl. Every connection opened
//! and every request refused is an [`Event`] whose `Display` is the build-log line; refusals are answered
//! `403` with a one-line explanation naming the host and the setting to change.

mod address;
mod event;
mod policy;
mod proxy;
mod splice;
mod upstream;

pub use address::is_public;
pub use event::{ALLOW_SETTING, APP_ALLOW_SETTING, Event, Refusal, Via};
pub use policy::{ConfigError, HostRule, Mirror, Policy, parse_allow, parse_mirrors};
pub use proxy::{Proxy, Serving};
pub use upstream::{Resolve, SystemResolver};
