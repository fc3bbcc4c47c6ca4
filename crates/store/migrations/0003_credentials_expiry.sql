-- Expired codes, consent tickets and sessions are swept when new ones are written: index the
-- expiry that sweep filters on. No query looks sessions up by user, and a consent ticket needs
-- no e-mail (the consent screen shows it from the sign-in).
DROP INDEX IF EXISTS web_sessions_user;
CREATE INDEX IF NOT EXISTS oauth_codes_expires ON oauth_codes (expires_at);
CREATE INDEX IF NOT EXISTS oauth_consents_expires ON oauth_consents (expires_at);
CREATE INDEX IF NOT EXISTS web_sessions_expires ON web_sessions (expires_at);
ALTER TABLE oauth_consents DROP COLUMN IF EXISTS email;
