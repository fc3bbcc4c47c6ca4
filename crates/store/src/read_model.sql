-- Read models, written only by the projector. `agg_id` is the aggregate that owns the row: the
-- projector replaces all rows of an aggregate at once, which keeps live and replayed models equal.
CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TABLE IF NOT EXISTS {schema}.checkpoints (
    agg_id         text PRIMARY KEY,
    aggregate_type text   NOT NULL,
    last_sequence  bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.users (
    agg_id    text NOT NULL,
    user_id   text PRIMARY KEY,
    email     text NOT NULL UNIQUE,
    limits    jsonb NOT NULL,
    opened_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.api_keys (
    agg_id     text NOT NULL,
    key_id     text PRIMARY KEY,
    user_id    text NOT NULL,
    prefix     text NOT NULL UNIQUE,
    hash       text NOT NULL,
    label      text NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_agg ON {schema}.api_keys (agg_id);

CREATE TABLE IF NOT EXISTS {schema}.repos (
    agg_id      text NOT NULL,
    repo_id     text PRIMARY KEY,
    owner       text NOT NULL,
    name        text NOT NULL,
    host        text NOT NULL,
    description text,
    created_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS repos_owner ON {schema}.repos (owner, name);

CREATE TABLE IF NOT EXISTS {schema}.git_tokens (
    agg_id     text NOT NULL,
    token_id   text PRIMARY KEY,
    repo_id    text NOT NULL,
    prefix     text NOT NULL UNIQUE,
    hash       text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS git_tokens_agg ON {schema}.git_tokens (agg_id);

CREATE TABLE IF NOT EXISTS {schema}.services (
    agg_id          text NOT NULL,
    service_id      text PRIMARY KEY,
    owner           text NOT NULL,
    project         text NOT NULL,
    name            text NOT NULL,
    repo_id         text NOT NULL,
    branch          text NOT NULL,
    build_pack      text NOT NULL,
    port            integer,
    env             jsonb NOT NULL,
    memory_mb       integer NOT NULL,
    cpu_millis      integer NOT NULL,
    install_command text,
    build_command   text,
    start_command   text,
    status          text NOT NULL,
    live_deployment text,
    created_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS services_owner ON {schema}.services (owner, project, name);

CREATE TABLE IF NOT EXISTS {schema}.deployments (
    agg_id        text NOT NULL,
    deployment_id text PRIMARY KEY,
    service_id    text NOT NULL,
    commit_sha    text NOT NULL,
    reason        text NOT NULL,
    status        text NOT NULL,
    artifact      text,
    failure       jsonb,
    requested_at  timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS deployments_agg ON {schema}.deployments (agg_id);

CREATE TABLE IF NOT EXISTS {schema}.resources (
    agg_id      text NOT NULL,
    resource_id text PRIMARY KEY,
    owner       text NOT NULL,
    name        text NOT NULL,
    kind        text NOT NULL,
    size        text NOT NULL,
    region      text,
    status      text NOT NULL,
    credentials jsonb,
    failure     text,
    created_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS resources_owner ON {schema}.resources (owner, name);

CREATE TABLE IF NOT EXISTS {schema}.zones (
    agg_id         text NOT NULL,
    zone_id        text PRIMARY KEY,
    owner          text NOT NULL,
    zone           text NOT NULL,
    txt_value      text NOT NULL,
    status         text NOT NULL,
    expires_at     timestamptz NOT NULL,
    cert_not_after timestamptz,
    requested_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS zones_zone ON {schema}.zones (zone);

CREATE TABLE IF NOT EXISTS {schema}.domains (
    agg_id     text NOT NULL,
    domain_id  text PRIMARY KEY,
    owner      text NOT NULL,
    service_id text NOT NULL,
    zone_id    text NOT NULL,
    domain     text NOT NULL,
    added_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS domains_domain ON {schema}.domains (domain);
