//! `sallyport-gateway --config FILE`: a WireGuard gateway in its own
//! process, taking its peers from the brokers (see
//! `broker::gateway_node`). `sallyport-gateway keygen --out FILE` makes its
//! key and prints the public half for the broker's `[[gateways]]`.

use std::path::PathBuf;

use anyhow::Context as _;
use broker::gateway_node::{self, NodeConfig};
use clap::Parser;

/// Sallyport's separate WireGuard gateway.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Only validate the configuration and exit.
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Writes a new WireGuard private key (0600) and prints its public key.
    Keygen {
        /// Where to write it; an existing file is left alone.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
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
    if let Some(Command::Keygen { out }) = args.command {
        anyhow::ensure!(
            !out.exists(),
            "{} exists; remove it first to replace the gateway's key",
            out.display()
        );
        let key = tunnel::PrivateKey::generate();
        broker::server::state_files::write_private(&out, &key.to_base64())
            .with_context(|| format!("cannot write {}", out.display()))?;
        let public = key.public_key().to_string();
        // The one line of output, for the broker's [[gateways]] public_key.
        std::io::Write::write_all(&mut std::io::stdout(), format!("{public}\n").as_bytes())?;
        return Ok(());
    }
    let Some(path) = args.config else {
        anyhow::bail!("--config FILE is required");
    };
    let config = NodeConfig::load(&path).with_context(|| format!("in {}", path.display()))?;
    if args.check {
        tracing::info!("configuration is valid");
        return Ok(());
    }
    gateway_node::run(config, broker::server::shutdown_signal())
        .await
        .context("the gateway stopped")?;
    Ok(())
}
