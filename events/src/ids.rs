use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// Declares a ULID id type that prints with a short prefix (`usr_01J…`), so that an id read in a
/// log or a tool answer says what it names.
macro_rules! ulid_id {
    ($name:ident, $prefix:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub Ulid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn new() -> Self {
                Self(Ulid::generate())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let raw = s
                    .strip_prefix(concat!($prefix, "_"))
                    .ok_or_else(|| format!("expected an id starting with `{}_`, got `{s}`", $prefix))?;
                Ulid::from_string(raw)
                    .map(Self)
                    .map_err(|e| format!("`{s}` is not a valid id: {e}"))
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": concat!("^", $prefix, "_[0-9A-HJKMNP-TV-Z]{26}$"),
                    "description": $doc,
                })
            }
        }
    };
}

ulid_id!(UserId, "usr", "An account (a user of the platform).");
ulid_id!(ApiKeyId, "key", "An API key of an account.");
ulid_id!(RepoId, "repo", "A git repository.");
ulid_id!(TokenId, "tok", "A temporary git token of a repository.");
ulid_id!(ServiceId, "svc", "A service (a running app).");
ulid_id!(DeploymentId, "dep", "One deployment of a service: one commit, built and run.");
ulid_id!(ResourceId, "res", "A resource (a database).");
ulid_id!(ZoneId, "zone", "A DNS zone delegated to the platform.");
ulid_id!(DomainId, "dom", "A custom domain attached to a service.");

impl RepoId {
    /// The bare repository's directory name under the platform's git root: named by id, never
    /// by user input.
    pub fn dir_name(&self) -> String {
        format!("{}.git", self.0.to_string().to_lowercase())
    }
}

impl DeploymentId {
    /// A short name for the deployment's sandbox, cgroups and run directory (`[a-z0-9]{12}`:
    /// the random tail of the ULID, unique enough within one platform).
    pub fn short(&self) -> String {
        self.0.to_string()[14..].to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_json() {
        let id = UserId::new();
        let text = id.to_string();
        assert!(text.starts_with("usr_"));
        assert_eq!(text.parse::<UserId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<UserId>(&json).unwrap(), id);
    }

    #[test]
    fn ids_of_another_kind_are_refused() {
        let key = ApiKeyId::new().to_string();
        let err = key.parse::<UserId>().unwrap_err();
        assert!(err.contains("usr_"), "{err}");
    }
}
