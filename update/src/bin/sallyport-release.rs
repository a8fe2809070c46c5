//! `sallyport-release`: signs update feeds for the packages `installers/`
//! builds (README "Signed updates" has the steps).
//!
//! Key files hold the 32-byte Ed25519 seed, base64url, one line, created
//! 0600. The root key is kept offline (a hardware token or an air-gapped
//! machine); only `delegate` and `revoke` need it. A build machine holds a
//! signing key that a root vouched for, for weeks at most.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use clap::{Parser, Subcommand};
use ed25519_dalek::SigningKey;
use sha2::{Digest as _, Sha256};
use update::{Artifact, Feed, KeyStatement, Manifest, Revocation, Signed, sign};

#[derive(Debug, Parser)]
#[command(name = "sallyport-release", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a key (root or signing): writes its seed to FILE (0600) and
    /// prints its public key, and for a root the line to build in.
    Keygen {
        /// Where to write the private seed.
        #[arg(long)]
        out: PathBuf,
    },
    /// Root: vouch for a signing key for DAYS days from now.
    Delegate {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        root_id: String,
        #[arg(long)]
        signing: PathBuf,
        #[arg(long)]
        signing_id: String,
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// Where to write the signed statement (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Root: revoke a signing key.
    Revoke {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        root_id: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        reason: String,
        /// Where to write the signed revocation (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Signing key: write the feed for a release.
    Sign {
        #[arg(long)]
        signing: PathBuf,
        #[arg(long)]
        signing_id: String,
        /// The root-signed statement(s) for the signing key (`delegate`).
        #[arg(long = "statement", required = true)]
        statements: Vec<PathBuf>,
        /// Root-signed revocations to publish (`revoke`).
        #[arg(long = "revocation")]
        revocations: Vec<PathBuf>,
        /// The release's version.
        #[arg(long)]
        version: String,
        /// The lowest version still supported.
        #[arg(long)]
        minimum_version: Option<String>,
        /// `PLATFORM=FILE=URL`, e.g.
        /// `linux-deb-x86_64=target/installers/sallyport_0.2.0_amd64.deb=https://…`
        #[arg(long = "artifact", required = true)]
        artifacts: Vec<String>,
        /// When the manifest counts as issued (RFC 3339; default now).
        #[arg(long)]
        issued_at: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Keygen { out } => {
            let mut seed = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
                .map_err(|_| anyhow::anyhow!("the OS random generator failed"))?;
            write_private(&out, &B64.encode(seed))?;
            let key = SigningKey::from_bytes(&seed);
            let public = update::public_key_text(&key);
            say(&format!(
                "public key {public}\nas a built-in root, this line in service/src/updater/roots.txt: ROOT-ID={public}"
            ))?;
        }
        Command::Delegate {
            root,
            root_id,
            signing,
            signing_id,
            days,
            out,
        } => {
            let now = time::OffsetDateTime::now_utc();
            let statement = KeyStatement {
                id: signing_id,
                public_key: update::public_key_text(&read_key(&signing)?),
                not_before: now,
                not_after: now + time::Duration::days(days),
            };
            write_json(&out, &sign(&statement, &read_key(&root)?, &root_id))?;
        }
        Command::Revoke {
            root,
            root_id,
            id,
            reason,
            out,
        } => {
            let revocation = Revocation { id, reason };
            write_json(&out, &sign(&revocation, &read_key(&root)?, &root_id))?;
        }
        Command::Sign {
            signing,
            signing_id,
            statements,
            revocations,
            version,
            minimum_version,
            artifacts,
            issued_at,
            out,
        } => {
            semver::Version::parse(&version).context("--version")?;
            let issued_at = match issued_at {
                Some(text) => time::OffsetDateTime::parse(
                    &text,
                    &time::format_description::well_known::Rfc3339,
                )
                .context("--issued-at")?,
                None => time::OffsetDateTime::now_utc(),
            };
            let mut manifest = Manifest {
                version,
                issued_at,
                minimum_version,
                artifacts: Default::default(),
            };
            for spec in artifacts {
                let mut parts = spec.splitn(3, '=');
                let (Some(platform), Some(file), Some(url)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    bail!("--artifact {spec:?}: expected PLATFORM=FILE=URL");
                };
                let bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
                manifest.artifacts.insert(
                    platform.to_owned(),
                    Artifact {
                        url: url.to_owned(),
                        sha256: update::hex(&Sha256::digest(&bytes)),
                        size: bytes.len() as u64,
                    },
                );
            }
            let feed = Feed {
                keys: statements
                    .iter()
                    .map(|p| read_json(p))
                    .collect::<anyhow::Result<_>>()?,
                revocations: revocations
                    .iter()
                    .map(|p| read_json(p))
                    .collect::<anyhow::Result<_>>()?,
                manifest: sign(&manifest, &read_key(&signing)?, &signing_id),
            };
            write_json(&out, &feed)?;
        }
    }
    Ok(())
}

fn say(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    writeln!(std::io::stdout(), "{text}")?;
    Ok(())
}

fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let seed = B64
        .decode(text.trim())
        .with_context(|| format!("{} is not a key file", path.display()))?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} does not hold a 32-byte seed", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn read_json(path: &Path) -> anyhow::Result<Signed> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a signed statement", path.display()))
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{text}\n").as_bytes())?;
    Ok(())
}
