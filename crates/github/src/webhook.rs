//! Webhook deliveries: the `X-Hub-Signature-256` check over the raw body, then parsing of the
//! few events the platform acts on. Everything else is accepted and ignored, so GitHub does
//! not mark the App's webhook as failing.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// Whether `header` (`X-Hub-Signature-256`, `sha256=<hex>`) is GitHub's HMAC-SHA256 of the raw
/// `body` under `secret`, compared in constant time. Must run on the bytes as received, before
/// any parsing. A missing or malformed header, or an empty secret, is never valid.
pub fn verify_signature(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_digest) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    if secret.is_empty() {
        return false;
    }
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The `X-Hub-Signature-256` value GitHub sends with `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A verified delivery, reduced to what the platform acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookEvent {
    Push(PushEvent),
    /// Someone installed the App; `sender_login` is who clicked, `account_login` where.
    InstallationCreated {
        installation_id: u64,
        account_login: String,
        sender_login: String,
    },
    InstallationDeleted {
        installation_id: u64,
    },
    /// Any other event or action, named `event` or `event.action` (`ping`, `issues.opened`,
    /// `installation.suspend`): accepted and ignored.
    Ignored {
        event: String,
    },
}

/// A `push` delivery: `git_ref` is the full ref (`refs/heads/main`, `refs/tags/v1`); `after`
/// is all zeros when the ref was deleted, `before` when it was created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushEvent {
    pub repository_id: u64,
    pub full_name: String,
    pub git_ref: String,
    pub before: String,
    pub after: String,
    pub pusher: String,
    pub installation_id: Option<u64>,
}

#[derive(Deserialize)]
struct PushBody {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    repository: RepositoryRef,
    pusher: Pusher,
    installation: Option<InstallationRef>,
}

#[derive(Deserialize)]
struct RepositoryRef {
    id: u64,
    full_name: String,
}

#[derive(Deserialize)]
struct Pusher {
    name: String,
}

#[derive(Deserialize)]
struct InstallationRef {
    id: u64,
}

#[derive(Deserialize)]
struct InstallationBody {
    action: String,
    installation: InstallationObject,
    sender: Option<Login>,
}

#[derive(Deserialize)]
struct InstallationObject {
    id: u64,
    account: Option<Login>,
}

#[derive(Deserialize)]
struct Login {
    login: String,
}

/// Only `action` matters for events the platform ignores; it still has to be a JSON object.
#[derive(Deserialize)]
struct AnyBody {
    action: Option<serde_json::Value>,
}

/// Parses a verified delivery by its `X-GitHub-Event` header value.
pub fn parse_webhook(event: &str, body: &[u8]) -> Result<WebhookEvent> {
    let bad = |e: serde_json::Error| Error::BadPayload(format!("`{event}` delivery does not decode: {e}"));
    match event {
        "" => Err(Error::BadPayload("the X-GitHub-Event header is missing".to_owned())),
        "push" => {
            let push: PushBody = serde_json::from_slice(body).map_err(bad)?;
            Ok(WebhookEvent::Push(PushEvent {
                repository_id: push.repository.id,
                full_name: push.repository.full_name,
                git_ref: push.git_ref,
                before: push.before,
                after: push.after,
                pusher: push.pusher.name,
                installation_id: push.installation.map(|i| i.id),
            }))
        }
        "installation" => {
            let body: InstallationBody = serde_json::from_slice(body).map_err(bad)?;
            let installation_id = body.installation.id;
            match body.action.as_str() {
                "created" => {
                    let missing = |what: &str| {
                        Error::BadPayload(format!("`installation.created` delivery has no `{what}.login`"))
                    };
                    Ok(WebhookEvent::InstallationCreated {
                        installation_id,
                        account_login: body.installation.account.ok_or_else(|| missing("installation.account"))?.login,
                        sender_login: body.sender.ok_or_else(|| missing("sender"))?.login,
                    })
                }
                "deleted" => Ok(WebhookEvent::InstallationDeleted { installation_id }),
                action => Ok(WebhookEvent::Ignored { event: format!("installation.{action}") }),
            }
        }
        _ => {
            let any: AnyBody = serde_json::from_slice(body).map_err(bad)?;
            let event = match any.action.as_ref().and_then(|a| a.as_str()) {
                Some(action) => format!("{event}.{action}"),
                None => event.to_owned(),
            };
            Ok(WebhookEvent::Ignored { event })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";

    #[test]
    fn matches_githubs_documented_example() {
        // The worked example of GitHub's "Validating webhook deliveries" page.
        assert_eq!(sign(SECRET, BODY), "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
    }

    #[test]
    fn a_valid_signature_verifies() {
        assert!(verify_signature(SECRET, BODY, Some(&sign(SECRET, BODY))));
        let upper = format!("sha256={}", sign(SECRET, BODY)["sha256=".len()..].to_uppercase());
        assert!(verify_signature(SECRET, BODY, Some(&upper)));
    }

    #[test]
    fn a_tampered_body_or_wrong_secret_fails() {
        let header = sign(SECRET, BODY);
        assert!(!verify_signature(SECRET, b"Hello, World?", Some(&header)));
        assert!(!verify_signature(b"another secret", BODY, Some(&header)));
        assert!(!verify_signature(b"", BODY, Some(&sign(b"", BODY))));
    }

    #[test]
    fn missing_or_malformed_headers_fail() {
        let header = sign(SECRET, BODY);
        let digest = &header["sha256=".len()..];
        assert!(!verify_signature(SECRET, BODY, None));
        assert!(!verify_signature(SECRET, BODY, Some("")));
        assert!(!verify_signature(SECRET, BODY, Some(digest)));
        assert!(!verify_signature(SECRET, BODY, Some(&format!("sha1={digest}"))));
        assert!(!verify_signature(SECRET, BODY, Some(&format!("SHA256={digest}"))));
        assert!(!verify_signature(SECRET, BODY, Some(&header[..header.len() - 1])));
        assert!(!verify_signature(SECRET, BODY, Some(&header[..header.len() - 2])));
        assert!(!verify_signature(SECRET, BODY, Some(&format!("{header}00"))));
        assert!(!verify_signature(SECRET, BODY, Some(&format!("sha256={}zz", &digest[2..]))));
        assert!(!verify_signature(SECRET, BODY, Some("sha256=")));
    }

    #[test]
    fn ignored_events_are_named_with_their_action() {
        assert_eq!(
            parse_webhook("ping", br#"{"zen":"Keep it logically awesome.","hook_id":1}"#).unwrap(),
            WebhookEvent::Ignored { event: "ping".to_owned() }
        );
        assert_eq!(
            parse_webhook("issues", br#"{"action":"opened","issue":{}}"#).unwrap(),
            WebhookEvent::Ignored { event: "issues.opened".to_owned() }
        );
        assert_eq!(
            parse_webhook("installation", br#"{"action":"suspend","installation":{"id":7}}"#).unwrap(),
            WebhookEvent::Ignored { event: "installation.suspend".to_owned() }
        );
    }

    #[test]
    fn malformed_deliveries_are_bad_payloads() {
        for (event, body) in [
            ("push", &b"not json"[..]),
            ("push", br#"{"ref":"refs/heads/main"}"#),
            ("installation", br#"{"action":"created","installation":{"id":"seven"}}"#),
            ("installation", br#"{"action":"created","installation":{"id":7}}"#),
            ("ping", b"[1,2]"),
            ("", b"{}"),
        ] {
            let result = parse_webhook(event, body);
            assert!(matches!(result, Err(Error::BadPayload(_))), "{event}: {result:?}");
        }
        let Err(Error::BadPayload(message)) = parse_webhook("push", br#"{"ref":"refs/heads/main"}"#) else {
            unreachable!()
        };
        assert!(message.contains("push") && message.contains("missing field"), "{message}");
    }
}
