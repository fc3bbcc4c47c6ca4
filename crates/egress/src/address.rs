//! Which addresses a build may reach: the public internet only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is a public unicast address a build may connect to.
///
/// False for everything that reaches the host itself, a private network, the cloud metadata service or a
/// special-purpose range: loopback, unspecified, `0.0.0.0/8`, `10/8`, `172.16/12`, `192.168/16`, the whole of
/// link-local `169.254/16` (the metadata address 169.254.169.254 included), CGNAT `100.64/10`, IETF protocol
/// assignments `192.0.0.0/24`, benchmarking `198.18/15`, multicast, broadcast and reserved `240/4`; for IPv6 `::1`,
/// `::`, unique-local `fc00::/7`, link-local `fe80::/10`, deprecated site-local `fec0::/10`, multicast, Teredo
/// `2001::/32` and local-use NAT64 `64:ff9b:1::/48`. IPv6 forms that carry an IPv4 address (IPv4-mapped
/// `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that
/// IPv4 address, so `::ffff:10.0.0.1` is as private as `10.0.0.1`.
///
/// The documentation networks (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) count as public on
/// purpose: no router forwards them, so they cannot reach anything private, and test machines (this project's
/// among them) resolve registries into them.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let private = a == 0 // "this network", 0.0.0.0 included
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || a >= 224; // multicast 224/4, reserved 240/4, broadcast
    !private
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let private = ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still routed inside sites)
        || (s[0] == 0x2001 && s[1] == 0) // Teredo 2001::/32: tunnels to an IPv4 host we cannot judge
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1); // local-use NAT64 64:ff9b:1::/48
    !private
}

/// The IPv4 address an IPv6 address stands for, where the kernel or a translator would deliver it to one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // IPv4-compatible ::a.b.c.d (deprecated), which also covers :: (0.0.0.0) and ::1 (0.0.0.1): both private
        [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        // NAT64 well-known prefix 64:ff9b::/96
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 6to4 2002:aabb:ccdd::/48
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_address_table_when_judged_then_only_public_unicast_passes() {
        let table: &[(&str, bool)] = &[
            // IPv4 private and special
            ("127.0.0.1", false),
            ("127.255.0.9", false),
            ("0.0.0.0", false),
            ("0.1.2.3", false),
            ("10.0.0.1", false),
            ("10.201.3.1", false),
            ("172.16.0.1", false),
            ("172.31.255.255", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("169.254.0.1", false),
            ("100.64.0.1", false),
            ("100.127.255.254", false),
            ("192.0.0.8", false),
            ("198.18.0.1", false),
            ("198.19.255.1", false),
            ("224.0.0.1", false),
            ("239.255.255.250", false),
            ("240.0.0.1", false),
            ("255.255.255.255", false),
            // IPv4 public, the documentation nets included
            ("203.0.113.80", true),
            ("192.0.2.1", true),
            ("198.51.100.7", true),
            ("8.8.8.8", true),
            ("151.101.0.223", true),
            ("172.15.255.255", true),
            ("172.32.0.1", true),
            ("100.63.255.255", true),
            ("100.128.0.1", true),
            ("198.17.255.255", true),
            ("198.20.0.1", true),
            ("192.0.1.1", true),
            ("11.0.0.1", true),
            // IPv6 private and special
            ("::1", false),
            ("::", false),
            ("fc00::1", false),
            ("fd12:3456::1", false),
            ("fe80::1", false),
            ("febf::1", false),
            ("fec0::1", false),
            ("ff02::1", false),
            ("2001:0:4136:e378::1", false),
            ("64:ff9b:1::a00:1", false),
            // IPv6 carrying IPv4
            ("::ffff:10.0.0.1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("::10.0.0.1", false),
            ("64:ff9b::10.0.0.1", false),
            ("64:ff9b::a9fe:a9fe", false),
            ("2002:a00:1::1", false),
            ("::ffff:203.0.113.80", true),
            ("64:ff9b::8.8.8.8", true),
            ("2002:808:808::1", true),
            // IPv6 public
            ("2a00:1450:4001:82b::2011", true),
            ("2001:db8::1", true),
            ("2606:4700::6810:84e5", true),
        ];
        for (text, expected) in table {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(is_public(ip), *expected, "is_public({text})");
        }
    }
}
