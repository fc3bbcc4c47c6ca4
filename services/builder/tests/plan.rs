//! The fixture apps under `tests/fixtures/apps/` get the plans their README promises.

use std::path::{Path, PathBuf};

use builder::plan::{Overrides, detect};
use events::BuildPack;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/apps")
}

/// Every fixture and the plan it must get (with `build_pack: dockerfile` for `dockerfile`); a new
/// fixture must be added here.
const EXPECTED: &[(&str, &str)] = &[
    ("static", "static: serve `.`"),
    ("python", "python: start `python3 main.py`"),
    ("node", "node: start `npm start`"),
    ("fail-build", "node: build `npm run build`, start `npm start`"),
    ("fail-start", "python: start `python3 main.py`"),
    ("wrong-port", "python: start `python3 main.py`"),
    ("health-timeout", "python: start `python3 main.py`"),
    ("oom", "python: start `python3 main.py`"),
    ("probe", "python: start `python3 main.py`"),
    ("dockerfile", "dockerfile: build the image from `Dockerfile`"),
];

#[test]
fn given_each_fixture_when_detect_then_the_documented_plan() {
    for (name, expected) in EXPECTED {
        let build_pack = if *name == "dockerfile" { BuildPack::Dockerfile } else { BuildPack::Railpack };
        let overrides = Overrides { build_pack, ..Overrides::default() };
        let plan = detect(&fixtures().join(name), &overrides).unwrap_or_else(|e| panic!("fixture {name}: {e}"));
        assert_eq!(plan.describe(), *expected, "fixture {name}");
    }
}

#[test]
fn given_the_fixtures_dir_when_listed_then_every_fixture_has_an_expected_plan() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected: Vec<&str> = EXPECTED.iter().map(|(name, _)| *name).collect();
    expected.sort();
    assert_eq!(names, expected);
}
