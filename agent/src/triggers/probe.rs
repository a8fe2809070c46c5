//! Taking a [`Snapshot`]: the interface list (sysinfo) and the modification
//! times of the files that decide posture checks on this OS. Cheap enough to
//! run every few seconds: no commands, a few `stat`s.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::{Snapshot, network_digest};

#[cfg(target_os = "linux")]
#[path = "watched_linux.rs"]
mod watched;
#[cfg(target_os = "macos")]
#[path = "watched_macos.rs"]
mod watched;
#[cfg(target_os = "windows")]
#[path = "watched_windows.rs"]
mod watched;
#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
mod watched {
    pub const FILES: &[&str] = &[];
}

/// The files watched on this OS.
pub fn watched_files() -> Vec<PathBuf> {
    watched::FILES.iter().map(PathBuf::from).collect()
}

/// Takes snapshots; keeps the monotonic origin.
#[derive(Debug)]
pub struct Prober {
    origin: Instant,
    files: Vec<PathBuf>,
}

impl Default for Prober {
    fn default() -> Self {
        Prober::new(watched_files())
    }
}

impl Prober {
    /// A prober watching `files` (tests watch their own).
    pub fn new(files: Vec<PathBuf>) -> Self {
        Prober {
            origin: Instant::now(),
            files,
        }
    }

    /// The machine now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            wall: SystemTime::now(),
            monotonic: self.origin.elapsed(),
            network: network(),
            files: self
                .files
                .iter()
                .map(|path| {
                    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                    (path.clone(), modified)
                })
                .collect::<BTreeMap<_, _>>(),
        }
    }
}

fn network() -> Option<u64> {
    let networks = sysinfo::Networks::new_with_refreshed_list().ok()?;
    Some(network_digest(networks.iter().map(|(name, data)| {
        let name = name.to_str().unwrap_or("?");
        let mut addrs: Vec<String> = data.ip_networks().iter().map(ToString::to_string).collect();
        addrs.push(data.mac_address().to_string());
        (name, addrs)
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::{Trigger, Watcher};

    #[test]
    fn a_real_file_touched_between_snapshots_triggers() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nftables.conf");
        std::fs::write(&file, "table inet filter {}\n").unwrap();
        let prober = Prober::new(vec![file.clone(), dir.path().join("absent")]);
        let mut watcher = Watcher::default();
        assert!(watcher.observe(prober.snapshot()).is_empty());
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let triggers = watcher.observe(prober.snapshot());
        assert!(
            triggers.contains(&Trigger::FileChanged(file)),
            "{triggers:?}"
        );
    }

    #[test]
    fn this_machine_has_a_listable_network() {
        // Loopback at least; a failure here would silently disable the
        // network trigger.
        assert!(network().is_some());
    }
}
