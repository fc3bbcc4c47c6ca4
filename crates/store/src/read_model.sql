-- Read-model tables, written only by the projector. `agg_id` is the aggregate that owns the
-- row: the projector replaces all rows of an aggregate at once, which keeps live and replayed
-- models equal. Keys and indexes are in read_model_indexes.sql, so that a rebuild can create
-- them after its bulk COPY.
CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TABLE IF NOT EXISTS {schema}.checkpoints (
    agg_id         text NOT NULL,
    aggregate_type text   NOT NULL,
    last_sequence  bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.users (
    agg_id    text NOT NULL,
    user_id   text NOT NULL,
    email     text NOT NULL,
    limits    jsonb NOT NULL,
    opened_at timestamptz NOT NULL,
    github_installation bigint,
    github_account      text
);

CREATE TABLE IF NOT EXISTS {schema}.api_keys (
    agg_id     text NOT NULL,
    key_id     text NOT NULL,
    user_id    text NOT NULL,
    prefix     text NOT NULL,
    hash       text NOT NULL,
    label      text NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz,
    resource   text
);

CREATE TABLE IF NOT EXISTS {schema}.repos (
    agg_id      text NOT NULL,
    repo_id     text NOT NULL,
    owner       text NOT NULL,
    name        text NOT NULL,
    host        text NOT NULL,
    description text,
    created_at  timestamptz NOT NULL,
    github_id        bigint,
    github_full_name text
);

CREATE TABLE IF NOT EXISTS {schema}.git_tokens (
    agg_id     text NOT NULL,
    token_id   text NOT NULL,
    repo_id    text NOT NULL,
    prefix     text NOT NULL,
    hash       text NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.services (
    agg_id          text NOT NULL,
    service_id      text NOT NULL,
    owner           text NOT NULL,
    project         text NOT NULL,
    name            text NOT NULL,
    hostname        text NOT NULL,
    repo_id         text NOT NULL,
    branch          text NOT NULL,
    build_pack      text NOT NULL,
    port            integer,
    env             jsonb NOT NULL,
    resources       jsonb NOT NULL,
    memory_mb       integer NOT NULL,
    cpu_millis      integer NOT NULL,
    install_command text,
    build_command   text,
    start_command   text,
    status          text NOT NULL,
    live_deployment text,
    created_at      timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.deployments (
    agg_id        text NOT NULL,
    deployment_id text NOT NULL,
    service_id    text NOT NULL,
    commit_sha    text NOT NULL,
    trigger_kind  text NOT NULL,
    status        text NOT NULL,
    artifact      text,
    plan          text,
    cached        boolean NOT NULL,
    image         text,
    restarts      integer NOT NULL,
    failure       jsonb,
    requested_at  timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.resources (
    agg_id      text NOT NULL,
    resource_id text NOT NULL,
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

CREATE TABLE IF NOT EXISTS {schema}.zones (
    agg_id         text NOT NULL,
    zone_id        text NOT NULL,
    owner          text NOT NULL,
    zone           text NOT NULL,
    txt_value      text NOT NULL,
    status         text NOT NULL,
    missing        jsonb NOT NULL,
    expires_at     timestamptz NOT NULL,
    cert_not_after timestamptz,
    requested_at   timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.domains (
    agg_id     text NOT NULL,
    domain_id  text NOT NULL,
    owner      text NOT NULL,
    service_id text NOT NULL,
    zone_id    text NOT NULL,
    domain     text NOT NULL,
    added_at   timestamptz NOT NULL
);
