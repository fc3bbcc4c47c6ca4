//! Composition of the platform: one binary runs any one service or all of them in one process,
//! so a laptop and a cluster run the same code.

pub mod config;

use std::time::Duration;

use anyhow::Context as _;
use bus::Bus;
pub use config::Settings;
use store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The adapters every service shares.
#[derive(Clone, Debug)]
pub struct Adapters {
    pub store: Store,
    pub bus: Bus,
}

/// Connects to Postgres (creating the database when missing) and NATS, migrates the store and
/// applies the stream definitions.
pub async fn connect(settings: &Settings) -> anyhow::Result<Adapters> {
    store::ensure_database(&settings.database_url)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {}", redact(&settings.database_url)))?;
    let store = Store::connect(&settings.database_url, settings.db_pool)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(&settings.database_url)))?;
    let read_models = store.migrate().await.context("migrating the database")?;
    // Roles of `postgres` resources live on this server too: they must not reach the platform's
    // own database.
    if let (Some(admin), Some(own)) = (settings.postgres_admin_url(), config::database_of(&settings.database_url))
        && let Err(e) = resources::protect_database(&admin, &own).await
    {
        tracing::warn!(error = %e, database = %own, "could not revoke CONNECT on the platform's database from PUBLIC");
    }
    let bus = Bus::connect(&settings.nats_url, &settings.nats_prefix)
        .await
        .with_context(|| format!("cannot use NATS at {}", settings.nats_url))?;
    bus.apply_definitions(settings.nats_replicas).await.context("applying nats/streams.json")?;
    // Read models created or re-laid-out now start empty while the durable consumer may already
    // be past old events: rebuild them from the whole stream (cheap when it is empty).
    if read_models != store::ReadModels::Current {
        let report = projector::rebuild(&store, &bus, "rm_rebuild", true).await.context("replaying the read models")?;
        tracing::info!(events = report.events, ?read_models, "read models replayed from the EVENTS stream");
    }
    Ok(Adapters { store, bus })
}

/// Hides the password of a connection URL.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// Which parts of the platform a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Components {
    pub gateway: bool,
    pub relay: bool,
    pub projector: bool,
    pub builder: bool,
    pub scheduler: bool,
    pub dns: bool,
}

impl Components {
    pub const ALL: Self =
        Self { gateway: true, relay: true, projector: true, builder: true, scheduler: true, dns: true };
    pub const NONE: Self =
        Self { gateway: false, relay: false, projector: false, builder: false, scheduler: false, dns: false };
}

/// A running platform (or part of it).
pub struct Running {
    pub shutdown: CancellationToken,
    /// Where the gateway listens, when it runs.
    pub gateway_addr: Option<std::net::SocketAddr>,
    /// Where the router (apps' HTTP) listens, when the scheduler runs.
    pub router_addr: Option<std::net::SocketAddr>,
    /// Where the router's HTTPS listens, when the scheduler runs.
    pub router_tls_addr: Option<std::net::SocketAddr>,
    tasks: JoinSet<anyhow::Result<()>>,
}

/// Already bound listeners (tests bind port 0); the settings' addresses are bound otherwise.
#[derive(Debug, Default)]
pub struct Listeners {
    pub gateway: Option<TcpListener>,
    pub router: Option<TcpListener>,
    pub router_tls: Option<TcpListener>,
}

async fn bind(given: Option<TcpListener>, addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    match given {
        Some(l) => Ok(l),
        None => TcpListener::bind(addr).await.with_context(|| format!("the {what} cannot listen on {addr}")),
    }
}

/// Starts the chosen components on `adapters`.
pub async fn start(
    settings: &Settings,
    adapters: &Adapters,
    components: Components,
    listeners: Listeners,
) -> anyhow::Result<Running> {
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut gateway_addr = None;
    let mut router_addr = None;
    let keyring = settings.keyring()?;
    let commands = std::sync::Arc::new(store::Commands::new(&adapters.store));
    let mut router_tls_addr = None;
    let router = if components.scheduler {
        let l = bind(listeners.router, settings.router_listen, "router").await?;
        router_addr = Some(l.local_addr()?);
        let tls = bind(listeners.router_tls, settings.router_tls_listen, "router (HTTPS)").await?;
        router_tls_addr = Some(tls.local_addr()?);
        Some((l, tls))
    } else {
        None
    };
    let https_port = settings.apps_https_port.or(router_tls_addr.map(|a| a.port())).unwrap_or(443);
    let apps_port = settings.apps_port.or(router_addr.map(|a| a.port())).unwrap_or(settings.router_listen.port());
    if components.relay {
        let (store, bus, sd) = (adapters.store.clone(), adapters.bus.clone(), shutdown.clone());
        tasks.spawn(async move {
            relay::run(store, bus, sd).await;
            Ok(())
        });
    }
    if components.projector {
        let config = projector::Config { store: adapters.store.clone(), bus: adapters.bus.clone(), batch_size: 1_000 };
        let sd = shutdown.clone();
        tasks.spawn(async move { projector::run(config, sd).await.context("projector") });
    }
    if components.gateway {
        let listener = bind(listeners.gateway, settings.listen, "gateway").await?;
        gateway_addr = Some(listener.local_addr()?);
        let public_url = match &settings.public_url {
            Some(_) => settings.public_url(),
            None => format!("http://{}", listener.local_addr()?),
        };
        let config = gateway::Config {
            listen: listener.local_addr()?,
            public_url,
            allowed_hosts: settings.allowed_hosts.clone(),
            store: adapters.store.clone(),
            bus: adapters.bus.clone(),
            key_recheck: settings.key_recheck(),
            data_dir: settings.data_dir.clone(),
            git_bin: settings.git_bin.clone(),
            reconcile_every: Duration::from_secs(30),
            git_limits: gateway::git::Limits::from_mb(settings.git_max_push_mb, settings.git_max_repo_mb),
            github: settings.github()?,
            zones: gateway::zones::ZonesConfig {
                nameservers: settings.nameservers.clone(),
                expiry: chrono::Duration::days(settings.zone_expiry_days),
                https_port,
            },
            apps: gateway::services::AppsConfig {
                base_domain: settings.base_domain.clone(),
                scheme: "http".into(),
                port: apps_port,
                keyring: keyring.clone(),
            },
            oauth: gateway::oauth::OAuthConfig {
                code_ttl: Duration::from_secs(settings.oauth_code_ttl_secs),
                bcrypt_cost: settings.bcrypt_cost,
                password_bcrypt_cost: settings.password_bcrypt_cost,
            },
            github_login: settings.github_login()?,
        };
        let sd = shutdown.clone();
        tasks.spawn(async move { gateway::serve(listener, config, sd).await.context("gateway") });
    }
    if components.builder {
        let sandbox = sandbox_host(settings, 'b').await?;
        let config = builder::Config {
            bus: adapters.bus.clone(),
            commands: commands.clone(),
            data_dir: settings.data_dir.clone(),
            work_dir: settings.sandbox_dir.join(settings.sandbox_instance('b')),
            git: settings.git_bin.clone(),
            sandbox: sandbox.clone(),
            build_timeout: Duration::from_secs(settings.build_timeout_secs),
            build_memory_mb: settings.build_memory_mb,
            build_cpu_millis: settings.build_cpu_millis,
            build_disk_mb: settings.build_disk_mb,
            concurrency: settings.build_concurrency,
            registry: settings.registry.clone().map(|address| builder::registry::Registry {
                address,
                insecure: settings.registry_insecure,
                prefix: "deploy-mcp".into(),
            }),
            base_images: settings
                .base_images
                .iter()
                .filter_map(|pair| pair.split_once('='))
                .map(|(provider, image)| (provider.trim().to_owned(), image.trim().to_owned()))
                .collect(),
            egress: settings.build_egress()?,
            toolchains: settings.toolchains()?,
            cache_dir: settings.build_cache_dir(),
        };
        let sd = shutdown.clone();
        tasks.spawn(async move {
            let r = builder::run(config, sd).await.context("builder");
            let _ = sandbox.teardown().await;
            r
        });
    }
    if let Some((listener, tls_listener)) = router {
        let routes = router::Routes::default();
        let certs = router::Certs::default();
        // The local runtime needs this machine's sandboxes (root); the cluster runtime does not.
        let sandbox = match settings.runtime.as_str() {
            "kubernetes" => None,
            _ => Some(sandbox_host(settings, 's').await?),
        };
        let config = scheduler::Config {
            bus: adapters.bus.clone(),
            store: adapters.store.clone(),
            commands: commands.clone(),
            keyring: keyring.clone(),
            data_dir: settings.data_dir.clone(),
            driver: match settings.runtime.as_str() {
                "kubernetes" => {
                    // The cluster runs only images the builder pushed.
                    anyhow::ensure!(
                        settings.registry.is_some(),
                        "DEPLOY_MCP_RUNTIME=kubernetes needs DEPLOY_MCP_REGISTRY (where the cluster pulls app images)"
                    );
                    let k8s_config = scheduler::k8s::K8sConfig {
                        storage_class: settings.k8s_storage_class.clone(),
                        volume_size: settings.k8s_volume_size.clone(),
                        tls_secret: settings.k8s_tls_secret.clone(),
                        ..scheduler::k8s::K8sConfig::default()
                    };
                    let k8s = scheduler::kubernetes_driver(commands.clone(), k8s_config)
                        .await
                        .map_err(|e| anyhow::anyhow!(e))?;
                    std::sync::Arc::new(k8s) as std::sync::Arc<dyn scheduler::Driver>
                }
                _ => std::sync::Arc::new(scheduler::LocalDriver {
                    bus: adapters.bus.clone(),
                    sandbox: sandbox.clone().context("the local runtime's sandboxes")?,
                    run_dir: settings.sandbox_dir.join(settings.sandbox_instance('s')).join("run"),
                    health_timeout: Duration::from_secs(settings.health_timeout_secs),
                    toolchain_dir: settings.toolchain_dir(),
                    egress: settings.app_egress()?,
                    disk_mb: settings.app_disk_mb,
                    volume_disk_mb: settings.volume_disk_mb,
                    volumes: Default::default(),
                }),
            },
            routes: routes.clone(),
            certs: certs.clone(),
            base_domain: settings.base_domain.clone(),
            drain_timeout: Duration::from_secs(10),
        };
        let provisioner = scheduler::Provisioner {
            bus: adapters.bus.clone(),
            commands: commands.clone(),
            keyring: keyring.clone(),
            providers: providers(settings).await?,
        };
        let sd = shutdown.clone();
        tasks.spawn(async move { provisioner.run(sd).await.context("provisioner") });
        let (sd, r, c) = (shutdown.clone(), routes.clone(), certs.clone());
        tasks.spawn(async move { router::serve_tls(tls_listener, r, c, sd).await.context("router (HTTPS)") });
        let sd = shutdown.clone();
        tasks.spawn(async move {
            router::serve_with_redirects(listener, routes, certs, https_port, sd).await.context("router")
        });
        let sd = shutdown.clone();
        tasks.spawn(async move {
            let r = scheduler::run(config, sd).await.context("scheduler");
            if let Some(sandbox) = sandbox {
                let _ = sandbox.teardown().await;
            }
            r
        });
    }
    if components.dns {
        match &settings.pdns_api_key {
            None => tracing::warn!("DEPLOY_MCP_PDNS_API_KEY is not set: delegated zones and custom domains are off"),
            Some(key) => {
                let config = dns::Config {
                    bus: adapters.bus.clone(),
                    store: adapters.store.clone(),
                    commands: commands.clone(),
                    keyring: keyring.clone(),
                    pdns: dnsops::PowerDns::new(&settings.pdns_url, key),
                    checker: dnsops::Checker::new(settings.dns_resolver),
                    nameservers: settings.nameservers.clone(),
                    ingress: settings.ingress_ips.clone(),
                    acme: settings.acme()?,
                    max_check_interval: Duration::from_secs(settings.zone_check_max_secs),
                    base_domain: settings.base_domain_dns.then(|| settings.base_domain.clone()),
                };
                let sd = shutdown.clone();
                tasks.spawn(async move { dns::run(config, sd).await.context("dns") });
            }
        }
    }
    Ok(Running { shutdown, gateway_addr, router_addr, router_tls_addr, tasks })
}

/// The resource providers the configuration names.
async fn providers(settings: &Settings) -> anyhow::Result<scheduler::Providers> {
    use std::sync::Arc;
    let sqlite: Arc<dyn resources::Provider> = match settings.sqlite_provider.as_str() {
        "turso" => {
            let (Some(organization), Some(api_token)) = (settings.turso_org.clone(), settings.turso_api_token.clone())
            else {
                anyhow::bail!(
                    "DEPLOY_MCP_SQLITE_PROVIDER=turso needs DEPLOY_MCP_TURSO_ORG and DEPLOY_MCP_TURSO_API_TOKEN"
                );
            };
            Arc::new(resources::TursoProvider {
                api_url: settings.turso_api_url.clone(),
                organization,
                api_token,
                group: settings.turso_group.clone(),
            })
        }
        _ => {
            // Apps open their database where the sandbox binds it: the way there must let the
            // apps' uid through (each database's own directory is private to it).
            let dir = settings.sandbox_dir.join("sqlite");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            Arc::new(resources::LocalSqliteProvider::new(dir))
        }
    };
    let postgres = settings.postgres_admin_url().map(|admin_url| {
        Arc::new(resources::PostgresProvider {
            admin_url,
            public_host: settings.postgres_public_host.clone(),
            public_port: settings.postgres_public_port,
        }) as Arc<dyn resources::Provider>
    });
    Ok(scheduler::Providers { sqlite, postgres })
}

/// The machine's sandboxes for one role of this deployment (`b`uilder, `s`cheduler).
async fn sandbox_host(settings: &Settings, role: char) -> anyhow::Result<sandbox::Host> {
    let instance = settings.sandbox_instance(role);
    sandbox::Host::new(sandbox::HostConfig {
        state_dir: std::path::PathBuf::from("/run/deploy-mcp/etc").join(&instance),
        instance,
    })
    .await
    .context("setting up app sandboxes (bubblewrap, network namespaces, cgroups)")
}

impl Running {
    /// Waits until a component stops on its own (an error) or `signal` fires, then drains
    /// every component within `grace`.
    pub async fn wait(mut self, signal: impl std::future::Future<Output = ()>, grace: Duration) -> anyhow::Result<()> {
        let first = tokio::select! {
            _ = signal => None,
            r = self.tasks.join_next() => r,
        };
        self.shutdown.cancel();
        let drained = tokio::time::timeout(grace, async {
            while let Some(r) = self.tasks.join_next().await {
                if let Ok(Err(e)) = r {
                    tracing::warn!(error = %e, "component stopped with an error during shutdown");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("components did not stop within {grace:?}; aborting them");
            self.tasks.abort_all();
        }
        match first {
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(anyhow::anyhow!("a component panicked: {e}")),
            _ => Ok(()),
        }
    }

    /// Stops everything now and waits for it (tests).
    pub async fn stop(self) {
        let _ = self.wait(std::future::ready(()), Duration::from_secs(5)).await;
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
