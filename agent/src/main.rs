//! `sallyport`: the headless command line of the Sallyport agent.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agent::posture_view::{self, PostureOutput};
use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use posture::CheckId;
use posture::cache::Cache;
use posture::collect::{self, Options};
use posture::policy::Policy;

/// Exit code when the command itself failed (bad arguments, bad policy).
const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "sallyport", version, about = "Sallyport zero-trust client")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure this device's health and evaluate the posture policy.
    ///
    /// Exit code: 0 compliant, 1 not compliant, 2 error.
    Posture {
        /// Print the full report and verdict as JSON.
        #[arg(long)]
        json: bool,
        /// Evaluate this Rego policy instead of the built-in default.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Collect only these checks (repeatable), e.g. `--check firewall`.
        #[arg(long = "check", value_name = "ID")]
        checks: Vec<String>,
        /// Ignore cached slow sources (package manager simulation).
        #[arg(long)]
        no_cache: bool,
        /// Seconds one check may take before it is reported unknown.
        #[arg(long, default_value_t = 45, value_name = "SECONDS")]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SALLYPORT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("sallyport: {err:#}");
            }
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Posture {
            json,
            policy,
            checks,
            no_cache,
            timeout,
        } => posture_command(json, policy, &checks, no_cache, timeout),
    }
}

fn posture_command(
    json: bool,
    policy_path: Option<PathBuf>,
    check_names: &[String],
    no_cache: bool,
    timeout: u64,
) -> anyhow::Result<u8> {
    let mut only = Vec::new();
    for name in check_names {
        match CheckId::from_name(name) {
            Some(id) => only.push(id),
            None => {
                let known: Vec<&str> = CheckId::ALL.iter().map(|id| id.as_str()).collect();
                bail!("unknown check {name:?}; known checks: {}", known.join(", "));
            }
        }
    }
    // Load the policy first: a broken policy is an error before any work.
    let policy = match &policy_path {
        Some(path) => Policy::from_file(path)?,
        None => Policy::default_policy()?,
    };
    let options = Options {
        only,
        check_timeout: Duration::from_secs(timeout),
        cache: if no_cache {
            Cache::disabled()
        } else {
            Cache::default_location()
        },
        ..Options::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(collect::collect(&options));
    let evaluation = policy.evaluate(&report)?;
    let text = if json {
        let output = PostureOutput {
            report: &report,
            policy: policy.name(),
            evaluation: &evaluation,
        };
        serde_json::to_string_pretty(&output)? + "\n"
    } else {
        posture_view::render_table(&report, policy.name(), &evaluation)
    };
    #[allow(clippy::print_stdout)]
    {
        print!("{text}");
    }
    Ok(posture_view::exit_code(&evaluation))
}
