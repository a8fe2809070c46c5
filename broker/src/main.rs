//! `sallyport-broker --config FILE`: the reference access broker and gateway.

use std::path::PathBuf;

use anyhow::Context as _;
use broker::server::store::Database;
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
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Only validate the configuration and exit.
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// The audit log.
    Audit {
        #[command(subcommand)]
        what: AuditCommand,
    },
    /// Helpdesk views, read from the database (the broker may be running).
    Admin {
        #[command(subcommand)]
        what: AdminCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum AdminCommand {
    /// The broker's side of a device, by the support code its user reads
    /// out (case and spaces ignored): enrolment, verdicts with their
    /// violations, grants, and the audit rows naming it, in time order.
    Device {
        /// The support code (`Xy3k 9QpA`), or any longer prefix of the
        /// device id. A code may start with `-`: put it after `--`
        /// (`admin device -- -x3k 9QpA`).
        code: Vec<String>,
        /// Print JSON (a list: more than one device may share a code).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain: exits 1 naming the first row that
    /// was changed, deleted or reordered; prints the head hash to compare
    /// with the last record your SIEM received.
    Verify,
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
    let Some(config) = args.config else {
        anyhow::bail!("--config FILE is required");
    };
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let settings =
        broker::server::Config::parse(&text).with_context(|| format!("in {}", config.display()))?;
    if let Some(Command::Audit {
        what: AuditCommand::Verify,
    }) = args.command
    {
        return verify_audit(
            &settings.database(),
            settings.raw.server.database_ca.as_deref(),
        );
    }
    if let Some(Command::Admin {
        what: AdminCommand::Device { code, json },
    }) = args.command
    {
        return device_support(
            &settings.database(),
            settings.raw.server.database_ca.as_deref(),
            &code.join(" "),
            json,
        );
    }
    if args.check {
        tracing::info!("configuration is valid");
        return Ok(());
    }
    let handle = broker::server::start(settings)
        .await
        .context("the broker could not start")?;
    tracing::info!(url = %handle.base_url(), "serving; stop with Ctrl-C or SIGTERM");
    broker::server::shutdown_signal().await;
    tracing::info!("stopping");
    handle.shutdown().await;
    Ok(())
}

/// The store as the inspection commands read it: a SQLite file as it is
/// (read-only, no schema change), or the PostgreSQL database; with the
/// name to quote in messages.
fn open_for_reading(
    database: &Database,
    postgres_ca: Option<&std::path::Path>,
) -> anyhow::Result<(Box<dyn broker::server::store::Store>, String)> {
    Ok(match database {
        Database::Sqlite(path) => (
            Box::new(
                broker::server::store::SqliteStore::open_read_only(path)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            ),
            path.display().to_string(),
        ),
        Database::Postgres(url) => (
            Box::new(
                broker::server::store::PostgresStore::connect_with(url, postgres_ca)
                    .context("cannot connect to server.database_url")?,
            ),
            "server.database_url".to_owned(),
        ),
    })
}

fn verify_audit(database: &Database, ca: Option<&std::path::Path>) -> anyhow::Result<()> {
    let (store, name) = open_for_reading(database, ca)?;
    let rows = store.audit_chain().with_context(|| {
        format!(
            "cannot read the audit log of {name} (a database from before the audit chain: start this broker once)"
        )
    })?;
    use std::io::Write as _;
    match broker::server::audit_chain::verify(rows) {
        Ok(v) => {
            writeln!(
                std::io::stdout(),
                "audit log intact: {} chained rows{}, last seq {}, head {}",
                v.rows,
                if v.unchained > 0 {
                    format!(
                        " (and {} older rows from before the chain, not checked)",
                        v.unchained
                    )
                } else {
                    String::new()
                },
                v.last_seq.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                v.head.as_deref().unwrap_or("-")
            )?;
            Ok(())
        }
        Err(broken) => {
            writeln!(std::io::stderr(), "audit log TAMPERED: {broken}")?;
            std::process::exit(1);
        }
    }
}

fn device_support(
    database: &Database,
    ca: Option<&std::path::Path>,
    code: &str,
    json: bool,
) -> anyhow::Result<()> {
    let prefix = broker::api::support_code_prefix(code).with_context(|| {
        format!("{code:?}: a support code is 4 to 64 letters, digits, - or _ (spaces and case are ignored)")
    })?;
    let (store, name) = open_for_reading(database, ca)?;
    let found = store
        .device_support(&prefix)
        .with_context(|| format!("cannot read {name}"))?;
    use std::io::Write as _;
    let mut out = std::io::stdout();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&found)?)?;
    }
    if found.is_empty() {
        anyhow::bail!("no device has the support code {code:?}");
    }
    if !json {
        for (i, device) in found.iter().enumerate() {
            if i > 0 {
                writeln!(out, "\n---\n")?;
            }
            write!(out, "{}", broker::server::support_view::render(device))?;
        }
    }
    Ok(())
}
