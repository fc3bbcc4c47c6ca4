//! `deploy-mcp`: plumbing only. Parses the configuration, sets up tracing, builds the adapters
//! and hands over to the library.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use deploy_mcp::{Components, Listeners, Settings, connect, shutdown_signal, start};

#[derive(Debug, Parser)]
#[command(name = "deploy-mcp", version, about = "A platform where AI agents ship software over MCP")]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything in one process, on the embedded defaults; prints the MCP URL and a fresh key.
    Dev {
        /// E-mail of the developer account the printed key belongs to.
        #[arg(long, default_value = "dev@deploy-mcp.localhost")]
        email: String,
    },
    /// MCP over HTTP, API keys (with the outbox relay: the gateway is the command side).
    Gateway,
    /// Builds the read models; `--replay` rebuilds them from the streams and exits.
    Projector {
        #[arg(long)]
        replay: bool,
    },
    /// Only the outbox relay (event store → JetStream).
    Relay,
    Builder,
    Scheduler,
    Dns,
    /// Applies database migrations and stream definitions, then exits.
    Migrate,
    /// Manages API keys.
    #[command(name = "api-key", subcommand)]
    ApiKey(ApiKeyCommand),
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Creates a key (and the user, when new); prints only the key on stdout.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "cli")]
        label: String,
    },
    /// Revokes the key with this prefix (`dk_live_xxxxxxxx`).
    Revoke { prefix: String },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                // EX_USAGE: bad configuration.
                _ => ExitCode::from(64),
            };
        }
    };
    let problems = cli.settings.problems();
    if !problems.is_empty() {
        for e in problems {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
        }
        return ExitCode::from(64);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never in CI logs or files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

const GRACE: Duration = Duration::from_secs(10);

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings;
    let adapters = connect(&settings).await?;
    match cli.command {
        Command::Dev { email } => {
            let running = start(&settings, &adapters, Components::ALL, Listeners::default()).await?;
            let addr = running.gateway_addr.context("gateway did not start")?;
            let public = settings.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
            let key = dev_key(&settings, &adapters, &email).await?;
            let mcp = format!("{}/mcp", public.trim_end_matches('/'));
            let mut out = std::io::stdout().lock();
            writeln!(out, "Deploy MCP is running.")?;
            writeln!(out, "  MCP URL:  {mcp}")?;
            writeln!(out, "  API key:  {key}")?;
            writeln!(out, "  Web:      {}/settings (API keys), /dns (zones)", public.trim_end_matches('/'))?;
            if let Some(router) = running.router_addr {
                let port = settings.apps_port.unwrap_or(router.port());
                writeln!(out, "  Apps:     http://<service>.{}:{port}", settings.base_domain)?;
            }
            writeln!(out, "  Connect Claude Code:")?;
            writeln!(
                out,
                "    claude mcp add --transport http deploy-mcp {mcp} --header \"Authorization: Bearer {key}\""
            )?;
            writeln!(out, "Press Ctrl-C to stop.")?;
            drop(out);
            running.wait(shutdown_signal(), GRACE).await
        }
        Command::Gateway
        | Command::Projector { replay: false }
        | Command::Relay
        | Command::Builder
        | Command::Scheduler
        | Command::Dns => {
            let mut c = Components::NONE;
            match cli.command {
                // The gateway is the command side: it relays its own commits.
                Command::Gateway => (c.gateway, c.relay) = (true, true),
                Command::Projector { .. } => c.projector = true,
                Command::Relay => c.relay = true,
                Command::Builder => c.builder = true,
                Command::Scheduler => c.scheduler = true,
                _ => c.dns = true,
            }
            start(&settings, &adapters, c, Listeners::default()).await?.wait(shutdown_signal(), GRACE).await
        }
        Command::Projector { replay: true } => {
            let report = projector::rebuild(&adapters.store, &adapters.bus, "rm_rebuild", true).await?;
            tracing::info!(
                events = report.events,
                last_sequence = report.last_sequence,
                elapsed_ms = report.elapsed.as_millis() as u64,
                "read models rebuilt from the EVENTS stream and swapped in"
            );
            Ok(())
        }
        Command::Migrate => Ok(()),
        Command::ApiKey(ApiKeyCommand::Create { email, label }) => {
            let commands = store::Commands::new(&adapters.store);
            let user = gateway::accounts::ensure_account(&commands, &email, events::Limits::default()).await?;
            let issued = gateway::accounts::create_api_key(&commands, user, &label, settings.bcrypt_cost).await?;
            tracing::info!(user = %user, prefix = %issued.key.prefix, "API key created");
            writeln!(std::io::stdout().lock(), "{}", issued.key.plaintext)?;
            Ok(())
        }
        Command::ApiKey(ApiKeyCommand::Revoke { prefix }) => {
            let commands = store::Commands::new(&adapters.store);
            let (user, key) = gateway::accounts::revoke_api_key(&commands, &prefix).await?;
            tracing::info!(user = %user, key = %key, "API key revoked");
            Ok(())
        }
    }
}

/// Creates a fresh key for the dev account and waits until the gateway accepts it.
async fn dev_key(settings: &Settings, adapters: &deploy_mcp::Adapters, email: &str) -> anyhow::Result<String> {
    let commands = store::Commands::new(&adapters.store);
    let user = gateway::accounts::ensure_account(&commands, email, events::Limits::default()).await?;
    let issued = gateway::accounts::create_api_key(&commands, user, "dev", settings.bcrypt_cost).await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while adapters.store.api_key_by_prefix(&issued.key.prefix).await?.is_none() {
        anyhow::ensure!(Instant::now() < deadline, "the new key did not reach the read models within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(issued.key.plaintext)
}
