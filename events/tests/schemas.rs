//! The committed `schemas/` must equal what the types generate. Run with `UPDATE_SCHEMAS=1` to
//! rewrite them after changing an event, then review and commit the diff.

use std::path::PathBuf;

#[test]
fn committed_schemas_are_fresh() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (name, contents) in events::schema::all() {
        let path = dir.join(name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != contents {
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, contents).unwrap();
            } else {
                stale.push(name);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/ is stale for {stale:?}: run `UPDATE_SCHEMAS=1 cargo test -p events --test schemas` and commit"
    );
}

#[test]
fn every_event_round_trips_through_its_envelope() {
    use chrono::Utc;
    use events::*;
    let ev = AccountEvent::ApiKeyCreated {
        key_id: ApiKeyId::new(),
        prefix: "dk_live_abcd1234".into(),
        hash: "$2b$...".into(),
        label: "ci".into(),
        created_at: Utc::now(),
        resource: None,
    };
    let env = Envelope::new("usr_x", 2, Utc::now(), &ev);
    assert_eq!(env.event_type, "ApiKeyCreated");
    assert_eq!(env.id.to_string(), "account:usr_x:2");
    let wire = serde_json::to_vec(&env).unwrap();
    let back: Envelope = serde_json::from_slice(&wire).unwrap();
    assert_eq!(back.decode().unwrap(), AnyEvent::Account(ev));
}
