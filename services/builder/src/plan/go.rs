//! Go: the toolchain `go.mod` asks for, modules downloaded through the builder's module proxy (or `vendor/`,
//! offline), a static binary under `.dmcp/`.

use toolchains::Tool;

use super::checkout::{Checkout, is_safe_word};
use super::{Detected, Plan, PlanError, Provider, env, request};

/// Where the Go build puts its binary: under a dot directory of the app so that it cannot collide with
/// a source directory and is not served or committed by accident.
const GO_BINARY: &str = ".dmcp/app";

pub(super) fn detect(checkout: &Checkout) -> Result<Detected, PlanError> {
    let go_mod = checkout.read("go.mod")?.unwrap_or_default();
    let toolchain = match directives(&go_mod) {
        (Some(exact), _) => request(Tool::Go, Some(exact), "go.mod toolchain"),
        (None, Some(minimum)) => request(Tool::Go, Some(format!(">={minimum}")), "go.mod go"),
        (None, None) => request(Tool::Go, None, ""),
    };
    // A vendor directory with its manifest has every module: build offline from it.
    let vendored = checkout.is_file("vendor/modules.txt");
    // go.sum lists the module's dependencies; a module without one has nothing to download.
    let install = (!vendored && checkout.has_content("go.sum")).then(|| "go mod download".to_owned());
    let package = if checkout.has_file_with_extension(".", "go") {
        ".".to_owned()
    } else {
        // The common layout without a root main package: a single command under cmd/.
        match checkout.subdirectories("cmd").as_slice() {
            [only] => format!("./cmd/{only}"),
            _ => ".".to_owned(),
        }
    };
    let mode = if vendored { "-mod=vendor " } else { "" };
    let plan = Plan {
        toolchains: vec![toolchain],
        package_manager: install.as_ref().map(|_| "go".to_owned()),
        install,
        build: Some(format!("mkdir -p .dmcp && go build {mode}-o {GO_BINARY} {package}")),
        start: Some(format!("./{GO_BINARY}")),
        // Static binaries run anywhere; and the toolchain the builder provides is the one used, never one
        // `go` would download because go.mod names another.
        env: env(&[("CGO_ENABLED", "0"), ("GOTOOLCHAIN", "local")]),
        ..Plan::new(Provider::Go)
    };
    Ok(Detected { plan, missing_start_hint: "the Go build has no binary to run" })
}

/// The versions of go.mod's `toolchain go1.23.4` and `go 1.22` lines (`1.23.4`, `1.22`), when well-formed.
fn directives(go_mod: &str) -> (Option<String>, Option<String>) {
    let mut toolchain = None;
    let mut go = None;
    for line in go_mod.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("toolchain"), Some(name), None) => {
                toolchain = name.strip_prefix("go").filter(|v| is_version(v)).map(str::to_owned);
            }
            (Some("go"), Some(version), None) if is_version(version) => go = Some(version.to_owned()),
            _ => {}
        }
    }
    (toolchain, go)
}

fn is_version(v: &str) -> bool {
    is_safe_word(v) && v.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{app, env_has};
    use super::*;
    use toolchains::Request;

    fn go_request(constraint: &str, from: &str) -> Request {
        Request { tool: Tool::Go, constraint: Some(constraint.into()), from: Some(from.into()) }
    }

    #[test]
    fn given_go_mod_when_detect_then_go_build_into_dot_dmcp() {
        let app = app().file("go.mod", "module example.com/x\n\ngo 1.22\n").file("main.go", "package main");
        let plan = app.detect().unwrap();
        assert_eq!(plan.provider, Provider::Go);
        assert_eq!(plan.install, None);
        assert_eq!(plan.build.as_deref(), Some("mkdir -p .dmcp && go build -o .dmcp/app ."));
        assert_eq!(plan.start.as_deref(), Some("./.dmcp/app"));
        assert_eq!(plan.toolchains, [go_request(">=1.22", "go.mod go")]);
        assert!(env_has(&plan, "CGO_ENABLED", "0") && env_has(&plan, "GOTOOLCHAIN", "local"));
        assert_eq!(plan.deps, None);
        assert_eq!(
            plan.describe(),
            "go >=1.22 (go.mod go): build `mkdir -p .dmcp && go build -o .dmcp/app .`, start `./.dmcp/app`"
        );
    }

    #[test]
    fn given_go_mod_with_go_and_toolchain_lines_when_detect_then_the_toolchain_is_exact() {
        let go_mod =
            "module x\n\ngo 1.22.1 // minimum\n\ntoolchain go1.23.4\n\nrequire (\n\tgithub.com/a/b v1.0.0\n)\n";
        let plan = app().file("go.mod", go_mod).file("main.go", "").detect().unwrap();
        assert_eq!(plan.toolchains, [go_request("1.23.4", "go.mod toolchain")]);
    }

    #[test]
    fn given_go_mod_without_a_version_when_detect_then_any_go() {
        let plan = app().file("go.mod", "module x\n").file("main.go", "").detect().unwrap();
        assert_eq!(plan.toolchains, [Request { tool: Tool::Go, constraint: None, from: None }]);
        assert_eq!(plan.describe(), "go: build `mkdir -p .dmcp && go build -o .dmcp/app .`, start `./.dmcp/app`");
    }

    #[test]
    fn given_go_mod_with_shell_syntax_in_a_version_when_detect_then_it_is_ignored() {
        let plan =
            app().file("go.mod", "module x\ngo 1.22;rm\ntoolchain go$(x)\n").file("main.go", "").detect().unwrap();
        assert_eq!(plan.toolchains[0].constraint, None);
    }

    #[test]
    fn given_go_sum_and_a_single_cmd_when_detect_then_download_and_build_the_cmd() {
        let app = app().file("go.mod", "module x").file("go.sum", "a v1 h1:x\n").file("cmd/server/main.go", "");
        let plan = app.detect().unwrap();
        assert_eq!(plan.install.as_deref(), Some("go mod download"));
        assert_eq!(plan.package_manager.as_deref(), Some("go"));
        assert_eq!(plan.build.as_deref(), Some("mkdir -p .dmcp && go build -o .dmcp/app ./cmd/server"));
    }

    #[test]
    fn given_a_vendor_directory_when_detect_then_build_offline_without_download() {
        let app = app()
            .file("go.mod", "module x\ngo 1.22\n")
            .file("go.sum", "a v1 h1:x\n")
            .file("vendor/modules.txt", "# a v1\n")
            .file("main.go", "");
        let plan = app.detect().unwrap();
        assert_eq!((plan.install, plan.package_manager), (None, None));
        assert_eq!(plan.build.as_deref(), Some("mkdir -p .dmcp && go build -mod=vendor -o .dmcp/app ."));
    }

    #[test]
    fn given_an_empty_go_sum_when_detect_then_nothing_to_download() {
        let app = app().file("go.mod", "module x").file("go.sum", "\n").file("main.go", "");
        assert_eq!(app.detect().unwrap().install, None);
    }

    #[test]
    fn given_a_huge_go_sum_when_detect_then_it_is_skimmed_not_refused() {
        let go_sum = "github.com/a/b v1.0.0 h1:abc=\n".repeat(60_000);
        let app = app().file("go.mod", "module x").file("go.sum", go_sum).file("main.go", "");
        assert_eq!(app.detect().unwrap().install.as_deref(), Some("go mod download"));
    }
}
