//! Token storage in Windows Credential Manager for real (CI runs it under
//! Wine, whose `CredWriteW`/`CredReadW` keep credentials in the prefix):
//! small and large values round-trip, a value over Credential Manager's
//! 2560-byte blob limit goes through the chunking, shrinking leaves no
//! stale part behind, and deleting is idempotent.
#![cfg(windows)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent::identity::store::{Backend, KeyringStore, SecretStore as _};
use agent::secrets::Secret;

#[test]
fn credential_manager_round_trip_with_chunking() {
    let store = KeyringStore::open_default("sallyport-test").unwrap();
    assert_eq!(store.backend(), Backend::WindowsCredentialManager);
    let account = format!("wincred-{}", std::process::id());
    store.delete(&account).unwrap();
    assert!(store.get(&account).unwrap().is_none());

    let small = Secret::new("small-secret".to_owned());
    store.set(&account, &small).unwrap();
    assert_eq!(
        store.get(&account).unwrap().unwrap().expose(),
        "small-secret"
    );

    // A token bundle of ~6 KB: more than two Credential Manager blobs.
    let mut big = String::from("{\"id_token\":\"");
    while big.len() < 6000 {
        big.push_str("eyJhbGciOiJSUzI1NiJ9.abcdefghijklmnopqrstuvwxyz0123456789");
    }
    big.push_str("\"}");
    store.set(&account, &Secret::new(big.clone())).unwrap();
    assert_eq!(store.get(&account).unwrap().unwrap().expose(), big);

    store.set(&account, &small).unwrap();
    assert_eq!(
        store.get(&account).unwrap().unwrap().expose(),
        "small-secret"
    );
    // The parts of the big value are gone, not just unreferenced.
    let part = keyring::Entry::new("sallyport-test", &format!("{account}#1")).unwrap();
    assert!(matches!(part.get_password(), Err(keyring::Error::NoEntry)));

    store.delete(&account).unwrap();
    assert!(store.get(&account).unwrap().is_none());
    store.delete(&account).unwrap();
}
