//! Host names as the route table keys them: lowercase, no port, no trailing dot.

use std::borrow::Cow;

use http::Request;
use http::header::HOST;

/// The host a request is for: the authority of an absolute-form URI, else the Host header; `None` if neither.
pub(crate) fn of_request<B>(req: &Request<B>) -> Option<&str> {
    match req.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => req.headers().get(HOST)?.to_str().ok(),
    }
}

/// Lowercases and strips any `:port`, any userinfo and a trailing dot; borrows when nothing changes (the usual case).
pub(crate) fn normalize(authority: &str) -> Cow<'_, str> {
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = if host.starts_with('[') {
        // IPv6 literal: the port, if any, follows the bracket.
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.split_once(':').map_or(host, |(name, _)| name)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalizes() {
        for (input, want) in [
            ("app.example.com", "app.example.com"),
            ("App.Example.COM:8080", "app.example.com"),
            ("app.example.com.", "app.example.com"),
            ("user@app.test:1", "app.test"),
            ("[::1]:80", "[::1]"),
            ("[::1]", "[::1]"),
            ("", ""),
            (":80", ""),
        ] {
            assert_eq!(normalize(input), want, "{input}");
        }
    }
}
