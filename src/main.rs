//! `cairn`: parse flags into a config, start the broker, serve until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use cairn::auth::credentials::{AddScram, CredentialStore};
use cairn::auth::tls::TlsListener;
use cairn::broker::Broker;
use cairn::config::BrokerConfig;
use cairn::http::HttpServer;
use cairn::server::{log_startup, Server};
use clap::{Parser, Subcommand};
use tracing::{error, info, warn};

/// A Kafka-compatible broker built to keep data for years.
///
/// Kafka clients and the standard Kafka CLI tools work against it unchanged. Configuration uses
/// Apache Kafka's names: a server.properties-style file (--config) and --set key=value, applied
/// in that order, then the flags below.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the Kafka protocol (the default).
    Serve(ServeArgs),
    /// Add SCRAM credentials to the data directory before start, in the form of Kafka's
    /// `kafka-storage format --add-scram`: 'SCRAM-SHA-512=[name=alice,password=alice-secret]'
    /// (repeatable). The broker must not be running.
    AddScram {
        /// MECHANISM=[name=NAME,password=PASSWORD(,iterations=N)]
        #[arg(required = true)]
        credentials: Vec<String>,
        #[command(flatten)]
        args: ServeArgs,
    },
}

#[derive(clap::Args, Debug, Default)]
struct ServeArgs {
    /// Address of a PLAINTEXT listener, HOST:PORT (sets Kafka's `listeners`). Default
    /// 127.0.0.1:9092.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address given to clients in Metadata (sets Kafka's `advertised.listeners`). Default:
    /// --listen.
    #[arg(long, value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// Directory for all data (Kafka's `log.dirs`). Default ./data.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A server.properties-style file using Apache Kafka's config names.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Set one config by its Kafka name, e.g. --set num.partitions=3 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

fn build_config(args: &ServeArgs) -> anyhow::Result<BrokerConfig> {
    let mut config = BrokerConfig::default();
    if let Some(path) = &args.config {
        config.load_file(path)?;
    }
    for pair in &args.set {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--set expects KEY=VALUE, got '{pair}'"))?;
        config.set(key.trim(), value)?;
    }
    if let Some(listen) = &args.listen {
        config.set("listeners", listen)?;
    }
    if let Some(advertised) = &args.advertised_listener {
        config.set("advertised.listeners", advertised)?;
    }
    if let Some(dir) = &args.data_dir {
        config.set("log.dirs", &dir.display().to_string())?;
    }
    Ok(config)
}

async fn serve(config: BrokerConfig) -> anyhow::Result<()> {
    let listeners = cairn::listener::listeners(&config)?;
    let data_dir = config.data_dir();
    let started = std::time::Instant::now();
    let broker = Broker::start(config)
        .await
        .with_context(|| format!("cannot start (data directory {})", data_dir.display()))?;
    let server = Server::bind_listeners(listeners, broker.clone()).await?;
    log_startup(&server.local_addrs(), &data_dir);
    info!(elapsed_ms = started.elapsed().as_millis() as u64, "started");

    let mut tls = server.tls_listeners();
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = broker.config.http_listen() {
        match HttpServer::bind(addr, broker.clone()).await {
            Ok(http) => {
                info!(listen = %http.local_addr()?, "status page and metrics on {}://{}/", http.scheme(), http.local_addr()?);
                tls.extend(http.tls());
                tokio::spawn(http.run(shutdown_rx.clone()));
            }
            // The default port may be another Cairn's on this machine: serve Kafka without it.
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && !broker.config.is_explicit("cairn.http.listen") =>
            {
                warn!(listen = %addr, error = %e, "the HTTP listener's default address is taken; serving without it (set cairn.http.listen to choose another)");
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot listen on {addr} (cairn.http.listen)"))
            }
        }
    }
    let serving = tokio::spawn(server.run(shutdown_rx));
    wait_for_signal(&tls).await?;
    if let Some(cluster) = broker.cluster.as_ref() {
        if broker.config.controlled_shutdown_enable() {
            let timeout = broker.config.controlled_shutdown_timeout_ms().max(0) as u64;
            cluster
                .controlled_shutdown(std::time::Duration::from_millis(timeout))
                .await;
        }
    }
    info!("shutting down: no new connections, finishing in-flight requests");
    let _ = shutdown_tx.send(true);
    // Answer JoinGroup/SyncGroup requests parked in a rebalance now (COORDINATOR_NOT_AVAILABLE),
    // so connections can finish without waiting out a rebalance timeout.
    broker.groups.shutdown().await;
    if tokio::time::timeout(std::time::Duration::from_secs(30), serving)
        .await
        .is_err()
    {
        error!("connections did not finish within 30 s; closing anyway");
    }
    broker.shutdown().await?;
    info!("stopped cleanly");
    Ok(())
}

/// Waits for SIGTERM or SIGINT; on SIGHUP re-reads every TLS listener's certificates.
async fn wait_for_signal(tls: &[Arc<TlsListener>]) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => info!("received SIGTERM"),
            _ = int.recv() => info!("received SIGINT"),
            _ = hup.recv() => {
                for listener in tls {
                    match listener.reload() {
                        Ok(()) => info!(listener = listener.listener(), "TLS certificates reloaded"),
                        Err(e) => error!("TLS certificates not reloaded, keeping the old ones: {e}"),
                    }
                }
                continue;
            }
        }
        return Ok(());
    }
}

/// `cairn add-scram`: salts each credential and stores it in the data directory.
fn add_scram(specs: &[String], args: &ServeArgs) -> anyhow::Result<()> {
    let config = build_config(args)?;
    let parsed = specs
        .iter()
        .map(|s| AddScram::parse(s).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let _lock = cairn::broker::lock_data_dir(&data_dir)?;
    let store = CredentialStore::open(&data_dir)?;
    for credential in parsed {
        credential.store(&store)?;
        info!(
            user = %credential.user,
            mechanism = credential.mechanism.name(),
            "SCRAM credential added"
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::AddScram { credentials, args }) => {
            return match add_scram(&credentials, &args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cairn add-scram: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        None => cli.serve,
    };
    let config = match build_config(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("cairn: invalid configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    // Take the whole allowance the system grants (soft limit raised to the hard one), then
    // bound the segment files kept open by it (or by `cairn.log.open.files.max`).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(open_files_limit = limit, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    cairn::log::open_files::set_capacity(config.log_open_files_max());
    tracing::info!(
        segment_files_max = cairn::log::open_files::capacity(),
        "segment files kept open"
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("cairn: {e:#}");
            ExitCode::FAILURE
        }
    }
}
