//! Python: PEP 440 specifiers (and poetry's `^`/`~`) against the host's interpreters, the only ones
//! obtainable here.

use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};

use crate::{Ctx, Error, HostPython, Tool, Toolchain};

/// Patches tried when checking whether a constraint accepts some release of a minor line.
const PATCHES_PER_MINOR: u64 = 40;

/// A Python constraint: any of the alternatives (poetry's `||`) holds.
#[derive(Debug, Clone)]
pub(crate) enum Want {
    /// No version file, or `system`: the host's default interpreter.
    Default,
    Any(Vec<VersionSpecifiers>),
}

pub(crate) fn parse(constraint: Option<&str>) -> Result<Want, String> {
    let Some(text) = constraint else { return Ok(Want::Default) };
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    if matches!(lower.as_str(), "system" | "*" | "3" | "3.x" | "python3") {
        return Ok(Want::Default);
    }
    let mut alternatives = Vec::new();
    for alternative in lower.split("||") {
        let mut clauses = Vec::new();
        for clause in alternative.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            clauses.push(translate(clause)?);
        }
        if clauses.is_empty() {
            return Err(format!("`{text}` has an empty alternative"));
        }
        let joined = clauses.join(",");
        let specifiers = VersionSpecifiers::from_str(&joined).map_err(|e| format!("`{joined}`: {e}"))?;
        alternatives.push(specifiers);
    }
    Ok(Want::Any(alternatives))
}

/// One clause as a PEP 440 specifier: a bare version (`3.11`, `python-3.11.4`, `3.11.x`) means that
/// release line or release; poetry's `^3.11` is `>=3.11,<4`, `~3.11` is `>=3.11,<3.12`.
fn translate(clause: &str) -> Result<String, String> {
    let clause = clause.strip_prefix("cpython-").or_else(|| clause.strip_prefix("python-")).unwrap_or(clause);
    let clause = clause.strip_prefix("python").unwrap_or(clause).trim();
    if clause.starts_with("pypy") {
        return Err("PyPy is not provided: only CPython".into());
    }
    let release = |text: &str| -> Result<Vec<u64>, String> {
        let text = text.trim().trim_end_matches(".x").trim_end_matches(".*");
        text.split('.')
            .map(|p| p.parse::<u64>().map_err(|_| format!("`{clause}` is not a Python version or specifier")))
            .collect()
    };
    let join = |parts: &[u64]| parts.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
    if let Some(rest) = clause.strip_prefix('^') {
        let parts = release(rest)?;
        // Poetry: the first non-zero number may not change.
        let upper = match parts[..] {
            [0, minor, ..] => format!("0.{}", minor + 1),
            [major, ..] => format!("{}", major + 1),
            _ => return Err(format!("`{clause}` is not a Python version")),
        };
        return Ok(format!(">={},<{upper}", join(&parts)));
    }
    if let Some(rest) = clause.strip_prefix('~').filter(|r| !r.starts_with('=')) {
        let parts = release(rest)?;
        let upper = match parts[..] {
            [major] => format!("{}", major + 1),
            [major, minor, ..] => format!("{major}.{}", minor + 1),
            _ => return Err(format!("`{clause}` is not a Python version")),
        };
        return Ok(format!(">={},<{upper}", join(&parts)));
    }
    if clause.starts_with(|c: char| c.is_ascii_digit()) {
        let parts = release(clause)?;
        return Ok(match parts.len() {
            1 | 2 => format!("=={}.*", join(&parts)),
            _ => format!("=={}", join(&parts)),
        });
    }
    Ok(clause.to_string())
}

fn version(text: &str) -> Option<Version> {
    Version::from_str(text).ok()
}

pub(crate) fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (version(a), version(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => a.cmp(b),
    }
}

fn accepts(alternatives: &[VersionSpecifiers], v: &Version) -> bool {
    alternatives.iter().any(|s| s.contains(v))
}

/// The interpreter to use, and a note when only its minor line matched.
pub(crate) fn select<'a>(want: &Want, hosts: &'a [HostPython]) -> Option<(&'a HostPython, Option<String>)> {
    let alternatives = match want {
        Want::Default => return hosts.first().map(|h| (h, None)),
        Want::Any(alternatives) => alternatives,
    };
    // The default interpreter first (hosts are ordered so), then the newest other.
    if let Some(host) = hosts.iter().find(|h| version(&h.version).is_some_and(|v| accepts(alternatives, &v))) {
        return Some((host, None));
    }
    // CPython patch releases of one minor are compatible: 3.11.7 asked, 3.11.2 it is.
    hosts.iter().find_map(|h| {
        let v = version(&h.version)?;
        let (major, minor) = (*v.release().first()?, *v.release().get(1)?);
        let patch = (0..PATCHES_PER_MINOR)
            .map(|p| Version::new([major, minor, p]))
            .find(|candidate| accepts(alternatives, candidate))?;
        let note = format!(
            "the host's Python {} is used instead of {patch} (same minor line; other CPython builds cannot be \
             obtained here)",
            h.version
        );
        Some((h, Some(note)))
    })
}

pub(crate) fn usable(hosts: &[HostPython]) -> Vec<String> {
    hosts.iter().map(|h| format!("{} (host)", h.version)).collect()
}

pub(crate) async fn provide(ctx: &Ctx<'_>, hosts: &[HostPython]) -> Result<Toolchain, Error> {
    let want = parse(ctx.constraint).map_err(|reason| ctx.invalid(reason))?;
    let Some((host, note)) = select(&want, hosts) else {
        return Err(ctx.unavailable(usable(hosts)));
    };
    // `python3`, `python` and `python3.N` all name the chosen interpreter, whatever else /usr has.
    let exe_name = std::path::Path::new(&host.exe).file_name().map(|n| n.to_string_lossy().into_owned());
    let mut names = vec!["python3".to_string(), "python".to_string()];
    names.extend(exe_name.filter(|n| !names.contains(n)));
    let links = names.into_iter().map(|name| (name, host.exe.clone())).collect();
    let installed = crate::host_links(ctx, &host.version, links).await?;
    let mut toolchain = crate::cached_toolchain(Tool::Python, &installed, "python3", Vec::new());
    toolchain.notes.extend(note.map(|n| format!("{}: {n}", ctx.asked())));
    Ok(toolchain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<HostPython> {
        vec![
            HostPython { version: "3.11.2".into(), exe: "/usr/bin/python3.11".into() },
            HostPython { version: "3.12.8".into(), exe: "/usr/local/bin/python3.12".into() },
        ]
    }

    fn pick_from(hosts: &[HostPython], constraint: &str) -> Option<(String, bool)> {
        let want = parse(Some(constraint)).unwrap_or_else(|e| panic!("{constraint}: {e}"));
        select(&want, hosts).map(|(h, note)| (h.version.clone(), note.is_some()))
    }

    fn pick(constraint: &str) -> Option<(String, bool)> {
        pick_from(&hosts()[..1], constraint)
    }

    #[test]
    fn given_pep440_specifiers_when_selected_against_the_host_then_matches_are_exact() {
        for c in
            [">=3.10", "~=3.11", "==3.11.*", ">=3.9,<3.13", ">=3.9, <3.13", "3.11", "3.11.2", "python-3.11.2", "3.11.x"]
        {
            assert_eq!(pick(c), Some(("3.11.2".into(), false)), "{c}");
        }
        for c in ["^3.11", "~3.11", "^3.10", ">=3.12 || ~3.11", "3", "system"] {
            assert_eq!(pick(c), Some(("3.11.2".into(), false)), "{c}");
        }
    }

    #[test]
    fn given_a_patch_the_host_lacks_when_selected_then_the_same_minor_is_used_with_a_note() {
        assert_eq!(pick("3.11.7"), Some(("3.11.2".into(), true)));
        assert_eq!(pick("==3.11.7"), Some(("3.11.2".into(), true)));
        assert_eq!(pick(">=3.11.4"), Some(("3.11.2".into(), true)));
        assert_eq!(pick("~3.11.9"), Some(("3.11.2".into(), true)));
    }

    #[test]
    fn given_a_minor_the_host_lacks_when_selected_then_nothing_is_chosen() {
        assert_eq!(pick("3.13"), None);
        assert_eq!(pick(">=3.12"), None);
        assert_eq!(pick("<3.10"), None);
        assert_eq!(pick("^3.12"), None);
        assert_eq!(usable(&hosts()[..1]), ["3.11.2 (host)"]);
    }

    #[test]
    fn given_several_host_interpreters_when_selected_then_the_default_wins_unless_excluded() {
        assert_eq!(pick_from(&hosts(), ">=3.10"), Some(("3.11.2".into(), false)));
        assert_eq!(pick_from(&hosts(), "3.12"), Some(("3.12.8".into(), false)));
        assert_eq!(pick_from(&hosts(), ">=3.12"), Some(("3.12.8".into(), false)));
        assert_eq!(pick_from(&hosts(), "3.12.9"), Some(("3.12.8".into(), true)));
        assert_eq!(select(&Want::Default, &hosts()).unwrap().0.exe, "/usr/bin/python3.11");
    }

    #[test]
    fn given_malformed_or_foreign_constraints_when_parsed_then_they_are_refused() {
        for bad in ["pypy3.10", "three", ">=3.x.y", "^", ">= 3.9 ||"] {
            assert!(parse(Some(bad)).is_err(), "{bad}");
        }
        assert!(matches!(parse(None), Ok(Want::Default)));
    }

    #[test]
    fn given_poetry_ranges_when_translated_then_pep440_bounds_result() {
        assert_eq!(translate("^3.11").unwrap(), ">=3.11,<4");
        assert_eq!(translate("^0.3").unwrap(), ">=0.3,<0.4");
        assert_eq!(translate("~3.11").unwrap(), ">=3.11,<3.12");
        assert_eq!(translate("~3").unwrap(), ">=3,<4");
        assert_eq!(translate("~=3.11").unwrap(), "~=3.11");
        assert_eq!(translate("3.11.4").unwrap(), "==3.11.4");
        assert_eq!(translate("3.11").unwrap(), "==3.11.*");
    }
}
