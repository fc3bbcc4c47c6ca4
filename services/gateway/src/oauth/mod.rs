//! The OAuth 2.1 authorization server of the MCP authorization specification (issue 7).
//!
//! Built so far: the RFC 8414 metadata and the pure, security-relevant parts — PKCE S256
//! verification, opaque secrets (random, stored as SHA-256, compared in constant time),
//! redirect-URI rules for public clients, and the validation of an authorization request that
//! decides between an error *page* (no valid redirect yet: never redirect, no open redirect)
//! and an error *redirect*. Registration, sign-in/consent and the token endpoint build on these.

pub mod authorize;
pub mod grants;
pub mod metadata;
pub mod pkce;
pub mod register;
pub mod secret;
