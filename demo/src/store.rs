//! Where the demo keeps its tokens and device key: never next to the
//! user's real sign-in.
//!
//! By default the OS keyring is used (the same path a real sign-in takes)
//! under its own service name, [`SERVICE`], with every account prefixed by
//! a per-run id so two demos never share items, and every item the demo
//! wrote is deleted when it ends ([`DemoStore::sweep`]). A fresh machine may
//! have no usable keyring (no Secret Service, keyctl forbidden in a
//! container), and a locked desktop keyring may wait for a password prompt;
//! then the demo keeps them in process memory instead and says so.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::identity::store::{KeyringStore, MemoryStore, SecretStore, StoreError};
use agent::secrets::Secret;

/// The keyring service the demo's items live under (the real agent uses
/// `sallyport`).
pub const SERVICE: &str = "sallyport-demo";

/// How long the keyring may take to answer a probe before the demo gives
/// up on it (a locked keyring can wait for a password prompt forever).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A store that namespaces accounts per run and remembers what it wrote.
#[derive(Debug)]
pub struct DemoStore {
    inner: Arc<dyn SecretStore>,
    prefix: String,
    written: Mutex<BTreeSet<String>>,
    /// Why the OS keyring is not used, when it is not.
    pub fallback_reason: Option<String>,
}

impl DemoStore {
    /// Over `inner`, with accounts prefixed by `run_id`.
    pub fn new(inner: Arc<dyn SecretStore>, run_id: &str) -> Self {
        Self {
            inner,
            prefix: format!("demo-{run_id}/"),
            written: Mutex::new(BTreeSet::new()),
            fallback_reason: None,
        }
    }

    /// The OS keyring under [`SERVICE`] when it answers within a few
    /// seconds; memory otherwise (or when `memory_only`).
    pub fn open(run_id: &str, memory_only: bool) -> Self {
        if memory_only {
            let mut store = Self::new(Arc::new(MemoryStore::new()), run_id);
            store.fallback_reason = Some("--no-keyring was given".to_owned());
            return store;
        }
        // A plain thread, not spawn_blocking: if the keyring hangs, the
        // thread is simply left behind and dies with the process.
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("demo-keyring-probe".to_owned())
            .spawn(move || {
                let _ = tx.send(KeyringStore::open_default(SERVICE));
            });
        let reason = match spawned {
            Err(e) => e.to_string(),
            Ok(_) => match rx.recv_timeout(PROBE_TIMEOUT) {
                Ok(Ok(keyring)) => return Self::new(Arc::new(keyring), run_id),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!(
                    "the OS keyring did not answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                ),
            },
        };
        let mut store = Self::new(Arc::new(MemoryStore::new()), run_id);
        store.fallback_reason = Some(reason);
        store
    }

    fn account(&self, account: &str) -> String {
        format!("{}{account}", self.prefix)
    }

    /// Deletes every item this run wrote; how many, or the first failure.
    pub fn sweep(&self) -> Result<usize, StoreError> {
        let written: Vec<String> = match self.written.lock() {
            Ok(mut set) => std::mem::take(&mut *set).into_iter().collect(),
            Err(_) => return Err(StoreError::Unavailable("demo store poisoned".to_owned())),
        };
        for account in &written {
            self.inner.delete(account)?;
        }
        Ok(written.len())
    }
}

impl SecretStore for DemoStore {
    fn get(&self, account: &str) -> Result<Option<Secret>, StoreError> {
        self.inner.get(&self.account(account))
    }

    fn set(&self, account: &str, value: &Secret) -> Result<(), StoreError> {
        let account = self.account(account);
        if let Ok(mut set) = self.written.lock() {
            set.insert(account.clone());
        }
        self.inner.set(&account, value)
    }

    fn delete(&self, account: &str) -> Result<(), StoreError> {
        let account = self.account(account);
        self.inner.delete(&account)?;
        if let Ok(mut set) = self.written.lock() {
            set.remove(&account);
        }
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn accounts_are_namespaced_and_swept() {
        let memory = Arc::new(MemoryStore::new());
        let store = DemoStore::new(memory.clone(), "r1");
        store
            .set("device-key", &Secret::new("k".to_owned()))
            .unwrap();
        store.set("tokens", &Secret::new("t".to_owned())).unwrap();
        assert_eq!(store.get("device-key").unwrap().unwrap().expose(), "k");
        assert!(memory.get("device-key").unwrap().is_none());
        assert!(memory.get("demo-r1/device-key").unwrap().is_some());
        assert_eq!(store.sweep().unwrap(), 2);
        assert!(memory.is_empty());
    }

    #[test]
    fn memory_only_says_why() {
        let store = DemoStore::open("r2", true);
        assert_eq!(store.backend_name(), "memory");
        assert!(store.fallback_reason.is_some());
    }
}
