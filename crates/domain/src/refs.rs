//! References from a service's variables to its resources: `${{ resources.<name>.<field> }}`,
//! resolved when a deployment starts, so an agent wires an app to its database by name.

/// The fields a reference may read.
pub const FIELDS: &[&str] = &["url", "token", "user", "password", "host", "port", "database"];

/// One reference inside a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub resource: String,
    pub field: String,
    /// Byte range of the whole `${{ … }}` in the value.
    pub span: std::ops::Range<usize>,
}

/// Finds every reference in `value`; a malformed one is an error saying what to write.
pub fn parse(value: &str) -> Result<Vec<Ref>, String> {
    let mut refs = Vec::new();
    let mut from = 0;
    while let Some(start) = value[from..].find("${{").map(|i| i + from) {
        let end = value[start..]
            .find("}}")
            .map(|i| start + i + 2)
            .ok_or_else(|| format!("`{}` opens `${{{{` without closing `}}}}`", excerpt(&value[start..])))?;
        let inner = value[start + 3..end - 2].trim();
        let mut parts = inner.split('.');
        let (Some("resources"), Some(resource), Some(field), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "`{}` is not a reference: write `${{{{ resources.<name>.<field> }}}}`",
                excerpt(&value[start..end])
            ));
        };
        if !FIELDS.contains(&field) {
            return Err(format!("`{field}` is not a resource field: use one of {}", FIELDS.join(", ")));
        }
        if resource.is_empty() {
            return Err("a reference names no resource: write `${{ resources.<name>.url }}`".into());
        }
        refs.push(Ref { resource: resource.to_owned(), field: field.to_owned(), span: start..end });
        from = end;
    }
    Ok(refs)
}

/// Replaces every reference with what `lookup(resource, field)` gives; the first reference it
/// cannot resolve is returned as the error.
pub fn resolve(value: &str, mut lookup: impl FnMut(&str, &str) -> Option<String>) -> Result<String, Ref> {
    let refs = parse(value).unwrap_or_default();
    let mut out = String::with_capacity(value.len());
    let mut at = 0;
    for r in refs {
        let replacement = lookup(&r.resource, &r.field).ok_or_else(|| r.clone())?;
        out.push_str(&value[at..r.span.start]);
        out.push_str(&replacement);
        at = r.span.end;
    }
    out.push_str(&value[at..]);
    Ok(out)
}

fn excerpt(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_references_when_parsed_then_names_and_fields() {
        let refs = parse("postgres://${{ resources.db.user }}:${{resources.db.password}}@x").unwrap();
        let got: Vec<_> = refs.iter().map(|r| (r.resource.as_str(), r.field.as_str())).collect();
        assert_eq!(got, [("db", "user"), ("db", "password")]);
        assert!(parse("plain value, $HOME and {{ x }}").unwrap().is_empty());
    }

    #[test]
    fn given_bad_references_when_parsed_then_errors_say_what_to_write() {
        assert!(parse("${{ resources.db.secret }}").unwrap_err().contains("url"));
        assert!(parse("${{ services.db.url }}").unwrap_err().contains("resources.<name>"));
        assert!(parse("${{ resources.db.url").unwrap_err().contains("without closing"));
    }

    #[test]
    fn given_values_when_resolved_then_substituted_or_first_missing_returned() {
        let got = resolve("a=${{ resources.db.url }};b", |r, f| Some(format!("{r}:{f}"))).unwrap();
        assert_eq!(got, "a=db:url;b");
        let missing = resolve("${{ resources.gone.url }}", |_, _| None).unwrap_err();
        assert_eq!(missing.resource, "gone");
    }
}
