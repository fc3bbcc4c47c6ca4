//! Package-manager CLIs a plan needs beyond its toolchain (pnpm, yarn, uv, poetry, pipenv):
//! installed by their own registry's package manager, in a build sandbox, into the owner's cache.

use crate::plan::{PackageTool, ToolRegistry};

/// The command that installs `tool` at `guest` (a directory under `/cache/tools`), and the
/// package manager running it.
pub(crate) fn install_command(tool: &PackageTool, guest: &str) -> (String, &'static str) {
    match tool.registry {
        ToolRegistry::Npm => {
            let package = npm_package(&tool.name, &tool.version);
            (format!("npm install --global --no-audit --no-fund --prefix {guest} {package}@{}", tool.version), "npm")
        }
        ToolRegistry::Pypi => (
            format!(
                "python3 -m venv --clear {guest} && {guest}/bin/pip install --no-input --quiet {}=={}",
                tool.name, tool.version
            ),
            "pip",
        ),
    }
}

/// Yarn 2 and later are published as `@yarnpkg/cli-dist`; `yarn` on the registry is Yarn 1.
fn npm_package<'a>(name: &'a str, version: &str) -> &'a str {
    let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(1);
    if name == "yarn" && major >= 2 { "@yarnpkg/cli-dist" } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, version: &str, registry: ToolRegistry) -> PackageTool {
        PackageTool { name: name.into(), version: version.into(), registry }
    }

    #[test]
    fn given_npm_tools_when_installed_then_npm_installs_the_right_package_under_the_prefix() {
        let (cmd, pm) = install_command(&tool("pnpm", "9.15.0", ToolRegistry::Npm), "/cache/tools/pnpm-9.15.0");
        assert_eq!(cmd, "npm install --global --no-audit --no-fund --prefix /cache/tools/pnpm-9.15.0 pnpm@9.15.0");
        assert_eq!(pm, "npm");
        let (berry, _) = install_command(&tool("yarn", "4.5.0", ToolRegistry::Npm), "/cache/tools/yarn-4.5.0");
        assert!(berry.ends_with("@yarnpkg/cli-dist@4.5.0"), "{berry}");
        let (classic, _) = install_command(&tool("yarn", "1.22.22", ToolRegistry::Npm), "/cache/tools/yarn-1.22.22");
        assert!(classic.ends_with(" yarn@1.22.22"), "{classic}");
    }

    #[test]
    fn given_a_pypi_tool_when_installed_then_a_venv_of_its_own() {
        let (cmd, pm) = install_command(&tool("poetry", "2.2.1", ToolRegistry::Pypi), "/cache/tools/poetry-2.2.1");
        assert_eq!(
            cmd,
            "python3 -m venv --clear /cache/tools/poetry-2.2.1 && /cache/tools/poetry-2.2.1/bin/pip install --no-input --quiet poetry==2.2.1"
        );
        assert_eq!(pm, "pip");
    }
}
