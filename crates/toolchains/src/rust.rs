//! Rust: `rust-toolchain(.toml)` channels against the host's toolchain, copied out of `/root` into
//! the cache once so sandboxes can see it.

use chrono::NaiveDate;

use crate::{Ctx, Error, HostRust, Tool, Toolchain};

/// Parts of the sysroot sandboxes need: `share/` (docs, man pages) and the standard library's
/// sources (for IDEs and build-std) stay behind.
const COPIED: &[&str] = &["bin", "lib"];
const SKIPPED: &[&str] = &["lib/rustlib/src", "lib/rustlib/rust-analyzer-proc-macro-srv"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Want {
    /// No rust-toolchain file, or `stable`.
    Stable,
    Beta(Option<NaiveDate>),
    Nightly(Option<NaiveDate>),
    /// `1.95.0`, or `1.95` (any patch).
    Release(u64, u64, Option<u64>),
}

pub(crate) fn parse(constraint: Option<&str>) -> Result<Want, String> {
    let Some(text) = constraint else { return Ok(Want::Stable) };
    let mut channel = text.trim().to_ascii_lowercase();
    // `stable-x86_64-unknown-linux-gnu`: the target is the host's anyway.
    for suffix in ["-x86_64-unknown-linux-gnu", "-aarch64-unknown-linux-gnu"] {
        if let Some(stripped) = channel.strip_suffix(suffix) {
            channel = stripped.to_string();
        }
    }
    let dated = |rest: &str| -> Result<Option<NaiveDate>, String> {
        match rest {
            "" => Ok(None),
            date => NaiveDate::parse_from_str(date.trim_start_matches('-'), "%Y-%m-%d")
                .map(Some)
                .map_err(|_| format!("`{text}`: expected a date such as nightly-2026-01-01")),
        }
    };
    if channel == "stable" {
        return Ok(Want::Stable);
    }
    if let Some(rest) = channel.strip_prefix("nightly") {
        return dated(rest).map(Want::Nightly);
    }
    if let Some(rest) = channel.strip_prefix("beta") {
        return dated(rest).map(Want::Beta);
    }
    let parts: Option<Vec<u64>> = channel.split('.').map(|p| p.parse().ok()).collect();
    match parts.as_deref() {
        Some([major, minor]) => Ok(Want::Release(*major, *minor, None)),
        Some([major, minor, patch]) => Ok(Want::Release(*major, *minor, Some(*patch))),
        _ => Err(format!("`{text}` is not a Rust channel (stable, beta, nightly, nightly-YYYY-MM-DD, 1.95.0)")),
    }
}

/// A nightly (or beta) named for a day carries the previous day's commit date, sometimes the same.
fn same_build(asked: Option<NaiveDate>, commit_date: Option<&str>) -> bool {
    let Some(asked) = asked else { return true };
    let Some(built) = commit_date.and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()) else { return false };
    built == asked || built.succ_opt() == Some(asked)
}

pub(crate) fn host_satisfies(want: &Want, host: &HostRust) -> bool {
    match want {
        Want::Stable => host.channel == "stable",
        Want::Beta(date) => host.channel == "beta" && same_build(*date, host.commit_date.as_deref()),
        Want::Nightly(date) => host.channel == "nightly" && same_build(*date, host.commit_date.as_deref()),
        Want::Release(major, minor, patch) => {
            let parts: Vec<u64> = host.version.split('.').filter_map(|p| p.parse().ok()).collect();
            host.channel == "stable"
                && parts.len() == 3
                && (parts[0], parts[1]) == (*major, *minor)
                && patch.is_none_or(|p| parts[2] == p)
        }
    }
}

pub(crate) fn describe(host: &HostRust) -> String {
    match (host.channel.as_str(), &host.commit_date) {
        ("stable", _) => format!("{} (host, stable)", host.version),
        (channel, Some(date)) => format!("{} (host, {channel} {date})", host.version),
        (channel, None) => format!("{} (host, {channel})", host.version),
    }
}

pub(crate) async fn provide(ctx: &Ctx<'_>, host: Option<&HostRust>) -> Result<Toolchain, Error> {
    let want = parse(ctx.constraint).map_err(|reason| ctx.invalid(reason))?;
    let Some(host) = host.filter(|h| host_satisfies(&want, h)) else {
        return Err(ctx.unavailable(host.map(describe).into_iter().collect()));
    };
    let version = host.version.clone();
    let key = crate::store::key(Tool::Rust, &version, std::slice::from_ref(&host.identity));
    let installed = match ctx.store().find(&key) {
        Some(found) => found,
        None => {
            let _lock = ctx.store().lock(&format!("rust-{version}")).await?;
            match ctx.store().find(&key) {
                Some(found) => found,
                None => copy_sysroot(ctx, host, key).await?,
            }
        }
    };
    Ok(crate::cached_toolchain(Tool::Rust, &installed, "cargo", Vec::new()))
}

async fn copy_sysroot(ctx: &Ctx<'_>, host: &HostRust, key: String) -> Result<crate::store::Installed, Error> {
    let staging = ctx.store().staging(&key)?;
    let manifest = crate::store::Manifest {
        tool: Tool::Rust,
        version: host.version.clone(),
        key,
        source: "host (copied into the cache)".into(),
        components: vec![format!("rustc {}", host.identity.lines().next().unwrap_or_default())],
        layout: crate::store::LAYOUT,
    };
    let sysroot = host.sysroot.clone();
    let started = std::time::Instant::now();
    let installed = crate::blocking(move || {
        let tree = staging.tree();
        for dir in COPIED {
            let skip: Vec<&str> = SKIPPED.iter().filter_map(|s| s.strip_prefix(&format!("{dir}/"))).collect();
            crate::archive::copy_tree(&sysroot.join(dir), &tree.join(dir), &skip)?;
        }
        for program in ["rustc", "cargo"] {
            if !tree.join("bin").join(program).is_file() {
                return Err(Error::install(&sysroot, format!("the host's Rust toolchain has no bin/{program}")));
            }
        }
        staging.commit(manifest)
    })
    .await?;
    tracing::info!(key = %installed.manifest.key, elapsed_ms = started.elapsed().as_millis() as u64,
        "host Rust toolchain copied into the cache");
    Ok(installed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn host(version: &str, channel: &str, date: &str) -> HostRust {
        HostRust {
            version: version.into(),
            channel: channel.into(),
            commit_date: Some(date.into()),
            sysroot: PathBuf::from("/root/.rustup/toolchains/x"),
            identity: format!("release: {version}"),
        }
    }

    fn ok(constraint: &str, host: &HostRust) -> bool {
        host_satisfies(&parse(Some(constraint)).unwrap(), host)
    }

    #[test]
    fn given_a_stable_host_when_checked_then_stable_and_its_release_match() {
        let h = host("1.95.0", "stable", "2026-04-14");
        assert!(host_satisfies(&parse(None).unwrap(), &h));
        assert!(ok("stable", &h) && ok("1.95.0", &h) && ok("1.95", &h) && ok("stable-x86_64-unknown-linux-gnu", &h));
        assert!(!ok("1.94.0", &h) && !ok("1.95.1", &h) && !ok("nightly", &h) && !ok("beta", &h));
        assert_eq!(describe(&h), "1.95.0 (host, stable)");
    }

    #[test]
    fn given_a_nightly_host_when_checked_then_only_nightly_of_its_day_matches() {
        let h = host("1.97.0-nightly", "nightly", "2025-12-31");
        assert!(ok("nightly", &h) && ok("nightly-2026-01-01", &h) && ok("nightly-2025-12-31", &h));
        assert!(!ok("nightly-2026-01-02", &h) && !ok("stable", &h) && !ok("1.97.0", &h));
        assert_eq!(describe(&h), "1.97.0-nightly (host, nightly 2025-12-31)");
    }

    #[test]
    fn given_malformed_channels_when_parsed_then_they_are_refused() {
        for bad in ["latest", "nightly-2026-13-01", "1", "1.x", "beta-yesterday"] {
            assert!(parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
