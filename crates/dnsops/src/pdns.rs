//! PowerDNS authoritative HTTP API (`/api/v1/servers/localhost/zones`), as served by pdns 4.7.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result, normalize_zone, record_name};

/// A TXT character-string holds at most 255 bytes; longer values are split into several strings.
const TXT_CHUNK: usize = 255;

/// Tries per API request (backoff 50, 200, 800 ms between them).
const ATTEMPTS: u32 = 4;

/// Client for one PowerDNS server's API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PowerDns {
    /// Base URL without trailing slash, e.g. `http://127.0.0.1:18081`.
    api_url: String,
    /// Sent as `X-API-Key`; pdns.conf `api-key`.
    api_key: String,
    /// Always `localhost` for a single authoritative server.
    server_id: String,
    client: reqwest::Client,
}

#[derive(Serialize)]
struct NewZone<'a> {
    name: String,
    kind: &'a str,
    // Empty: the NS RRset carries them (pdns refuses both at once with 422).
    nameservers: Vec<String>,
    rrsets: Vec<RrSet>,
}

#[derive(Serialize)]
struct RrSet {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changetype: Option<&'static str>,
    records: Vec<Rec>,
}

#[derive(Serialize, Deserialize)]
struct Rec {
    content: String,
    #[serde(default)]
    disabled: bool,
}

#[derive(Serialize)]
struct Patch {
    rrsets: Vec<RrSet>,
}

#[derive(Deserialize)]
struct Zone {
    #[serde(default)]
    rrsets: Vec<ZoneRrSet>,
}

#[derive(Deserialize)]
struct ZoneRrSet {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(default)]
    records: Vec<Rec>,
}

impl PowerDns {
    /// `api_url` is the webserver's base URL (`http://127.0.0.1:18081`); `api_key` its pdns.conf `api-key`.
    pub fn new(api_url: &str, api_key: &str) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(15))
            .build()
            .expect("a reqwest client without custom TLS settings builds");
        Self {
            api_url: api_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            server_id: "localhost".to_owned(),
            client,
        }
    }

    /// Creates `zone` (kind Native) with an SOA naming the first nameserver and an NS RRset of all of them.
    /// Returns `Ok(true)` when created, `Ok(false)` when it already existed (left untouched).
    pub async fn ensure_zone(&self, zone: &str, nameservers: &[String]) -> Result<bool> {
        let zone = normalize_zone(zone)?;
        if nameservers.is_empty() {
            return Err(Error::Invalid(format!("zone `{zone}` needs at least one nameserver for its NS records")));
        }
        let ns = nameservers.iter().map(|n| absolute_host(n)).collect::<Result<Vec<_>>>()?;
        let apex = format!("{zone}.");
        // Serial 0: the API's default SOA-EDIT-API sets a date-based serial and bumps it on every change.
        let soa = format!("{} hostmaster.{apex} 0 10800 3600 604800 300", ns[0]);
        let body = NewZone {
            name: apex.clone(),
            kind: "Native",
            nameservers: vec![],
            rrsets: vec![rrset(&apex, "SOA", 3600, None, vec![soa]), rrset(&apex, "NS", 3600, None, ns)],
        };
        let resp = self.send(self.client.post(self.url("zones")).json(&body)).await?;
        let created = match resp.status().as_u16() {
            201 => true,
            409 => false,
            _ => return Err(api_error(resp, &format!("creating zone {zone}")).await),
        };
        self.flush_cache(&zone).await?;
        Ok(created)
    }

    /// Replaces the RRset `name`/`rtype` with `contents` (zone-file syntax, except TXT values which are given
    /// raw and quoted here; NS/CNAME targets may omit the trailing dot). `name` is absolute or relative to the
    /// zone. Empty `contents` deletes the RRset.
    pub async fn set_rrset(&self, zone: &str, name: &str, rtype: &str, ttl: u32, contents: &[String]) -> Result<()> {
        let zone = normalize_zone(zone)?;
        let name = record_name(&zone, name)?;
        let rtype = record_type(rtype)?;
        if contents.is_empty() {
            return self.delete_rrset(&zone, &name, &rtype).await;
        }
        let contents = contents.iter().map(|c| encode_content(&rtype, c)).collect::<Result<Vec<_>>>()?;
        let set = rrset(&format!("{name}."), &rtype, ttl, Some("REPLACE"), contents);
        self.patch(&zone, set, &format!("setting {rtype} {name}")).await
    }

    /// Deletes the RRset `name`/`rtype`; deleting one that does not exist succeeds.
    pub async fn delete_rrset(&self, zone: &str, name: &str, rtype: &str) -> Result<()> {
        let zone = normalize_zone(zone)?;
        let name = record_name(&zone, name)?;
        let rtype = record_type(rtype)?;
        let set = RrSet {
            name: format!("{name}."),
            rtype: rtype.clone(),
            ttl: None,
            changetype: Some("DELETE"),
            records: vec![],
        };
        self.patch(&zone, set, &format!("deleting {rtype} {name}")).await
    }

    /// Deletes the zone and all its records; deleting a missing zone succeeds.
    pub async fn delete_zone(&self, zone: &str) -> Result<()> {
        let zone = normalize_zone(zone)?;
        let resp = self.send(self.client.delete(self.zone_url(&zone))).await?;
        match resp.status().as_u16() {
            204 | 404 => self.flush_cache(&zone).await,
            _ => Err(api_error(resp, &format!("deleting zone {zone}")).await),
        }
    }

    /// Drops the packet-cache entries at and below `zone`. Creating or deleting a zone does not purge them,
    /// so when the parent is also served here its referral would outlive the change by up to `cache-ttl`.
    /// (RRset edits purge their own zone's entries.)
    async fn flush_cache(&self, zone: &str) -> Result<()> {
        let req = self.client.put(format!("{}?domain={zone}.", self.url("cache/flush")));
        let resp = self.send(req).await?;
        if !resp.status().is_success() {
            return Err(api_error(resp, &format!("flushing the cache for {zone}")).await);
        }
        Ok(())
    }

    pub async fn zone_exists(&self, zone: &str) -> Result<bool> {
        let zone = normalize_zone(zone)?;
        let req = self.client.get(format!("{}?rrsets=false", self.zone_url(&zone)));
        let resp = self.send(req).await?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(api_error(resp, &format!("reading zone {zone}")).await),
        }
    }

    /// The contents of one RRset, empty when it does not exist. TXT values come back unquoted (several
    /// character-strings joined), NS/CNAME targets without trailing dot; other types as PowerDNS shows them.
    pub async fn rrset(&self, zone: &str, name: &str, rtype: &str) -> Result<Vec<String>> {
        let zone = normalize_zone(zone)?;
        let name = format!("{}.", record_name(&zone, name)?);
        let rtype = record_type(rtype)?;
        // Read the whole zone and pick the set: portable across pdns 4.x.
        let resp = self.send(self.client.get(self.zone_url(&zone))).await?;
        if !resp.status().is_success() {
            return Err(api_error(resp, &format!("reading zone {zone}")).await);
        }
        let body: Zone = resp
            .json()
            .await
            .map_err(|e| Error::Unavailable(format!("PowerDNS returned an unreadable zone {zone}: {e}")))?;
        let Some(set) = body.rrsets.into_iter().find(|s| s.name.eq_ignore_ascii_case(&name) && s.rtype == rtype) else {
            return Ok(vec![]);
        };
        Ok(set.records.into_iter().filter(|r| !r.disabled).map(|r| decode_content(&rtype, &r.content)).collect())
    }

    async fn patch(&self, zone: &str, set: RrSet, what: &str) -> Result<()> {
        let req = self.client.patch(self.zone_url(zone)).json(&Patch { rrsets: vec![set] });
        let resp = self.send(req).await?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            404 => Err(Error::Api {
                status: 404,
                message: format!("zone {zone} does not exist in PowerDNS: create it with ensure_zone before {what}"),
            }),
            _ => Err(api_error(resp, &format!("{what} in zone {zone}")).await),
        }
    }

    /// Sends with the API key. Every request here is idempotent, so a 5xx (pdns's SQLite backend answers 500
    /// "database is locked" under concurrent writes) or a connection failure is retried a few times.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let req = req.header("X-API-Key", &self.api_key);
        let mut delay = Duration::from_millis(50);
        for _ in 1..ATTEMPTS {
            let Some(attempt) = req.try_clone() else { break };
            match attempt.send().await {
                Ok(resp) if !resp.status().is_server_error() => return self.check_auth(resp),
                _ => tokio::time::sleep(delay).await,
            }
            delay *= 4;
        }
        let resp = req.send().await.map_err(|e| {
            Error::Unavailable(format!(
                "PowerDNS API at {} did not answer ({e}): check that pdns_server runs with api=yes and webserver=yes",
                self.api_url
            ))
        })?;
        self.check_auth(resp)
    }

    fn check_auth(&self, resp: reqwest::Response) -> Result<reqwest::Response> {
        match resp.status().as_u16() {
            401 | 403 => Err(Error::Api {
                status: resp.status().as_u16(),
                message: "PowerDNS rejected the API key: configure the key set as `api-key` in pdns.conf".into(),
            }),
            _ => Ok(resp),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/servers/{}/{path}", self.api_url, self.server_id)
    }

    /// Zone ids are the absolute name; normalised zones need no escaping.
    fn zone_url(&self, zone: &str) -> String {
        self.url(&format!("zones/{zone}."))
    }
}

fn rrset(name: &str, rtype: &str, ttl: u32, changetype: Option<&'static str>, contents: Vec<String>) -> RrSet {
    RrSet {
        name: name.to_owned(),
        rtype: rtype.to_owned(),
        ttl: Some(ttl),
        changetype,
        records: contents.into_iter().map(|content| Rec { content, disabled: false }).collect(),
    }
}

/// Turns a non-2xx response into an error: 5xx is retryable, the rest carries PowerDNS's reason.
async fn api_error(resp: reqwest::Response, what: &str) -> Error {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    // Errors are `{"error": "..."}` or a bare status text such as `Not Found`.
    let reason = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned());
    if status >= 500 {
        Error::Unavailable(format!("PowerDNS failed {what} ({status}: {reason}); retry later"))
    } else {
        Error::Api { status, message: format!("{what}: {reason}") }
    }
}

fn record_type(rtype: &str) -> Result<String> {
    let t = rtype.trim().to_ascii_uppercase();
    if t.is_empty() || t.len() > 10 || !t.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::Invalid(format!("`{rtype}` is not a record type: use A, AAAA, TXT, NS, CNAME...")));
    }
    Ok(t)
}

/// A host name as an absolute name (trailing dot), lowercase.
fn absolute_host(host: &str) -> Result<String> {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if h.is_empty() || h.split('.').any(str::is_empty) {
        return Err(Error::Invalid(format!("`{host}` is not a host name")));
    }
    Ok(format!("{h}."))
}

fn encode_content(rtype: &str, content: &str) -> Result<String> {
    match rtype {
        "TXT" => Ok(quote_txt(content)),
        "NS" | "CNAME" => absolute_host(content),
        _ => Ok(content.trim().to_owned()),
    }
}

fn decode_content(rtype: &str, content: &str) -> String {
    match rtype {
        "TXT" => unquote_txt(content),
        "NS" | "CNAME" => content.trim_end_matches('.').to_owned(),
        _ => content.to_owned(),
    }
}

/// Zone-file TXT syntax: one or more quoted strings of at most 255 bytes, `"` and `\` escaped.
pub(crate) fn quote_txt(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < bytes.len() || chunks.is_empty() {
        // Never split inside a UTF-8 sequence.
        let mut end = (start + TXT_CHUNK).min(bytes.len());
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        let chunk = &value[start..end];
        chunks.push(format!("\"{}\"", chunk.replace('\\', "\\\\").replace('"', "\\\"")));
        start = end;
    }
    chunks.join(" ")
}

/// Inverse of [`quote_txt`]: concatenates the quoted strings, resolving `\"`, `\\` and `\DDD` escapes.
pub(crate) fn unquote_txt(content: &str) -> String {
    let mut out = Vec::new();
    let mut chars = content.bytes().peekable();
    let mut in_quotes = false;
    while let Some(b) = chars.next() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\\' => {
                let digits: Vec<u8> = std::iter::from_fn(|| chars.next_if(u8::is_ascii_digit)).take(3).collect();
                if digits.len() == 3 {
                    let n = digits.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
                    out.push(u8::try_from(n).unwrap_or(b'?'));
                } else {
                    out.extend(digits);
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                }
            }
            _ if in_quotes => out.push(b),
            _ => {} // whitespace between strings
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_quoting_round_trips() {
        for v in ["", "plain", "with \"quotes\" and \\ backslash", &"x".repeat(600), &"é".repeat(200)] {
            let q = quote_txt(v);
            assert_eq!(unquote_txt(&q), v, "{q}");
        }
        assert_eq!(quote_txt(&"a".repeat(256)), format!("\"{}\" \"a\"", "a".repeat(255)));
        assert_eq!(unquote_txt("\"caf\\195\\169\""), "café");
    }
}
