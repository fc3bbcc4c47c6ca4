//! Architecture invariants held over `cargo metadata`: the contract crate is pure, and each
//! driver is imported by its adapter crate only.

use std::collections::BTreeMap;

fn dependencies() -> BTreeMap<String, Vec<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

#[test]
fn events_is_a_pure_contract() {
    let deps = dependencies();
    for forbidden in ["tokio", "async-nats", "sqlx", "axum", "rmcp", "cqrs-es", "reqwest"] {
        assert!(!deps["events"].iter().any(|d| d == forbidden), "events must not depend on {forbidden}");
    }
}

#[test]
fn drivers_stay_in_their_adapters() {
    let deps = dependencies();
    // `resources` provisions databases on the operator's server; the tests check them from outside.
    let sql_owners = &["store", "resources", "deploy-mcp-tests"][..];
    for (driver, owners) in [("async-nats", &["bus"][..]), ("sqlx", sql_owners), ("postgres-es", &["store"][..])] {
        for (package, d) in &deps {
            if d.iter().any(|x| x == driver) {
                assert!(owners.contains(&package.as_str()), "{package} imports {driver}; only {owners:?} may");
            }
        }
    }
}

#[test]
fn services_never_depend_on_each_other() {
    let deps = dependencies();
    let services = ["gateway", "builder", "scheduler", "dns", "projector"];
    for s in services {
        for d in &deps[s] {
            assert!(!services.contains(&d.as_str()), "service {s} depends on service {d}");
        }
    }
}
