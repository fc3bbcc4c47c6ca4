//! Against the real PowerDNS that `scripts/test --setup-only` starts (API on DEPLOY_MCP_PDNS_URL, DNS on
//! 127.0.0.1:15353). Every test uses its own random zones and deletes them at the end.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use dnsops::{Checker, Error, PowerDns, normalize_zone, verification_name, verify_delegation};

const DNS: &str = "127.0.0.1:15353";
const TIMEOUT: Duration = Duration::from_secs(30);

fn pdns() -> PowerDns {
    let var = |name: &str| {
        std::env::var(name)
            .unwrap_or_else(|_| panic!("{name} is not set: run scripts/test --setup-only and export what it prints"))
    };
    PowerDns::new(&var("DEPLOY_MCP_PDNS_URL"), &var("DEPLOY_MCP_PDNS_API_KEY"))
}

fn checker() -> Checker {
    Checker::new(DNS.parse::<SocketAddr>().unwrap())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{:016x}.test", rand::random::<u64>())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Runs `body` with a time limit, then deletes `zones` whatever happened, then reports.
/// The body runs as a task so that its panic is caught and the zones are still deleted.
async fn with_zones<F: Future<Output = ()> + Send + 'static>(pdns: &PowerDns, zones: &[&str], body: F) {
    let result = tokio::time::timeout(TIMEOUT, tokio::spawn(body)).await;
    for zone in zones {
        pdns.delete_zone(zone).await.unwrap();
        assert!(!pdns.zone_exists(zone).await.unwrap(), "{zone} still exists after delete_zone");
    }
    match result {
        Err(_) => panic!("test body did not finish within {TIMEOUT:?}"),
        Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
        Ok(Ok(())) => {}
    }
}

#[tokio::test]
async fn ensure_zone_is_idempotent_and_serves_soa_and_ns() {
    let p = pdns();
    let zone = unique("t");
    let z = zone.clone();
    let p2 = p.clone();
    with_zones(&p, &[&zone], async move {
        let ns = strings(&["ns1.platform.test", "ns2.platform.test."]);
        assert!(!p2.zone_exists(&z).await.unwrap());
        // Trailing dot and upper case accepted.
        assert!(p2.ensure_zone(&format!("{}.", z.to_uppercase()), &ns).await.unwrap());
        assert!(!p2.ensure_zone(&z, &ns).await.unwrap(), "second ensure_zone must report an existing zone");
        assert!(p2.zone_exists(&z).await.unwrap());
        assert_eq!(p2.rrset(&z, "@", "NS").await.unwrap(), strings(&["ns1.platform.test", "ns2.platform.test"]));
        let soa = p2.rrset(&z, &z, "SOA").await.unwrap();
        assert!(soa[0].starts_with(&format!("ns1.platform.test. hostmaster.{z}. ")), "{soa:?}");
        // The zone is served at once, authoritatively: ns() sees its apex NS set.
        assert_eq!(checker().ns(&z).await.unwrap(), strings(&["ns1.platform.test", "ns2.platform.test"]));
    })
    .await;
}

#[tokio::test]
async fn rrsets_are_set_replaced_read_and_deleted() {
    let p = pdns();
    let zone = unique("t");
    let z = zone.clone();
    let p2 = p.clone();
    with_zones(&p, &[&zone], async move {
        p2.ensure_zone(&z, &strings(&["ns1.platform.test"])).await.unwrap();
        let dns = checker();

        p2.set_rrset(&z, "app", "A", 60, &strings(&["127.0.0.1"])).await.unwrap();
        assert_eq!(p2.rrset(&z, &format!("app.{z}"), "a").await.unwrap(), strings(&["127.0.0.1"]));
        assert_eq!(dns.a(&format!("app.{z}")).await.unwrap(), vec![IpAddr::from([127, 0, 0, 1])]);

        // Replace: the old value is gone, the new ones are visible to DNS immediately (no cache).
        p2.set_rrset(&z, &format!("app.{z}."), "A", 60, &strings(&["127.0.0.2", "127.0.0.3"])).await.unwrap();
        let mut got = dns.a(&format!("app.{z}")).await.unwrap();
        got.sort();
        assert_eq!(got, vec![IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3])]);

        // TXT values are quoted by the client; quotes, backslashes and >255 bytes survive both ways.
        let long = "k".repeat(300);
        let tricky = r#"v=1 "quoted" back\slash"#.to_owned();
        p2.set_rrset(&z, "_acme-challenge.app", "TXT", 60, &[tricky.clone(), long.clone()]).await.unwrap();
        let mut api = p2.rrset(&z, "_acme-challenge.app", "TXT").await.unwrap();
        api.sort();
        assert_eq!(api, vec![long.clone(), tricky.clone()]);
        let mut seen = dns.txt(&format!("_acme-challenge.app.{z}")).await.unwrap();
        seen.sort();
        assert_eq!(seen, vec![long, tricky]);

        // An answer over UDP's 1232-byte EDNS limit comes back truncated and is fetched again over TCP.
        let big: Vec<String> = (0..8).map(|i| format!("{i}{}", "b".repeat(400))).collect();
        p2.set_rrset(&z, "big", "TXT", 60, &big).await.unwrap();
        let mut seen = dns.txt(&format!("big.{z}")).await.unwrap();
        seen.sort();
        assert_eq!(seen, big);

        p2.set_rrset(&z, "www", "CNAME", 60, &[format!("app.{z}")]).await.unwrap();
        assert_eq!(p2.rrset(&z, "www", "CNAME").await.unwrap(), vec![format!("app.{z}")]);
        assert_eq!(dns.a(&format!("www.{z}")).await.unwrap().len(), 2, "A lookup follows the CNAME");

        p2.delete_rrset(&z, "app", "A").await.unwrap();
        p2.delete_rrset(&z, "app", "A").await.unwrap(); // deleting again is fine
        assert!(p2.rrset(&z, "app", "A").await.unwrap().is_empty());
        assert!(dns.a(&format!("app.{z}")).await.unwrap().is_empty());
        // NXDOMAIN and NoData are empty answers, not errors.
        assert!(dns.txt(&format!("nothing.{z}")).await.unwrap().is_empty());
        assert!(dns.txt(&format!("www.{z}")).await.unwrap().is_empty());

        // Mistakes are reported with what to do.
        let out = p2.set_rrset(&z, "x.elsewhere.test.", "A", 60, &strings(&["127.0.0.1"])).await.unwrap_err();
        assert!(matches!(out, Error::Invalid(ref m) if m.contains("outside zone")), "{out}");
        let bad = p2.set_rrset(&z, "bad", "A", 60, &strings(&["not-an-ip"])).await.unwrap_err();
        assert!(matches!(bad, Error::Api { status: 422, .. }), "{bad}");
    })
    .await;
}

#[tokio::test]
async fn missing_zone_and_bad_key_are_actionable_errors() {
    let p = pdns();
    let zone = unique("missing");
    let err = p.set_rrset(&zone, "a", "A", 60, &strings(&["127.0.0.1"])).await.unwrap_err();
    assert!(matches!(&err, Error::Api { status: 404, message } if message.contains("ensure_zone")), "{err}");
    p.delete_zone(&zone).await.unwrap(); // idempotent
    assert!(p.rrset(&zone, "a", "A").await.is_err());

    let wrong = PowerDns::new(&std::env::var("DEPLOY_MCP_PDNS_URL").unwrap(), "wrong-key");
    let err = wrong.zone_exists(&zone).await.unwrap_err();
    assert!(matches!(&err, Error::Api { status: 401, message } if message.contains("api-key")), "{err}");

    // Port 9 on loopback: nothing listens.
    let down = PowerDns::new("http://127.0.0.1:9", "k");
    assert!(matches!(down.zone_exists(&zone).await, Err(Error::Unavailable(_))));
}

#[tokio::test]
async fn wildcard_a_and_aaaa_resolve_for_any_name() {
    let p = pdns();
    let zone = unique("t");
    let z = zone.clone();
    let p2 = p.clone();
    with_zones(&p, &[&zone], async move {
        p2.ensure_zone(&z, &strings(&["ns1.platform.test"])).await.unwrap();
        p2.set_rrset(&z, "*", "A", 60, &strings(&["127.0.0.1"])).await.unwrap();
        assert_eq!(checker().a(&format!("x.{z}")).await.unwrap(), vec![IpAddr::from([127, 0, 0, 1])]);
        p2.set_rrset(&z, &format!("*.{z}"), "AAAA", 60, &strings(&["::1"])).await.unwrap();
        assert_eq!(
            checker().a(&format!("deep.x.{z}")).await.unwrap(),
            vec![IpAddr::from([127, 0, 0, 1]), "::1".parse::<IpAddr>().unwrap()]
        );
    })
    .await;
}

/// The pre-activation situation: the parent zone delegates `child` to the platform's nameservers and carries
/// the ownership TXT; the child is not (yet) a zone in PowerDNS, so the NS set seen is the parent's delegation.
#[tokio::test]
async fn verify_delegation_sees_txt_and_ns_published_in_the_parent() {
    let p = pdns();
    let parent = unique("p");
    let par = parent.clone();
    let p2 = p.clone();
    with_zones(&p, &[&parent], async move {
        let platform = strings(&["ns1.platform.test", "ns2.platform.test"]);
        let child = format!("apps.{par}");
        let token = "dp-verify=0123456789abcdef";
        let dns = checker();
        p2.ensure_zone(&par, &strings(&["ns.parent.test"])).await.unwrap();

        // Nothing published yet: both missing, and the sentences say what to publish.
        let v = verify_delegation(&dns, &child, token, &platform).await.unwrap();
        assert!(!v.txt_ok && !v.ns_ok && v.found_txt.is_empty() && v.found_ns.is_empty(), "{v:?}");
        let txt_name = verification_name(&child).unwrap();
        assert_eq!(txt_name, format!("apps._dp-verify.{par}"));
        let missing = v.missing();
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing[0].contains(&format!("TXT record `{txt_name}`")) && missing[0].contains(token), "{missing:?}");
        assert!(
            missing[1].contains(&format!("Delegate `{child}` by publishing NS records"))
                && missing[1].contains("`ns2.platform.test`")
        );

        // The user publishes a wrong token and only one of the two nameservers.
        p2.set_rrset(&par, &txt_name, "TXT", 60, &strings(&["dp-verify=stale"])).await.unwrap();
        p2.set_rrset(&par, "apps", "NS", 60, &strings(&["ns1.platform.test"])).await.unwrap();
        let v = verify_delegation(&dns, &child, token, &platform).await.unwrap();
        assert!(!v.txt_ok && !v.ns_ok, "{v:?}");
        assert_eq!(v.found_txt, strings(&["dp-verify=stale"]));
        assert_eq!(v.found_ns, strings(&["ns1.platform.test"]));
        let missing = v.missing().join(" ");
        assert!(
            missing.contains("found `dp-verify=stale`") && missing.contains("missing `ns2.platform.test`"),
            "{missing}"
        );

        // Fixed: the right token among others, and both nameservers (plus an extra one, which is allowed).
        p2.set_rrset(&par, &txt_name, "TXT", 60, &strings(&["other", token])).await.unwrap();
        p2.set_rrset(&par, "apps", "NS", 60, &strings(&["NS2.platform.test.", "ns1.platform.test", "ns.extra.test"]))
            .await
            .unwrap();
        let upper: Vec<String> = platform.iter().map(|n| format!("{}.", n.to_uppercase())).collect();
        let v = verify_delegation(&dns, &format!("{}.", child.to_uppercase()), token, &upper).await.unwrap();
        assert!(v.txt_ok && v.ns_ok && v.is_ok(), "{v:?}");
        assert!(v.missing().is_empty());
        assert_eq!(v.found_ns, strings(&["ns.extra.test", "ns1.platform.test", "ns2.platform.test"]));

        // A TXT below the zone cut (`_dp-verify.<child>`) is hidden by the delegation: why the record lives
        // beside the child instead.
        p2.set_rrset(&par, &format!("_dp-verify.{child}"), "TXT", 60, &strings(&[token])).await.unwrap();
        assert!(dns.txt(&format!("_dp-verify.{child}")).await.unwrap().is_empty());

        // The TXT is right but the delegation is removed: ns_ok turns false again.
        p2.delete_rrset(&par, "apps", "NS").await.unwrap();
        let v = verify_delegation(&dns, &child, token, &platform).await.unwrap();
        assert!(v.txt_ok && !v.ns_ok && v.found_ns.is_empty(), "{v:?}");
        assert_eq!(v.missing().len(), 1);
    })
    .await;
}

/// Once the child exists in PowerDNS, an authoritative query for its NS answers from the child itself,
/// regardless of the parent: documented in `Checker`, shown here.
#[tokio::test]
async fn activated_child_answers_its_own_ns_set() {
    let p = pdns();
    let parent = unique("p");
    let child = format!("apps.{parent}");
    let (par, ch) = (parent.clone(), child.clone());
    let p2 = p.clone();
    with_zones(&p, &[&child, &parent], async move {
        p2.ensure_zone(&par, &strings(&["ns.parent.test"])).await.unwrap();
        p2.set_rrset(&par, "apps", "NS", 60, &strings(&["ns.elsewhere.test"])).await.unwrap();
        assert_eq!(checker().ns(&ch).await.unwrap(), strings(&["ns.elsewhere.test"]));
        p2.ensure_zone(&ch, &strings(&["ns1.platform.test"])).await.unwrap();
        assert_eq!(checker().ns(&ch).await.unwrap(), strings(&["ns1.platform.test"]));
        // Deleted again: the parent's delegation is what is seen, at once.
        p2.delete_zone(&ch).await.unwrap();
        assert_eq!(checker().ns(&ch).await.unwrap(), strings(&["ns.elsewhere.test"]));
    })
    .await;
}

#[tokio::test]
async fn unreachable_resolver_is_unavailable() {
    // Loopback port 9: nothing answers, over UDP or TCP.
    let dns = Checker::new("127.0.0.1:9".parse().unwrap());
    let err = tokio::time::timeout(TIMEOUT, dns.txt("example.test")).await.unwrap().unwrap_err();
    assert!(matches!(&err, Error::Unavailable(m) if m.contains("127.0.0.1:9")), "{err}");
}

#[test]
fn normalize_zone_cases() {
    assert_eq!(normalize_zone("Apps.Example.COM.").unwrap(), "apps.example.com");
    assert_eq!(normalize_zone(" apps.example.com ").unwrap(), "apps.example.com");
    assert_eq!(normalize_zone("a-1.b2.test").unwrap(), "a-1.b2.test");
    assert_eq!(normalize_zone(&format!("{}.test", "a".repeat(63))).unwrap().len(), 68);
    let cases = [
        ("", "empty"),
        (".", "empty"),
        ("com", "single label"),
        ("a..b.com", "empty label"),
        (".a.com", "empty label"),
        ("-a.com", "hyphen"),
        ("a-.com", "hyphen"),
        ("a_b.com", "contains `_`"),
        ("a b.com", "contains ` `"),
        ("*.example.com", "contains `*`"),
        ("exämple.com", "contains `ä`"),
    ];
    for (raw, why) in cases {
        match normalize_zone(raw) {
            Err(Error::Invalid(m)) => assert!(m.contains(why), "{raw:?}: {m}"),
            other => panic!("{raw:?} should be invalid ({why}), got {other:?}"),
        }
    }
    let long_label = format!("{}.com", "a".repeat(64));
    assert!(matches!(normalize_zone(&long_label), Err(Error::Invalid(m)) if m.contains("at most 63")));
    let long_name = vec!["a".repeat(60); 5].join(".");
    assert!(matches!(normalize_zone(&long_name), Err(Error::Invalid(m)) if m.contains("at most 253")));
}
