-- Keys and indexes of the read models (see read_model.sql). Every table is looked up by
-- agg_id: the projector loads and replaces the rows of the aggregates a batch touches.
CREATE UNIQUE INDEX IF NOT EXISTS checkpoints_pkey ON {schema}.checkpoints (agg_id);
CREATE UNIQUE INDEX IF NOT EXISTS users_pkey ON {schema}.users (user_id);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_key ON {schema}.users (email);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_pkey ON {schema}.api_keys (key_id);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_prefix_key ON {schema}.api_keys (prefix);
CREATE INDEX IF NOT EXISTS api_keys_agg ON {schema}.api_keys (agg_id);
CREATE UNIQUE INDEX IF NOT EXISTS repos_pkey ON {schema}.repos (repo_id);
CREATE INDEX IF NOT EXISTS repos_owner ON {schema}.repos (owner, name);
CREATE UNIQUE INDEX IF NOT EXISTS git_tokens_pkey ON {schema}.git_tokens (token_id);
CREATE UNIQUE INDEX IF NOT EXISTS git_tokens_prefix_key ON {schema}.git_tokens (prefix);
CREATE INDEX IF NOT EXISTS git_tokens_agg ON {schema}.git_tokens (agg_id);
CREATE UNIQUE INDEX IF NOT EXISTS services_pkey ON {schema}.services (service_id);
CREATE INDEX IF NOT EXISTS services_owner ON {schema}.services (owner, project, name);
CREATE UNIQUE INDEX IF NOT EXISTS deployments_pkey ON {schema}.deployments (deployment_id);
CREATE INDEX IF NOT EXISTS deployments_agg ON {schema}.deployments (agg_id);
CREATE UNIQUE INDEX IF NOT EXISTS resources_pkey ON {schema}.resources (resource_id);
CREATE INDEX IF NOT EXISTS resources_owner ON {schema}.resources (owner, name);
CREATE UNIQUE INDEX IF NOT EXISTS zones_pkey ON {schema}.zones (zone_id);
CREATE INDEX IF NOT EXISTS zones_zone ON {schema}.zones (zone);
CREATE UNIQUE INDEX IF NOT EXISTS domains_pkey ON {schema}.domains (domain_id);
CREATE INDEX IF NOT EXISTS domains_domain ON {schema}.domains (domain);
CREATE INDEX IF NOT EXISTS users_agg ON {schema}.users (agg_id);
CREATE INDEX IF NOT EXISTS repos_agg ON {schema}.repos (agg_id);
CREATE INDEX IF NOT EXISTS services_agg ON {schema}.services (agg_id);
CREATE INDEX IF NOT EXISTS resources_agg ON {schema}.resources (agg_id);
CREATE INDEX IF NOT EXISTS zones_agg ON {schema}.zones (agg_id);
CREATE INDEX IF NOT EXISTS domains_agg ON {schema}.domains (agg_id);
