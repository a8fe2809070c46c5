//! The device service's updater: it checks the signed feed IT names in
//! the managed settings (`update.feed_url`), refuses anything whose chain,
//! dates, version or bytes do not check out (the `update` crate decides,
//! purely), and in `auto` mode installs the package with the platform's
//! own installer, within `update.window`.
//!
//! Why the service and not the tray app: installing needs the privileges
//! only the service has, and a security client must not ask the user for
//! them. What it did is kept in `update-state.json` in the service's state
//! directory, so a restart (the package's own maintainer scripts restart
//! the service into the new binary) can tell "updated to X" from "the
//! install did not take", and an older manifest than the last accepted one
//! is refused even after a restart (freeze attacks).
//!
//! Every outcome is logged (`sallyportd.log`) and is the [`UpdateStatus`]
//! the agent shows (`sallyport status`, the timeline).

mod install;

use std::path::{Path, PathBuf};
use std::time::Duration;

use semver::Version;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use update::policy::{InstallWindow, Mode};
use update::{Decision, Refusal, RootKey};

/// Root keys built into this binary: `roots.txt` beside this file (the
/// reviewed list, one `id=base64url-public-key` per line), plus
/// `SALLYPORT_UPDATE_ROOTS` at build time (`id=key,…`, for a private
/// build's own root). `sallyportd --update-root` adds more (tests);
/// with none at all every feed is refused.
pub const BUILT_IN_ROOTS: &str = include_str!("roots.txt");

/// Roots added at build time (`SALLYPORT_UPDATE_ROOTS`).
const BUILD_TIME_ROOTS: Option<&str> = option_env!("SALLYPORT_UPDATE_ROOTS");

/// The roots this binary trusts without any flag: [`BUILT_IN_ROOTS`]'s
/// lines (comments and blanks skipped) and the build-time ones.
pub fn built_in_roots() -> Result<Vec<RootKey>, UpdaterError> {
    let mut roots = parse_root_lines(BUILT_IN_ROOTS)?;
    roots.extend(parse_roots(BUILD_TIME_ROOTS.unwrap_or_default())?);
    Ok(roots)
}

/// `roots.txt`'s format: one root per line, `#` comments, blank lines.
fn parse_root_lines(text: &str) -> Result<Vec<RootKey>, UpdaterError> {
    let listed = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect::<Vec<_>>()
        .join(",");
    parse_roots(&listed)
}

/// How long one download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// The updater's phase, as the agent and `sallyport status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    /// `update.mode = off`, or no `update.feed_url`.
    Off,
    /// Checked: nothing newer.
    UpToDate,
    /// A newer signed version exists (`notify`, or `auto` outside the window).
    Available {
        /// The version offered.
        version: String,
        /// The running version is below the release's minimum.
        required: bool,
    },
    /// Being installed.
    Installing {
        /// The version being installed.
        version: String,
    },
    /// Installed and running.
    Updated {
        /// The version before.
        from: String,
        /// The version now running.
        to: String,
    },
    /// The feed or the download was refused.
    Refused {
        /// Why (the `update::Refusal`).
        reason: String,
    },
    /// Checking or installing failed (network, installer).
    Failed {
        /// Why.
        reason: String,
    },
}

/// What the service says about updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// The running version.
    pub running: String,
    /// Where it is.
    pub phase: Phase,
    /// When the feed was last checked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<String>,
    /// What the updater did lately, oldest first: every change of phase,
    /// each refusal with its reason, at most [`RECENT_EVENTS`]. The agent
    /// records them in its timeline with their own times, so a refusal
    /// between two of its polls, or while no agent ran, is not lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<UpdateEvent>,
}

/// One thing the updater did, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateEvent {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What.
    pub phase: Phase,
}

/// How many [`UpdateEvent`]s the service keeps: a few weeks of checks
/// that change something; a feed refused every 6 hours with the same
/// reason is one event.
pub const RECENT_EVENTS: usize = 50;

/// What survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    /// `issued_at` of the newest manifest accepted.
    #[serde(default, with = "time::serde::rfc3339::option")]
    last_issued_at: Option<OffsetDateTime>,
    /// An install started: (from, to).
    #[serde(default)]
    installing: Option<(String, String)>,
    /// The last status.
    #[serde(default)]
    status: Option<UpdateStatus>,
    /// The recent events (`UpdateStatus::recent`).
    #[serde(default)]
    events: Vec<UpdateEvent>,
}

impl Stored {
    /// Records `phase` at `at` unless it is the phase last recorded.
    fn note(&mut self, phase: &Phase, at: OffsetDateTime) {
        if self.events.last().is_some_and(|e| &e.phase == phase) {
            return;
        }
        self.events.push(UpdateEvent {
            at,
            phase: phase.clone(),
        });
        let excess = self.events.len().saturating_sub(RECENT_EVENTS);
        self.events.drain(..excess);
    }

    /// The last status with the recent events.
    fn status_with_events(&self) -> Option<UpdateStatus> {
        self.status.clone().map(|mut status| {
            status.recent = self.events.clone();
            status
        })
    }
}

/// The updater's fixed parts.
#[derive(Debug, Clone)]
pub struct UpdaterConfig {
    /// Where `update-state.json` and the downloads live (root-only).
    pub state_dir: PathBuf,
    /// The trusted roots.
    pub roots: Vec<RootKey>,
    /// The running version.
    pub running: Version,
    /// This machine's platform name in manifests.
    pub platform: String,
    /// Read the managed settings from this TOML file instead of the OS's
    /// managed source (tests, and machines configured by file).
    pub settings_file: Option<PathBuf>,
}

/// The updater.
#[derive(Debug)]
pub struct Updater {
    config: UpdaterConfig,
    http: reqwest::Client,
}

/// Why the updater could not start.
#[derive(Debug, thiserror::Error)]
pub enum UpdaterError {
    /// A root key given is not `id=base64url`.
    #[error("update root {0:?}: expected ID=BASE64URL-PUBLIC-KEY (32 bytes)")]
    BadRoot(String),
    /// The HTTP client could not be built.
    #[error("the update HTTP client: {0}")]
    Http(String),
}

/// Parses `id=base64url,id=base64url`. The ids are leaked into `'static`
/// (a handful, once at start).
pub fn parse_roots(text: &str) -> Result<Vec<RootKey>, UpdaterError> {
    use base64::Engine as _;
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let (id, key) = entry
                .split_once('=')
                .ok_or_else(|| UpdaterError::BadRoot(entry.to_owned()))?;
            let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(key)
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or_else(|| UpdaterError::BadRoot(entry.to_owned()))?;
            Ok(RootKey {
                id: Box::leak(id.to_owned().into_boxed_str()),
                public_key: key,
            })
        })
        .collect()
}

impl Updater {
    /// An updater; nothing is checked until [`Updater::check`].
    pub fn new(config: UpdaterConfig) -> Result<Updater, UpdaterError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(DOWNLOAD_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| UpdaterError::Http(e.to_string()))?;
        Ok(Updater { config, http })
    }

    fn state_path(&self) -> PathBuf {
        self.config.state_dir.join("update-state.json")
    }

    fn load(&self) -> Stored {
        std::fs::read(self.state_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, stored: &Stored) {
        let write = || -> std::io::Result<()> {
            logfiles::private_dir(&self.config.state_dir)?;
            let tmp = self.state_path().with_extension("json.tmp");
            write_private(&tmp, &serde_json::to_vec_pretty(stored).unwrap_or_default())?;
            std::fs::rename(tmp, self.state_path())
        };
        if let Err(e) = write() {
            tracing::warn!(error = %e, "cannot keep the update state");
        }
    }

    /// The last status (what `UpdateStatus` requests answer), after
    /// settling an install that a restart finished: the running version is
    /// the one being installed (updated), or not (the install did not
    /// take).
    pub fn status(&self) -> UpdateStatus {
        let mut stored = self.load();
        if let Some((from, to)) = stored.installing.take() {
            let running = self.config.running.to_string();
            let phase = if running == to {
                tracing::info!(%from, %to, "updated");
                Phase::Updated { from, to }
            } else if running == from {
                // Still the old binary: the installer has not restarted
                // the service (yet), or it failed.
                return stored
                    .status_with_events()
                    .unwrap_or(self.with_phase(Phase::Installing { version: to }, None));
            } else {
                Phase::Failed {
                    reason: format!("installed {to}, but {running} is running"),
                }
            };
            stored.note(&phase, OffsetDateTime::now_utc());
            let status = self.with_phase(
                phase,
                stored.status.as_ref().and_then(|s| s.last_check.clone()),
            );
            stored.status = Some(status);
            self.save(&stored);
        }
        stored
            .status_with_events()
            .unwrap_or_else(|| self.with_phase(Phase::Off, None))
    }

    fn with_phase(&self, phase: Phase, last_check: Option<String>) -> UpdateStatus {
        UpdateStatus {
            running: self.config.running.to_string(),
            phase,
            last_check,
            recent: Vec::new(),
        }
    }

    /// One check at `now`: read the policy, fetch and verify the feed,
    /// decide, and in `auto` mode within the window download, check and
    /// install. Returns (and keeps) the status.
    pub async fn check(&self, now: OffsetDateTime, local_time: jiff::civil::Time) -> UpdateStatus {
        let mut stored = self.load();
        let checked = Some(rfc3339(now));
        let phase = self.check_phase(now, local_time, &mut stored).await;
        match &phase {
            Phase::Refused { reason } => tracing::warn!(%reason, "update refused"),
            Phase::Failed { reason } => tracing::warn!(%reason, "update check failed"),
            other => tracing::info!(phase = ?other, "update check"),
        }
        stored.note(&phase, now);
        let mut status = self.with_phase(phase, checked);
        stored.status = Some(status.clone());
        self.save(&stored);
        status.recent = stored.events;
        status
    }

    async fn check_phase(
        &self,
        now: OffsetDateTime,
        local_time: jiff::civil::Time,
        stored: &mut Stored,
    ) -> Phase {
        let policy = match self.policy() {
            Ok(Some(policy)) => policy,
            Ok(None) => return Phase::Off,
            Err(reason) => return Phase::Failed { reason },
        };
        if self.config.roots.is_empty() {
            return Phase::Refused {
                reason: "this build trusts no update root (roots.txt lists none and no \
                         --update-root was given), so no feed can be verified"
                    .to_owned(),
            };
        }
        let feed = match self
            .fetch(&policy.feed_url, update::MAX_FEED_BYTES as u64)
            .await
        {
            Ok(bytes) => bytes,
            Err(reason) => return Phase::Failed { reason },
        };
        let verified = match update::verify_feed(&feed, &self.config.roots, now) {
            Ok(v) => v,
            Err(refusal) => return refused(&refusal),
        };
        let decision = update::decide(
            &verified.manifest,
            &self.config.platform,
            &self.config.running,
            policy.pin.as_ref(),
            stored.last_issued_at,
        );
        let decision = match decision {
            Ok(d) => d,
            Err(refusal) => return refused(&refusal),
        };
        // Accepted: an older manifest is refused from now on.
        stored.last_issued_at = Some(
            stored
                .last_issued_at
                .map_or(verified.manifest.issued_at, |seen| {
                    seen.max(verified.manifest.issued_at)
                }),
        );
        let (version, artifact, required) = match decision {
            Decision::UpToDate => return Phase::UpToDate,
            Decision::Install {
                version,
                artifact,
                required,
            } => (version, artifact, required),
        };
        let in_window = policy.window.is_none_or(|w| {
            w.contains(
                time::Time::from_hms(local_time.hour() as u8, local_time.minute() as u8, 0)
                    .unwrap_or(time::Time::MIDNIGHT),
            )
        });
        if policy.mode != Mode::Auto || !in_window {
            return Phase::Available {
                version: version.to_string(),
                required,
            };
        }
        let bytes = match self.fetch(&artifact.url, artifact.size).await {
            Ok(bytes) => bytes,
            Err(reason) => return Phase::Failed { reason },
        };
        if let Err(refusal) = update::check_artifact(&bytes, &artifact) {
            return refused(&refusal);
        }
        let file = match self.keep_download(&artifact.url, &bytes) {
            Ok(file) => file,
            Err(e) => {
                return Phase::Failed {
                    reason: format!("cannot keep the download: {e}"),
                };
            }
        };
        let from = self.config.running.to_string();
        stored.installing = Some((from.clone(), version.to_string()));
        let installing = Phase::Installing {
            version: version.to_string(),
        };
        stored.note(&installing, now);
        stored.status = Some(self.with_phase(installing, Some(rfc3339(now))));
        self.save(stored);
        tracing::info!(%version, file = %file.display(), "installing the update");
        match install::run(&file).await {
            // The package's scripts restart the service into the new
            // binary; until then this one says what it did.
            Ok(()) => Phase::Installing {
                version: version.to_string(),
            },
            Err(reason) => {
                stored.installing = None;
                Phase::Failed { reason }
            }
        }
    }

    /// The managed update policy; `None` when updates are off or no feed
    /// is set.
    fn policy(&self) -> Result<Option<Policy>, String> {
        let effective = match &self.config.settings_file {
            Some(path) => settings::read_toml_file(path)
                .and_then(|source| settings::merge(None, source.as_ref())),
            None => settings::load_managed(),
        }
        .map_err(|e| format!("the managed settings: {e}"))?;
        let u = &effective.settings.update;
        let mode = Mode::parse(&u.mode)?;
        let Some(feed_url) = u.feed_url.clone() else {
            return Ok(None);
        };
        if mode == Mode::Off {
            return Ok(None);
        }
        Ok(Some(Policy {
            mode,
            feed_url,
            pin: u
                .pin
                .as_deref()
                .map(update::policy::parse_pin)
                .transpose()?,
            window: u.window.as_deref().map(InstallWindow::parse).transpose()?,
        }))
    }

    /// GETs `url` (HTTPS, or HTTP to loopback), reading at most `max + 1`
    /// bytes: one more than allowed is enough for the caller's check to
    /// refuse it (the feed's size limit, the artifact's signed size), and a
    /// server sending without end is cut there.
    async fn fetch(&self, url: &str, max: u64) -> Result<Vec<u8>, String> {
        if !broker::api::https_or_loopback(url) {
            return Err(format!(
                "{url}: updates are fetched over HTTPS only (HTTP only from loopback)"
            ));
        }
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("{url}: {e}"))?;
        let limit = usize::try_from(max).unwrap_or(usize::MAX).saturating_add(1);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            let room = limit.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= limit {
                break;
            }
        }
        Ok(body)
    }

    /// Writes a checked download under `state_dir/updates/`, owner-only,
    /// named after the URL's last segment (sanitised).
    fn keep_download(&self, url: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let dir = self.config.state_dir.join("updates");
        logfiles::private_dir(&dir)?;
        let name: String = url
            .rsplit('/')
            .next()
            .unwrap_or("update")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '~'))
            .collect();
        let name = if name.is_empty() || name.starts_with('.') {
            format!("update-{name}")
        } else {
            name
        };
        let path = dir.join(name);
        write_private(&path, bytes)?;
        Ok(path)
    }
}

/// IT's policy, parsed.
#[derive(Debug, Clone)]
struct Policy {
    mode: Mode,
    feed_url: String,
    pin: Option<Version>,
    window: Option<InstallWindow>,
}

fn refused(refusal: &Refusal) -> Phase {
    Phase::Refused {
        reason: refusal.to_string(),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    std::io::Write::write_all(&mut options.open(path)?, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_root_list_parses() {
        built_in_roots().expect("service/src/updater/roots.txt must parse");
    }

    #[test]
    fn root_lines_skip_comments_and_refuse_garbage() {
        let key = "A".repeat(43);
        let roots = parse_root_lines(&format!(
            "# the release roots\n\n  root-2026={key}  \n# root-old=retired\nroot-2027={key}\n"
        ))
        .unwrap();
        assert_eq!(
            roots.iter().map(|r| r.id).collect::<Vec<_>>(),
            ["root-2026", "root-2027"]
        );
        assert!(matches!(
            parse_root_lines("root-2026=not base64!"),
            Err(UpdaterError::BadRoot(_))
        ));
        assert!(matches!(
            parse_root_lines("just-a-word"),
            Err(UpdaterError::BadRoot(_))
        ));
    }
}
