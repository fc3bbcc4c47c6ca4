//! Reading a failed step's output for the one line an agent needs: the package manager's error.
//!
//! Pure: lines in, a line out. Each package manager words its errors its own way; the patterns
//! below are the ones their failures start with (pip's `ERROR:`, npm's `npm error`/`npm ERR!`,
//! yarn's `error `, pnpm's `ERR_PNPM_…`, uv's `error:`/`×`, go's `go: …`, cargo's `error:`).

/// Whether `line` reads as the start of an error report. Progress and warnings do not.
pub(crate) fn is_error_line(line: &str) -> bool {
    let t = line.trim_start();
    // npm repeats its prefix on every line of a report; the `code`/`errno` lines say little.
    for prefix in ["npm error", "npm ERR!"] {
        if let Some(rest) = t.strip_prefix(prefix) {
            let rest = rest.trim();
            return !rest.is_empty()
                && !rest.starts_with("code ")
                && !rest.starts_with("errno ")
                && !rest.starts_with("A complete log")
                && !rest.starts_with("Log files");
        }
    }
    if t.contains("ERR_PNPM_") {
        return true;
    }
    if let Some(rest) = t.strip_prefix("go: ") {
        // `go: downloading x v1` is progress; anything else go says on its own line is the failure.
        return !rest.starts_with("downloading ") && !rest.starts_with("finding ") && !rest.starts_with("extracting ");
    }
    ["ERROR:", "ERROR ", "error:", "error[", "error ", "Error:", "fatal:", "FATAL:", "× ", "Traceback "]
        .iter()
        .any(|p| t.starts_with(p))
}

/// The first error line of a step's output, trimmed and cut to a readable length.
pub(crate) fn first_error<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<String> {
    lines.into_iter().find(|l| is_error_line(l)).map(|l| {
        let t = l.trim();
        if t.chars().count() > 300 { format!("{}…", t.chars().take(300).collect::<String>()) } else { t.to_owned() }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_pip_output_when_diagnosed_then_the_error_line_not_the_progress() {
        let out = [
            "Looking in indexes: http://10.201.0.1:4000/mirror/pypi/",
            "Collecting flask==99.0",
            "ERROR: Could not find a version that satisfies the requirement flask==99.0 (from versions: 3.0.0)",
            "ERROR: No matching distribution found for flask==99.0",
        ];
        assert_eq!(
            first_error(out).as_deref(),
            Some("ERROR: Could not find a version that satisfies the requirement flask==99.0 (from versions: 3.0.0)")
        );
    }

    #[test]
    fn given_npm_output_when_diagnosed_then_the_line_after_the_code() {
        let out = [
            "npm error code ETARGET",
            "npm error notarget No matching version found for express@^99.0.0.",
            "npm error A complete log of this run can be found in: /app/.npm/_logs/x.log",
        ];
        assert_eq!(
            first_error(out).as_deref(),
            Some("npm error notarget No matching version found for express@^99.0.0.")
        );
        assert_eq!(
            first_error(["npm ERR! code E404", "npm ERR! 404 Not Found - GET http://r/x"]).as_deref(),
            Some("npm ERR! 404 Not Found - GET http://r/x")
        );
    }

    #[test]
    fn given_yarn_pnpm_uv_go_and_cargo_output_when_diagnosed_then_their_error_lines() {
        assert_eq!(
            first_error(["yarn install v1.22.22", "error Couldn't find any versions for \"left-pad\""]).as_deref(),
            Some("error Couldn't find any versions for \"left-pad\"")
        );
        assert_eq!(
            first_error(["Progress: resolved 1", " ERR_PNPM_FETCH_404  GET http://r/x: Not Found - 404"]).as_deref(),
            Some("ERR_PNPM_FETCH_404  GET http://r/x: Not Found - 404")
        );
        assert_eq!(
            first_error(["  × No solution found when resolving dependencies:"]).as_deref(),
            Some("× No solution found when resolving dependencies:")
        );
        assert_eq!(
            first_error([
                "go: downloading deploymcp.test/greeting v1.0.0",
                "go: deploymcp.test/x@v9: reading: 404 Not Found"
            ])
            .as_deref(),
            Some("go: deploymcp.test/x@v9: reading: 404 Not Found")
        );
        assert_eq!(
            first_error(["    Updating crates.io index", "error: failed to select a version for `itoa`."]).as_deref(),
            Some("error: failed to select a version for `itoa`.")
        );
    }

    #[test]
    fn given_only_warnings_and_progress_when_diagnosed_then_none() {
        assert_eq!(first_error(["WARNING: pip is old", "added 3 packages", "warning: unused"]), None);
    }

    #[test]
    fn given_a_very_long_error_when_diagnosed_then_it_is_cut() {
        let long = format!("ERROR: {}", "x".repeat(1000));
        let cut = first_error([long.as_str()]).unwrap();
        assert_eq!(cut.chars().count(), 301);
        assert!(cut.ends_with('…'));
    }
}
