//! Network namespaces with a veth pair each, and the instance's nftables table that keeps sandboxes away from
//! the host's services, from each other and from private networks.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::Error;
use crate::names;
use crate::tools::{self, Tools};

pub(crate) const NETNS_DIR: &str = "/run/netns";
const LINKS_DIR: &str = "/sys/class/net";

/// Destinations a sandbox may not reach through the host: the host's own networks, cloud metadata, carrier NAT,
/// loopback, and 10.201.0.0/16 itself (other sandboxes).
/// The one definition: the cluster runtime's egress NetworkPolicy refuses the same ranges.
pub const BLOCKED_V4: [&str; 6] =
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8"];
pub const BLOCKED_V6: [&str; 3] = ["::1/128", "fc00::/7", "fe80::/10"];

pub(crate) fn netns_exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

pub(crate) fn link_exists(name: &str) -> bool {
    Path::new(LINKS_DIR).join(name).exists()
}

/// Namespace `netns` holding `eth0` = `app`/30, its peer `veth` = `host`/30 on the host, default route via the host.
pub(crate) async fn add(tools: &Tools, netns: &str, veth: &str, host: Ipv4Addr, app: Ipv4Addr) -> Result<(), Error> {
    // Two `ip -batch` runs instead of eight `ip` commands: each process start costs about a millisecond.
    let outside = format!(
        "netns add {netns}\n\
         link add {veth} type veth peer name eth0 netns {netns}\n\
         addr add {host}/30 dev {veth}\n\
         link set {veth} up\n"
    );
    tools::run(&tools.ip, &["-batch", "-"], Some(&outside)).await?;
    let inside = format!(
        "addr add {app}/30 dev eth0\n\
         link set lo up\n\
         link set eth0 up\n\
         route add default via {host}\n"
    );
    tools::run(&tools.ip, &["-netns", netns, "-batch", "-"], Some(&inside)).await?;
    Ok(())
}

/// Deletes veths, then namespaces (a namespace's own deletion frees its veth only later, asynchronously, so
/// the address could not be reused at once). Names that do not exist are skipped.
pub(crate) async fn remove(tools: &Tools, netns: &[String], veths: &[String]) -> Result<(), Error> {
    let mut batch = String::new();
    for veth in veths.iter().filter(|v| link_exists(v)) {
        let _ = writeln!(batch, "link del {veth}");
    }
    for ns in netns.iter().filter(|n| netns_exists(n)) {
        let _ = writeln!(batch, "netns del {ns}");
    }
    if batch.is_empty() {
        return Ok(());
    }
    // `-force` goes on past a line that fails, e.g. a link a concurrent teardown removed first; what counts is
    // that nothing is left.
    let result = tools::run(&tools.ip, &["-force", "-batch", "-"], Some(&batch)).await;
    let left = veths.iter().any(|v| link_exists(v)) || netns.iter().any(|n| netns_exists(n));
    match result {
        Err(e) if left => Err(e),
        _ => Ok(()),
    }
}

/// Veths of sealed sandboxes: nothing they send is forwarded.
const SEALED: &str = "sealed";
/// `veth . host address . port` a sandbox may open connections to (e.g. its egress proxy): the veth is part of
/// the key, so no other sandbox reaches that listener even though the kernel would accept the packet on any
/// interface for a local address.
const HOST_PORTS: &str = "host_ports";

/// The instance's table. Input from its veths: replies, and new connections only to the host ports opened for
/// that very veth ([`open_host_port`]), so apps never reach the host's loopback services (Postgres, NATS,
/// PowerDNS, the platform API) nor anything else listening on the veth addresses. Forward: nothing from sealed
/// veths; no private destinations (other sandboxes included), no new connections into the sandboxes; the rest
/// may leave, masqueraded (only where the host forwards at all: net.ipv4.ip_forward is the operator's choice).
/// `reject` so that probes fail at once instead of timing out.
pub(crate) fn firewall(instance: &str) -> String {
    let table = names::firewall_table(instance);
    let veths = format!("\"{}*\"", names::veth_prefix(instance));
    let (private4, private6) = (BLOCKED_V4.join(", "), BLOCKED_V6.join(", "));
    // Adding the table before deleting it makes the delete succeed on a fresh machine; nft applies the file
    // as one transaction, so the rules are never half there.
    format!(
        "table inet {table} {{}}\n\
         delete table inet {table}\n\
         table inet {table} {{\n\
         \tset private4 {{ type ipv4_addr; flags interval; elements = {{ {private4} }} }}\n\
         \tset private6 {{ type ipv6_addr; flags interval; elements = {{ {private6} }} }}\n\
         \tset {SEALED} {{ type ifname; }}\n\
         \tset {HOST_PORTS} {{ type ifname . ipv4_addr . inet_service; }}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter - 5; policy accept;\n\
         \t\tiifname {veths} ct state established,related accept\n\
         \t\tiifname . ip daddr . tcp dport @{HOST_PORTS} accept\n\
         \t\tiifname {veths} meta l4proto tcp reject with tcp reset\n\
         \t\tiifname {veths} reject with icmpx type admin-prohibited\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter - 5; policy accept;\n\
         \t\toifname {veths} ct state established,related accept\n\
         \t\toifname {veths} reject with icmpx type admin-prohibited\n\
         \t\tiifname @{SEALED} meta l4proto tcp reject with tcp reset\n\
         \t\tiifname @{SEALED} reject with icmpx type admin-prohibited\n\
         \t\tiifname {veths} ip daddr @private4 meta l4proto tcp reject with tcp reset\n\
         \t\tiifname {veths} ip daddr @private4 reject with icmpx type admin-prohibited\n\
         \t\tiifname {veths} ip6 daddr @private6 meta l4proto tcp reject with tcp reset\n\
         \t\tiifname {veths} ip6 daddr @private6 reject with icmpx type admin-prohibited\n\
         \t\tiifname {veths} accept\n\
         \t}}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr 10.201.0.0/16 oifname != \"vh*\" masquerade\n\
         \t}}\n\
         }}\n"
    )
}

/// Puts a veth into the sealed set (before any process of its sandbox runs).
pub(crate) async fn seal(tools: &Tools, instance: &str, veth: &str) -> Result<(), Error> {
    let table = names::firewall_table(instance);
    let script = format!("add element inet {table} {SEALED} {{ \"{veth}\" }}\n");
    tools::run(&tools.nft, &["-f", "-"], Some(&script)).await.map(drop)
}

/// Lets the sandbox behind `veth` open TCP connections to `host:port` (an address of its own veth).
pub(crate) async fn open_host_port(
    tools: &Tools,
    instance: &str,
    veth: &str,
    host: Ipv4Addr,
    port: u16,
) -> Result<(), Error> {
    let table = names::firewall_table(instance);
    let script = format!("add element inet {table} {HOST_PORTS} {{ \"{veth}\" . {host} . {port} }}\n");
    tools::run(&tools.nft, &["-f", "-"], Some(&script)).await.map(drop)
}

/// Removes a veth's elements from both sets. Each is added before it is deleted, in one transaction, so that a
/// missing element (never added, or removed by an earlier attempt) does not fail the whole batch.
pub(crate) async fn forget(
    tools: &Tools,
    instance: &str,
    veth: &str,
    host: Ipv4Addr,
    ports: &[u16],
) -> Result<(), Error> {
    let table = names::firewall_table(instance);
    let mut script = String::new();
    let mut both = |set: &str, element: String| {
        let _ = writeln!(script, "add element inet {table} {set} {{ {element} }}");
        let _ = writeln!(script, "delete element inet {table} {set} {{ {element} }}");
    };
    both(SEALED, format!("\"{veth}\""));
    for port in ports {
        both(HOST_PORTS, format!("\"{veth}\" . {host} . {port}"));
    }
    match tools::run(&tools.nft, &["-f", "-"], Some(&script)).await {
        // The table is gone (teardown): nothing of it is left to forget.
        Err(Error::Command { stderr, .. }) if stderr.contains("No such file or directory") => Ok(()),
        other => other.map(drop),
    }
}

pub(crate) async fn install_firewall(tools: &Tools, instance: &str) -> Result<(), Error> {
    tools::run(&tools.nft, &["-f", "-"], Some(&firewall(instance))).await.map(drop)
}

pub(crate) async fn remove_firewall(tools: &Tools, instance: &str) -> Result<(), Error> {
    let table = names::firewall_table(instance);
    let script = format!("table inet {table} {{}}\ndelete table inet {table}\n");
    tools::run(&tools.nft, &["-f", "-"], Some(&script)).await.map(drop)
}

pub(crate) async fn list_firewall(tools: &Tools, instance: &str) -> Result<String, Error> {
    let table = names::firewall_table(instance);
    tools::run(&tools.nft, &["list", "table", "inet", &table], None).await
}
