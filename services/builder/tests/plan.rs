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
    ("hostile", "python: start `python3 main.py`"),
    ("dockerfile", "dockerfile: build the image from `Dockerfile`"),
    (
        "django",
        "procfile, python, pip: install `python3 -m venv .venv && pip install -r requirements.txt`, \
         build `python3 manage.py collectstatic --noinput`, \
         start `python manage.py migrate --noinput && gunicorn mysite.wsgi --log-file -`",
    ),
    ("express", "node, npm: install `npm ci --include=dev`, start `npm start`"),
    (
        "fastapi",
        "python 3.11 (.python-version), uv 0.13.9: install `uv venv --allow-existing --quiet .venv && \
         uv export --frozen --no-dev --no-emit-project --no-header --quiet -o /tmp/requirements.txt && \
         uv pip sync /tmp/requirements.txt`, start `uvicorn main:app --host 0.0.0.0 --port $PORT`",
    ),
    (
        "flask",
        "python, pip: install `python3 -m venv .venv && pip install -r requirements.txt`, \
         start `gunicorn --bind 0.0.0.0:$PORT app:app`",
    ),
    (
        "go",
        "go >=1.22 (go.mod go), go: install `go mod download`, build `mkdir -p .dmcp && go build -o .dmcp/app .`, \
         start `./.dmcp/app`",
    ),
    (
        "go-pinned",
        "go 1.25.5 (go.mod toolchain), go: install `go mod download`, \
         build `mkdir -p .dmcp && go build -o .dmcp/app .`, start `./.dmcp/app`",
    ),
    ("node-pinned", "node 22 (.nvmrc): start `npm start`"),
    ("python-unavailable", "python 3.13 (.python-version): start `python3 main.py`"),
    (
        "rust",
        "rust, cargo: install `cargo fetch --locked`, build `cargo build --release --locked && mkdir -p .dmcp && \
         cp \"${CARGO_TARGET_DIR:-target}/release/rust-fixture\" .dmcp/rust-fixture`, start `./.dmcp/rust-fixture`",
    ),
    (
        "ssr",
        "node, yarn 1.22.22: install `yarn install --frozen-lockfile --production=false`, build `yarn run build`, \
         prune `yarn install --production=true --frozen-lockfile --ignore-scripts --prefer-offline`, start `npm start`",
    ),
    (
        "vite",
        "static, node, pnpm 12.4.2: install `pnpm install --frozen-lockfile --prod=false`, build `pnpm run build`, \
         serve `dist`",
    ),
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

/// A fixture, the inputs and outputs of its dependency cache, and the package-manager CLIs it needs.
type Dependencies = (&'static str, &'static [&'static str], &'static [&'static str], &'static [&'static str]);

/// What the builder caches and installs for the fixtures with dependencies.
#[test]
fn given_fixtures_with_dependencies_when_detect_then_their_caches_and_tools_are_declared() {
    let expected: &[Dependencies] = &[
        ("flask", &["requirements.txt"], &[".venv"], &[]),
        ("django", &["requirements.txt"], &[".venv"], &[]),
        ("fastapi", &["pyproject.toml", "uv.lock", ".python-version"], &[".venv"], &["uv"]),
        ("express", &["package.json", "package-lock.json"], &["node_modules"], &[]),
        ("ssr", &["package.json", "yarn.lock"], &["node_modules"], &["yarn"]),
        ("vite", &["package.json", "pnpm-lock.yaml"], &["node_modules"], &["pnpm"]),
    ];
    for (name, inputs, outputs, tools) in expected {
        let plan =
            detect(&fixtures().join(name), &Overrides::default()).unwrap_or_else(|e| panic!("fixture {name}: {e}"));
        let deps = plan.deps.unwrap_or_else(|| panic!("fixture {name} declares no dependency cache"));
        assert_eq!(deps.inputs, *inputs, "fixture {name}");
        assert_eq!(deps.outputs, *outputs, "fixture {name}");
        let names: Vec<&str> = plan.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, *tools, "fixture {name}");
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
