//! `sallyportd`: the device service. Runs as root under systemd
//! (`service/systemd/sallyportd.service`) and serves the local API on a
//! Unix socket any user may connect to; on Windows it runs as LocalSystem
//! under the Service Control Manager (`--service`, see `scm.rs`) and
//! serves a named pipe. Logs never contain key material: the key is named
//! by its thumbprint (the device id) only.

#[cfg(windows)]
mod scm;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use service::server::{Backend, DEFAULT_TCTI, Service, ServiceConfig, TpmConfig};

#[cfg(not(windows))]
mod defaults {
    pub const SOCKET: &str = "/run/sallyport/sallyportd.sock";
    pub const KEY: &str = "/var/lib/sallyport/device-key.p8";
    pub const CACHE: &str = "/var/cache/sallyport";
    #[cfg(target_os = "macos")]
    pub const LOGS: &str = "/Library/Logs/Sallyport";
    #[cfg(not(target_os = "macos"))]
    pub const LOGS: &str = "/var/log/sallyport";
    pub const UPDATE_STATE: &str = "/var/lib/sallyport";
}

#[cfg(windows)]
mod defaults {
    pub const SOCKET: &str = service::server::windows::DEFAULT_PIPE;
    pub const KEY: &str = r"C:\ProgramData\Sallyport\device-key.p8";
    pub const CACHE: &str = r"C:\ProgramData\Sallyport\cache";
    pub const LOGS: &str = r"C:\ProgramData\Sallyport\logs";
    pub const UPDATE_STATE: &str = r"C:\ProgramData\Sallyport";
}

/// This build's version: the package's, or `SALLYPORT_VERSION` at build
/// time (the .deb round trip builds the "next" sallyportd its update
/// installs; a release pipeline may stamp its own).
const VERSION: &str = match option_env!("SALLYPORT_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// The Sallyport device service.
#[derive(Debug, Parser)]
#[command(name = "sallyportd", version = VERSION)]
struct Args {
    /// The Unix socket (Windows: the named pipe) to serve on.
    #[arg(long, default_value = defaults::SOCKET)]
    socket: PathBuf,
    /// The software key's file (root-only, 0600).
    #[arg(long, default_value = defaults::KEY)]
    key: PathBuf,
    /// The posture cache directory (root-owned).
    #[arg(long, default_value = defaults::CACHE)]
    cache_dir: PathBuf,
    /// Where the updater keeps `update-state.json` and its downloads
    /// (root-only).
    #[arg(long, default_value = defaults::UPDATE_STATE)]
    update_state_dir: PathBuf,
    /// Seconds between update checks (IT's `update.*` managed settings
    /// decide whether and what); 0: never.
    #[arg(long, default_value_t = 6 * 3600)]
    update_check_secs: u64,
    /// A root key the updater trusts besides those built in
    /// (`ID=BASE64URL`; repeatable): for private builds and tests.
    #[arg(long = "update-root", value_name = "ID=KEY")]
    update_roots: Vec<String>,
    /// Read the update policy from this TOML file instead of the OS's
    /// managed configuration (tests; machines configured by file).
    #[arg(long, value_name = "FILE")]
    update_settings: Option<PathBuf>,
    /// Where `sallyportd.log` is kept (rotated at 1 MiB, 4 files, every
    /// line redacted; the directory owner-only); `-` for stderr only.
    #[arg(long, default_value = defaults::LOGS)]
    log_dir: PathBuf,
    /// Run under the Windows Service Control Manager (how the MSI
    /// registers it); without it, a console process until Ctrl-C.
    #[cfg(windows)]
    #[arg(long)]
    service: bool,
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
    let args = Args::parse();
    // tss-esapi logs every context it closes at info.
    const FILTER: &str = "info,tss_esapi=warn";
    logfiles::init(
        "RUST_LOG",
        FILTER,
        (args.log_dir != std::path::Path::new("-")).then(|| logfiles::LogFile {
            dir: args.log_dir.clone(),
            set: "sallyportd",
            default_filter: FILTER,
        }),
    );
    #[cfg(windows)]
    if args.service {
        return scm::run_as_service(move |stop| start(&args, stop));
    }
    start(&args, std::future::pending())
}

/// Opens the device key and serves until `stop` completes (or, on Unix,
/// SIGTERM or Ctrl-C; on a Windows console, Ctrl-C).
fn start(args: &Args, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
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
    let updater = Arc::new(start_updater(args)?);
    let service = Arc::new(
        Service::open(config)
            .map(|s| s.with_updater(updater.clone()))
            .with_context(|| match args.backend {
                Backend::Software => format!("opening the device key at {}", args.key.display()),
                Backend::Tpm => format!("opening the device key in the TPM at {}", args.tcti),
                Backend::Auto => format!(
                    "opening the device key (TPM at {}, else {})",
                    args.tcti,
                    args.key.display()
                ),
            })?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if args.update_check_secs > 0 {
            tokio::spawn(check_updates(
                updater,
                Duration::from_secs(args.update_check_secs),
            ));
        }
        serve(&args.socket, service, stop).await
    })
}

/// The updater, trusting the built-in roots and `--update-root`.
fn start_updater(args: &Args) -> anyhow::Result<service::updater::Updater> {
    use service::updater::{Updater, UpdaterConfig, built_in_roots, parse_roots};
    let mut roots = built_in_roots()?;
    roots.extend(parse_roots(&args.update_roots.join(","))?);
    let linux_package = if std::path::Path::new("/usr/bin/dpkg").exists() {
        "deb"
    } else {
        "rpm"
    };
    Ok(Updater::new(UpdaterConfig {
        state_dir: args.update_state_dir.clone(),
        roots,
        running: VERSION.parse()?,
        platform: update::platform(linux_package),
        settings_file: args.update_settings.clone(),
    })?)
}

/// Checks the feed at start (after settling an install a restart
/// finished), then every `every`.
async fn check_updates(updater: Arc<service::updater::Updater>, every: Duration) {
    let status = updater.status();
    tracing::info!(phase = ?status.phase, running = %status.running, "update status at start");
    loop {
        let local = jiff::Zoned::now().time();
        updater.check(time::OffsetDateTime::now_utc(), local).await;
        tokio::time::sleep(every).await;
    }
}

#[cfg(unix)]
async fn serve(
    socket: &std::path::Path,
    service: Arc<Service>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let listener = service::server::unix::Listener::bind(socket).await?;
    tracing::info!(socket = %listener.path().display(), "sallyportd serving");
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        () = listener.serve(service) => {}
        () = stop => tracing::info!("stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
    }
    Ok(())
}

#[cfg(windows)]
async fn serve(
    pipe: &std::path::Path,
    service: Arc<Service>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = service::server::windows::Listener::bind(pipe).await?;
    tracing::info!(pipe = %listener.path().display(), "sallyportd serving");
    tokio::select! {
        () = listener.serve(service) => {}
        () = stop => tracing::info!("the Service Control Manager asked to stop"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
async fn serve(
    _socket: &std::path::Path,
    _service: Arc<Service>,
    _stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    anyhow::bail!("sallyportd has no transport for this OS")
}
