//! `sallyport-broker --config FILE`: the reference access broker and gateway.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

/// Policy evaluation (regorus) allocates heavily; mimalloc makes each one
/// ~20 % cheaper than glibc malloc (see benches/attest.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sallyport's reference access broker: the v1 API, SQLite state and the
/// WireGuard gateway in one process.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The TOML configuration file (see broker/API.md).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Only validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let settings = broker::server::Config::parse(&text)
        .with_context(|| format!("in {}", args.config.display()))?;
    if args.check {
        tracing::info!("configuration is valid");
        return Ok(());
    }
    let handle = broker::server::start(settings)
        .await
        .context("the broker could not start")?;
    tracing::info!(url = %handle.base_url(), "serving; stop with Ctrl-C or SIGTERM");
    shutdown_signal().await;
    tracing::info!("stopping");
    handle.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
