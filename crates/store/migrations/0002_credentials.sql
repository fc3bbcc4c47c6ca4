-- Short-lived credentials of the web pages and the OAuth authorization server. They are not
-- events on purpose: they are secrets' digests with an expiry, not facts of the domain, and a
-- replay of the streams must never bring an expired or revoked one back. Every secret is kept
-- only as its SHA-256 digest.

-- Registered OAuth clients (dynamic registration and fetched Client ID Metadata Documents).
CREATE TABLE IF NOT EXISTS oauth_clients
(
    client_id     text PRIMARY KEY,
    client        jsonb       NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);

-- Authorization codes: single use (taken with DELETE … RETURNING), short-lived.
CREATE TABLE IF NOT EXISTS oauth_codes
(
    digest     bytea PRIMARY KEY,
    grant_data jsonb       NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Refresh-token families: one per authorization; `current` is the only token valid now, and
-- `keys` the access tokens (API key prefixes) to revoke with the family.
CREATE TABLE IF NOT EXISTS oauth_families
(
    id         text PRIMARY KEY,
    grant_data jsonb       NOT NULL,
    current    bytea       NOT NULL,
    revoked    boolean     NOT NULL DEFAULT false,
    keys       text[]      NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Every refresh token ever issued (current or rotated) → its family: a rotated one presented
-- again is recognised, and revokes the family.
CREATE TABLE IF NOT EXISTS oauth_refresh_tokens
(
    digest bytea PRIMARY KEY,
    family text NOT NULL REFERENCES oauth_families (id) ON DELETE CASCADE
);

-- A signed-in user's pending consent (the ticket in the consent form).
CREATE TABLE IF NOT EXISTS oauth_consents
(
    digest     bytea PRIMARY KEY,
    user_id    text        NOT NULL,
    email      text        NOT NULL,
    request    jsonb       NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Signed-in browser sessions of the web pages (the cookie holds the secret).
CREATE TABLE IF NOT EXISTS web_sessions
(
    digest     bytea PRIMARY KEY,
    user_id    text        NOT NULL,
    email      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS web_sessions_user ON web_sessions (user_id);

-- When each API key was last used: telemetry for the settings page, updated at most once per
-- key re-check, so that it never slows a request down.
CREATE TABLE IF NOT EXISTS api_key_usage
(
    key_id       text PRIMARY KEY,
    last_used_at timestamptz NOT NULL
);
