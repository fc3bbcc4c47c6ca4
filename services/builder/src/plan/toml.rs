//! The few lookups detection makes in TOML files (`Cargo.toml`, `pyproject.toml`, `Pipfile`,
//! `rust-toolchain.toml`, the `[[package]] name`s of `uv.lock` and `poetry.lock`), over the `toml` crate.
//!
//! Two ways to read a file, because the files play two roles:
//! - [`Toml::parse`] for a manifest the app relies on. The tool that installs or builds the app reads it with a
//!   real TOML parser and would reject it too, so a file that does not parse is a [`PlanError::InvalidFile`]
//!   naming the line and column, which tells the agent what to fix before any build runs.
//! - [`Toml::salvage`] for a lock file, which is only mined for dependency names (a hint for which framework
//!   starts the app) and is skimmed up to a limit, so a big one arrives cut off mid-entry. What parses before
//!   the break is kept; a lock that is really corrupt is reported by the install (`uv export --frozen`,
//!   `poetry install`) in the tool's own words, so detection does not fail on it.
//!
//! The input is untrusted: the crate refuses nesting deeper than its recursion limit instead of overflowing the
//! stack, and reads are capped by the checkout ([`super::checkout`]).

use toml::{Table, Value};

use super::PlanError;

/// A parsed TOML document. Tables are addressed by dotted paths (`tool.poetry.dependencies`, "" is the root);
/// the callers' paths never need quoted keys.
#[derive(Debug, Default)]
pub(super) struct Toml(Table);

impl Toml {
    /// A manifest: `file` is named in the error when `text` is not TOML.
    pub(super) fn parse(file: &str, text: &str) -> Result<Toml, PlanError> {
        text.parse()
            .map(Toml)
            .map_err(|error| PlanError::InvalidFile { file: file.to_owned(), error: describe(text, &error) })
    }

    /// A lock file, possibly cut off by the skim limit: the document up to the last table header before the
    /// first error, which keeps every complete `[[package]]` before a truncation; empty when even that fails.
    pub(super) fn salvage(text: &str) -> Toml {
        let error = match text.parse() {
            Ok(table) => return Toml(table),
            Err(error) => error,
        };
        let mut end = error.span().map_or(text.len(), |span| span.start.min(text.len()));
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let cut = text[..end].rfind("\n[").map_or(0, |at| at + 1);
        text[..cut].parse().map(Toml).unwrap_or_default()
    }

    /// The table at a dotted path; not an array of tables.
    fn table(&self, path: &str) -> Option<&Table> {
        if path.is_empty() {
            return Some(&self.0);
        }
        path.split('.').try_fold(&self.0, |table, key| table.get(key)?.as_table())
    }

    /// The value at a dotted path.
    fn value(&self, path: &str) -> Option<&Value> {
        let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
        self.table(parent)?.get(key)
    }

    /// A string value of `key` in `[table]`.
    pub(super) fn string(&self, table: &str, key: &str) -> Option<String> {
        self.table(table)?.get(key)?.as_str().map(str::to_owned)
    }

    /// The strings of an array value (elements that are not strings are skipped).
    pub(super) fn strings(&self, table: &str, key: &str) -> Vec<String> {
        let array = self.table(table).and_then(|t| t.get(key)).and_then(Value::as_array);
        array.into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect()
    }

    /// `key` of every `[[table]]` element that sets it as a string.
    pub(super) fn array_table_strings(&self, table: &str, key: &str) -> Vec<String> {
        let elements = self.value(table).and_then(Value::as_array);
        elements.into_iter().flatten().filter_map(|e| e.get(key)?.as_str()).map(str::to_owned).collect()
    }

    /// The keys of `[table]`: its values and its subtables (`[table.key]`, `key.sub = ...`).
    pub(super) fn keys(&self, table: &str) -> Vec<&str> {
        self.table(table).into_iter().flat_map(|t| t.keys()).map(String::as_str).collect()
    }

    /// Whether `[table]` or `[[table]]` appears, as a header or through dotted keys.
    pub(super) fn has_table(&self, table: &str) -> bool {
        match self.value(table) {
            Some(Value::Table(_)) => true,
            Some(Value::Array(elements)) => !elements.is_empty() && elements.iter().all(Value::is_table),
            _ => false,
        }
    }

    /// Whether `[table]` has entries, values or subtables.
    pub(super) fn has_entries(&self, table: &str) -> bool {
        self.table(table).is_some_and(|t| !t.is_empty())
    }

    /// Whether a table `[<prefix>.<anything>.<suffix>]` appears, e.g. the `[target.<cfg>.dependencies]` of a
    /// Cargo.toml.
    pub(super) fn has_table_matching(&self, prefix: &str, suffix: &str) -> bool {
        let children = self.table(prefix).into_iter().flat_map(|t| t.values());
        children.filter_map(Value::as_table).any(|child| child.get(suffix).is_some_and(Value::is_table))
    }
}

/// `line 3, column 9: <what the parser expected>`, on one line: the message is embedded in a sentence.
fn describe(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(start) = error.span().map(|span| span.start).filter(|&start| text.is_char_boundary(start)) else {
        return message;
    };
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    format!("line {line}, column {column}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Toml {
        Toml::parse("test.toml", text).unwrap()
    }

    fn invalid(text: &str) -> String {
        match Toml::parse("test.toml", text) {
            Err(PlanError::InvalidFile { file, error }) if file == "test.toml" => error,
            other => panic!("expected InvalidFile for test.toml, got {other:?}"),
        }
    }

    #[test]
    fn given_tables_and_keys_when_parsed_then_values_are_found_by_table() {
        let toml = parse("name = \"root\"\n[package]\nname = \"web\" # the binary\nversion = \"0.1.0\"\n");
        assert_eq!(toml.string("", "name").as_deref(), Some("root"));
        assert_eq!(toml.string("package", "name").as_deref(), Some("web"));
        assert_eq!(toml.keys("package"), ["name", "version"]);
        assert_eq!(toml.string("package", "version-x"), None);
        assert_eq!(toml.string("nothing", "name"), None);
    }

    #[test]
    fn given_a_multi_line_array_with_brackets_in_strings_when_parsed_then_every_string_is_kept() {
        let text = "[project]\ndependencies = [\n  \"uvicorn[standard]>=0.30\", # server\n  'fastapi',\n  \
                    \"a; python_version < '3.12'\", 42, [\"nested\"],\n]\nname = \"x\"\n";
        let toml = parse(text);
        assert_eq!(
            toml.strings("project", "dependencies"),
            ["uvicorn[standard]>=0.30", "fastapi", "a; python_version < '3.12'"]
        );
        assert_eq!(toml.string("project", "name").as_deref(), Some("x"));
        assert!(toml.strings("project", "name").is_empty());
    }

    #[test]
    fn given_multi_line_strings_when_parsed_then_they_do_not_leak_keys() {
        let text = "[project]\ndescription = \"\"\"\nname = \"fake\"\n[fake]\n\"\"\"\nname = \"real\"\n";
        let toml = parse(text);
        assert_eq!(toml.string("project", "name").as_deref(), Some("real"));
        assert!(!toml.has_table("fake"));
        assert_eq!(toml.string("project", "description").as_deref(), Some("name = \"fake\"\n[fake]\n"));
    }

    #[test]
    fn given_dotted_and_quoted_keys_when_parsed_then_they_fold_into_tables() {
        let toml = parse("[tool]\npoetry.dependencies.python = \"^3.11\"\n[\"tool\" . 'x']\n\"a.b\" = \"1\"\n");
        assert_eq!(toml.string("tool.poetry.dependencies", "python").as_deref(), Some("^3.11"));
        assert_eq!(toml.string("tool.x", "a.b").as_deref(), Some("1"));
        assert!(toml.has_table("tool.poetry"));
        assert_eq!(toml.keys("tool"), ["poetry", "x"]);
    }

    #[test]
    fn given_arrays_of_tables_when_parsed_then_each_element_is_listed() {
        let text = "version = 1\n[[package]]\nname = \"flask\"\n[package.dependencies]\nname = \"not-a-package\"\n\
                    [[package]]\nname = \"gunicorn\"\n[[package]]\nversion = \"1\"\n";
        let toml = parse(text);
        assert_eq!(toml.array_table_strings("package", "name"), ["flask", "gunicorn"]);
        assert_eq!(toml.string("package", "name"), None);
        assert!(toml.has_table("package"));
        assert!(!toml.has_table("version"));
    }

    #[test]
    fn given_inline_tables_and_subtables_when_asked_then_has_entries_sees_both() {
        let toml = parse("[dependencies.serde]\nversion = \"1\"\n[dev-dependencies]\n");
        assert!(toml.has_entries("dependencies"));
        assert!(!toml.has_entries("dev-dependencies"));
        assert!(toml.has_table("dev-dependencies"));
        let toml = parse("[target.'cfg(unix)'.dependencies]\nlibc = { version = \"0.2\" }\n");
        assert!(toml.has_table_matching("target", "dependencies"));
        assert!(!toml.has_table_matching("target", "build-dependencies"));
        assert_eq!(toml.keys("tool.poetry.dependencies"), Vec::<&str>::new());
    }

    #[test]
    fn given_escapes_when_a_string_is_read_then_they_are_decoded() {
        let toml = parse("a = \"a\\\"b\\\\c\\u00e9\"\nb = 'C:\\path'\nc = 42\n");
        assert_eq!(toml.string("", "a").as_deref(), Some("a\"b\\cé"));
        assert_eq!(toml.string("", "b").as_deref(), Some(r"C:\path"));
        assert_eq!(toml.string("", "c"), None);
    }

    #[test]
    fn given_invalid_toml_when_parsed_then_the_error_names_line_and_column() {
        let error = invalid("[package]\nname = \"web\"\nversion = 0.1.0\n");
        assert_eq!(error, "line 3, column 14: invalid float, expected nothing");
        assert!(!error.contains('\n'), "{error}");
        let error = invalid("[project]\ndependencies = [\"flask\",\n");
        assert!(error.starts_with("line 2, column "), "{error}");
        let error = invalid("[a]\nx = 1\n[a]\n");
        assert!(error.starts_with("line 3, column "), "{error}");
        let error = invalid("[p]\nname = \"x\"\nname = \"y\"\n");
        assert_eq!(error, "line 3, column 1: duplicate key");
    }

    #[test]
    fn given_truncated_or_broken_input_when_parsed_then_an_error_and_no_panic() {
        for text in [
            "[project",
            "a = [\"x\", ",
            "a = \"unterminated",
            "a = '''open",
            "= 1",
            "[[x]]\nname = 'é",
            "x = ]]]",
            "é = \"",
            "a = \"\u{0}\"",
            "a = 1 2",
            "a.b = 1\n[a]\nb = 2",
        ] {
            let error = invalid(text);
            assert!(error.starts_with("line ") && error.contains(", column "), "{text:?}: {error}");
            let _ = Toml::salvage(text);
        }
    }

    #[test]
    fn given_deeply_nested_arrays_when_parsed_then_an_error_instead_of_a_stack_overflow() {
        let text = format!("a = {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        assert!(Toml::parse("f", &text).is_err());
        assert!(Toml::salvage(&text).keys("").is_empty());
    }

    #[test]
    fn given_a_lock_cut_off_mid_entry_when_salvaged_then_the_complete_entries_are_kept() {
        let lock = "version = 1\n[[package]]\nname = \"flask\"\nversion = \"3.0\"\n\
                    [[package]]\nname = \"gunicorn\"\n\n[[package]]\nname = \"uvic";
        assert_eq!(Toml::salvage(lock).array_table_strings("package", "name"), ["flask", "gunicorn"]);
        let cut_in_header = "[[package]]\nname = \"flask\"\n[[pack";
        assert_eq!(Toml::salvage(cut_in_header).array_table_strings("package", "name"), ["flask"]);
    }

    #[test]
    fn given_a_lock_with_garbage_in_the_middle_when_salvaged_then_the_entries_before_it_are_kept() {
        let lock = "[[package]]\nname = \"django\"\n[[package]]\nname = = \"x\"\n[[package]]\nname = \"gunicorn\"\n";
        assert_eq!(Toml::salvage(lock).array_table_strings("package", "name"), ["django"]);
        assert!(Toml::salvage("not toml at all").array_table_strings("package", "name").is_empty());
    }
}
