//! Rust: the toolchain `rust-toolchain(.toml)` asks for, crates fetched through the builder's registry path,
//! a release build whose binary is copied out of the target directory to `.dmcp/`.
//!
//! The builder points `CARGO_TARGET_DIR` at a per-service cache outside the app, so the binary is copied
//! from `${CARGO_TARGET_DIR:-target}/release` into the app, where the start command finds it.

use toolchains::Tool;

use super::checkout::{Checkout, is_safe_word};
use super::toml::Toml;
use super::{Detected, Plan, PlanError, Provider, first_line, request};

/// A workspace's members are read to find its one binary; more than this many are not looked into.
const MAX_MEMBERS: usize = 16;

pub(super) fn detect(checkout: &Checkout, manifest: &str) -> Result<Detected, PlanError> {
    let toml = Toml::parse("Cargo.toml", manifest)?;
    let binary = match binary_of(&toml)? {
        Some(name) => Some(name),
        None => workspace_binary(checkout, &toml)?,
    };
    let locked = checkout.is_file("Cargo.lock");
    let has_deps = ["dependencies", "build-dependencies", "workspace.dependencies"].iter().any(|t| toml.has_entries(t))
        || toml.has_table_matching("target", "dependencies")
        || toml.has_table("workspace");
    let install =
        if locked { Some("cargo fetch --locked".to_owned()) } else { has_deps.then(|| "cargo fetch".to_owned()) };
    let flags = if locked { " --locked" } else { "" };
    let copy = match &binary {
        Some(name) => format!("cp \"${{CARGO_TARGET_DIR:-target}}/release/{name}\" .dmcp/{name}"),
        // The binary is not known: every executable the release build left at the top of its directory is.
        None => "find \"${CARGO_TARGET_DIR:-target}/release\" -maxdepth 1 -type f -perm -u+x -exec cp {} .dmcp/ \\;"
            .to_owned(),
    };
    let plan = Plan {
        toolchains: vec![toolchain(checkout)?],
        package_manager: install.as_ref().map(|_| "cargo".to_owned()),
        install,
        build: Some(format!("cargo build --release{flags} && mkdir -p .dmcp && {copy}")),
        start: binary.map(|name| format!("./.dmcp/{name}")),
        ..Plan::new(Provider::Rust)
    };
    let hint = "Cargo.toml names no binary (a workspace root with several?): set `start_command` to \
                `./.dmcp/<binary>`, the build copies every binary there, or add a Procfile `web:` line";
    Ok(Detected { plan, missing_start_hint: hint })
}

/// The binary `cargo run` would start: `default-run`, else the only `[[bin]]`, else the package's name.
fn binary_of(toml: &Toml) -> Result<Option<String>, PlanError> {
    let bins = toml.array_table_strings("bin", "name");
    let name = toml.string("package", "default-run").or_else(|| match bins.as_slice() {
        [only] => Some(only.clone()),
        _ => toml.string("package", "name"),
    });
    match name {
        Some(name) if !is_safe_word(&name) => Err(PlanError::InvalidFile {
            file: "Cargo.toml".into(),
            error: format!("the binary name {name:?} may only contain letters, digits, '.', '_' and '-'"),
        }),
        name => Ok(name),
    }
}

/// A workspace root without a package of its own: the binary of its only member that has one.
fn workspace_binary(checkout: &Checkout, toml: &Toml) -> Result<Option<String>, PlanError> {
    let mut binaries = Vec::new();
    for member in toml.strings("workspace", "members").iter().take(MAX_MEMBERS) {
        // Globs (`crates/*`) would need a directory walk: such workspaces name their binary with `start_command`.
        if member.contains(['*', '?', '[']) {
            return Ok(None);
        }
        let file = format!("{member}/Cargo.toml");
        let Some(manifest) = checkout.read(&file)? else { continue };
        let member_toml = Toml::parse(&file, &manifest)?;
        let has_binary = checkout.is_file(&format!("{member}/src/main.rs")) || member_toml.has_table("bin");
        if has_binary && let Some(name) = binary_of(&member_toml)? {
            binaries.push(name);
        }
    }
    Ok(match binaries.as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    })
}

/// `rust-toolchain.toml`'s `[toolchain] channel`, or the legacy `rust-toolchain` (a channel on one line, or
/// the same TOML).
fn toolchain(checkout: &Checkout) -> Result<toolchains::Request, PlanError> {
    for file in ["rust-toolchain.toml", "rust-toolchain"] {
        let Some(text) = checkout.read(file)? else { continue };
        let channel = if text.contains("[toolchain]") {
            Toml::parse(file, &text)?.string("toolchain", "channel")
        } else {
            first_line(&text)
        };
        if let Some(channel) = channel.filter(|c| is_safe_word(c)) {
            return Ok(request(Tool::Rust, Some(channel), file));
        }
    }
    Ok(request(Tool::Rust, None, ""))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{app, start};
    use super::*;
    use toolchains::Request;

    #[test]
    fn given_cargo_toml_when_detect_then_cargo_build_copies_the_binary_out_of_the_target_dir() {
        let manifest = "[package]\nname = \"hello-web\" # the binary\nversion = \"0.1.0\"\n\n[dependencies]\n";
        let plan = app().file("Cargo.toml", manifest).detect().unwrap();
        assert_eq!(plan.provider, Provider::Rust);
        assert_eq!(plan.install, None);
        assert_eq!(
            plan.build.as_deref(),
            Some(
                "cargo build --release && mkdir -p .dmcp && \
                 cp \"${CARGO_TARGET_DIR:-target}/release/hello-web\" .dmcp/hello-web"
            )
        );
        assert_eq!(plan.start.as_deref(), Some("./.dmcp/hello-web"));
        assert_eq!(plan.toolchains, [Request { tool: Tool::Rust, constraint: None, from: None }]);
        assert_eq!(plan.deps, None);
    }

    #[test]
    fn given_cargo_lock_when_detect_then_fetch_and_build_locked() {
        let manifest = "[package]\nname = \"web\"\n\n[dependencies]\naxum = \"0.8\"\n";
        let plan = app().file("Cargo.toml", manifest).file("Cargo.lock", "version = 4\n").detect().unwrap();
        assert_eq!(plan.install.as_deref(), Some("cargo fetch --locked"));
        assert_eq!(plan.package_manager.as_deref(), Some("cargo"));
        assert!(plan.build.as_deref().unwrap().starts_with("cargo build --release --locked && "), "{plan:?}");
    }

    #[test]
    fn given_cargo_toml_with_dependencies_and_a_bin_when_detect_then_fetch_and_start_the_bin() {
        let manifest =
            "[package]\nname = \"x\"\n\n[[bin]]\nname = \"server\"\n\n[dependencies.serde]\nversion = \"1\"\n";
        let plan = app().file("Cargo.toml", manifest).detect().unwrap();
        assert_eq!(plan.install.as_deref(), Some("cargo fetch"));
        assert_eq!(plan.start.as_deref(), Some("./.dmcp/server"));
    }

    #[test]
    fn given_default_run_when_detect_then_it_is_the_binary() {
        let manifest =
            "[package]\nname = \"x\"\ndefault-run = \"api\"\n[[bin]]\nname = \"api\"\n[[bin]]\nname = \"cli\"\n";
        assert_eq!(app().file("Cargo.toml", manifest).detect().unwrap().start.as_deref(), Some("./.dmcp/api"));
    }

    #[test]
    fn given_target_specific_dependencies_when_detect_then_fetch() {
        let manifest = "[package]\nname = \"x\"\n[target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n";
        assert_eq!(app().file("Cargo.toml", manifest).detect().unwrap().install.as_deref(), Some("cargo fetch"));
    }

    #[test]
    fn given_rust_toolchain_toml_with_extra_keys_when_detect_then_the_channel_is_requested() {
        let toolchain = "[toolchain]\nprofile = \"minimal\"\nchannel = \"1.80.0\" # pinned\ncomponents = [\"rustfmt\", \
                         \"clippy\"]\ntargets = [\"wasm32-unknown-unknown\"]\n";
        let app = app().file("Cargo.toml", "[package]\nname = \"x\"\n").file("rust-toolchain.toml", toolchain);
        let plan = app.detect().unwrap();
        let expected =
            Request { tool: Tool::Rust, constraint: Some("1.80.0".into()), from: Some("rust-toolchain.toml".into()) };
        assert_eq!(plan.toolchains, [expected]);
        assert!(
            plan.describe().starts_with("rust 1.80.0 (rust-toolchain.toml): build `cargo build"),
            "{}",
            plan.describe()
        );
    }

    #[test]
    fn given_a_legacy_rust_toolchain_file_when_detect_then_its_line_is_the_channel() {
        let app = app().file("Cargo.toml", "[package]\nname = \"x\"\n").file("rust-toolchain", "stable\n");
        assert_eq!(app.detect().unwrap().toolchains[0].constraint.as_deref(), Some("stable"));
        let app = app.file("rust-toolchain", "[toolchain]\nchannel = \"nightly-2024-05-01\"\n");
        assert_eq!(app.detect().unwrap().toolchains[0].constraint.as_deref(), Some("nightly-2024-05-01"));
    }

    #[test]
    fn given_workspace_cargo_toml_when_detect_then_no_start_command_unless_overridden() {
        let app = app().file("Cargo.toml", "[workspace]\nmembers = [\"a\"]\n");
        let err = app.detect().unwrap_err();
        assert!(matches!(err, PlanError::NoStartCommand { provider: Provider::Rust, .. }));
        assert!(err.to_string().contains("./.dmcp/<binary>"), "{err}");
        let plan = app.detect_with(start("./.dmcp/a")).unwrap();
        assert_eq!(plan.install.as_deref(), Some("cargo fetch"));
        assert_eq!(
            plan.build.as_deref(),
            Some(
                "cargo build --release && mkdir -p .dmcp && \
                 find \"${CARGO_TARGET_DIR:-target}/release\" -maxdepth 1 -type f -perm -u+x -exec cp {} .dmcp/ \\;"
            )
        );
        assert_eq!(plan.start.as_deref(), Some("./.dmcp/a"));
    }

    #[test]
    fn given_a_workspace_with_one_binary_member_when_detect_then_it_is_started() {
        let app = app()
            .file("Cargo.toml", "[workspace]\nmembers = [\"crates/core\", \"crates/server\"]\n")
            .file("crates/core/Cargo.toml", "[package]\nname = \"core\"\n")
            .file("crates/core/src/lib.rs", "")
            .file("crates/server/Cargo.toml", "[package]\nname = \"server\"\n")
            .file("crates/server/src/main.rs", "fn main() {}");
        assert_eq!(app.detect().unwrap().start.as_deref(), Some("./.dmcp/server"));
    }

    #[test]
    fn given_a_cargo_toml_that_is_not_toml_when_detect_then_invalid_file_names_line_and_column() {
        let app = app().file("Cargo.toml", "[package]\nname = \"web\"\nversion = 0.1.0\n");
        let err = app.detect().unwrap_err();
        assert!(
            matches!(&err, PlanError::InvalidFile { file, error }
                if file == "Cargo.toml" && error.starts_with("line 3, column 14: ")),
            "{err:?}"
        );
    }

    #[test]
    fn given_a_workspace_member_manifest_that_is_not_toml_when_detect_then_invalid_file_names_it() {
        let app = app()
            .file("Cargo.toml", "[workspace]\nmembers = [\"crates/server\"]\n")
            .file("crates/server/Cargo.toml", "[package\nname = \"server\"\n");
        let err = app.detect().unwrap_err();
        assert!(
            matches!(&err, PlanError::InvalidFile { file, error }
                if file == "crates/server/Cargo.toml" && error.starts_with("line 1, column ")),
            "{err:?}"
        );
    }

    #[test]
    fn given_a_rust_toolchain_file_that_is_not_toml_when_detect_then_invalid_file() {
        let cargo = "[package]\nname = \"x\"\n";
        for file in ["rust-toolchain.toml", "rust-toolchain"] {
            let app = app().file("Cargo.toml", cargo).file(file, "[toolchain]\nchannel = 1.80.0\n");
            let err = app.detect().unwrap_err();
            assert!(
                matches!(&err, PlanError::InvalidFile { file: f, error } if f == file && error.starts_with("line 2,")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn given_a_binary_name_with_shell_syntax_when_detect_then_invalid_file() {
        let app = app().file("Cargo.toml", "[package]\nname = \"x;rm -rf /\"\n");
        assert!(matches!(app.detect(), Err(PlanError::InvalidFile { .. })));
    }
}
