//! End-to-end tests on real PostgreSQL and NATS JetStream. Each test has its own database and
//! subject prefix; tests that stop NATS run a server of their own.

mod apps;
mod browser;
mod cli;
mod deploy;
mod domains;
mod escape;
mod gateway;
mod git;
mod github;
mod oauth;
mod projector;
mod relay;
mod resources;
mod runtime_edges;
mod tidy;
mod web;
