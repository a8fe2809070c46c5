//! `sallyportd`: the device service. Runs as root under systemd
//! (`service/systemd/sallyportd.service`); serves the local API on a Unix
//! socket any user may connect to. Logs never contain key material: the
//! key is named by its thumbprint (the device id) only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use service::server::{Backend, DEFAULT_TCTI, Service, ServiceConfig, TpmConfig};

/// The Sallyport device service.
#[derive(Debug, Parser)]
#[command(name = "sallyportd", version)]
struct Args {
    /// The Unix socket to serve on.
    #[arg(long, default_value = "/run/sallyport/sallyportd.sock")]
    socket: PathBuf,
    /// The software key's file (root-only, 0600).
    #[arg(long, default_value = "/var/lib/sallyport/device-key.p8")]
    key: PathBuf,
    /// The posture cache directory (root-owned).
    #[arg(long, default_value = "/var/cache/sallyport")]
    cache_dir: PathBuf,
    /// The key store: `tpm` (a TPM 2.0 at `--tcti`, or fail), `software`
    /// (the `--key` file), or `auto` (the TPM when this build has TPM
    /// support and one answers, else software; the log says which).
    #[arg(long, default_value = "auto")]
    backend: Backend,
    /// Where the TPM is, as a tpm2-tss TCTI string: the kernel's resource
    /// manager, or `swtpm:host=127.0.0.1,port=2321` for a software TPM.
    #[arg(long, default_value = DEFAULT_TCTI)]
    tcti: String,
    /// Collect only these posture checks (all when absent), comma-separated
    /// check ids; for tests and diagnosis.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Seconds a posture report is reused before measuring again.
    #[arg(long, default_value_t = 30)]
    posture_max_age: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // tss-esapi logs every context it closes at info.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tss_esapi=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let only = args
        .only
        .iter()
        .map(|id| {
            posture::CheckId::from_name(id).with_context(|| format!("unknown posture check {id:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = ServiceConfig {
        backend: args.backend,
        key_path: args.key.clone(),
        tpm: TpmConfig {
            tcti: args.tcti.clone(),
            ..TpmConfig::default()
        },
        collect: posture::collect::Options {
            only,
            cache: posture::cache::Cache::at(&args.cache_dir),
            ..posture::collect::Options::default()
        },
        posture_max_age: Duration::from_secs(args.posture_max_age),
    };
    let service = Arc::new(Service::open(config).with_context(|| match args.backend {
        Backend::Software => format!("opening the device key at {}", args.key.display()),
        Backend::Tpm => format!("opening the device key in the TPM at {}", args.tcti),
        Backend::Auto => format!(
            "opening the device key (TPM at {}, else {})",
            args.tcti,
            args.key.display()
        ),
    })?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(args.socket, service))
}

#[cfg(unix)]
async fn serve(socket: PathBuf, service: Arc<Service>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let listener = service::server::unix::Listener::bind(&socket).await?;
    tracing::info!(socket = %listener.path().display(), "sallyportd serving");
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        () = listener.serve(service) => {}
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
    }
    Ok(())
}

#[cfg(not(unix))]
async fn serve(_socket: PathBuf, _service: Arc<Service>) -> anyhow::Result<()> {
    anyhow::bail!("the Windows service is not written yet")
}
