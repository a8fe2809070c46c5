//! Every refusal of the chain and of the decision, on a throwaway root.

use super::*;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-12-03 12:00:00 UTC);

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn root(seed: u8, id: &'static str) -> RootKey {
    RootKey {
        id,
        public_key: key(seed).verifying_key().to_bytes(),
    }
}

fn statement(signing: &SigningKey, id: &str, days: i64) -> KeyStatement {
    KeyStatement {
        id: id.to_owned(),
        public_key: public_key_text(signing),
        not_before: NOW - time::Duration::days(1),
        not_after: NOW + time::Duration::days(days),
    }
}

fn manifest(version: &str, issued_at: OffsetDateTime) -> Manifest {
    let mut artifacts = BTreeMap::new();
    artifacts.insert(
        "linux-deb-x86_64".to_owned(),
        Artifact {
            url: "http://127.0.0.1:1/sallyport_0.2.0_amd64.deb".into(),
            sha256: hex(&Sha256::digest(b"package")),
            size: 7,
        },
    );
    Manifest {
        version: version.into(),
        issued_at,
        minimum_version: Some("0.1.5".into()),
        artifacts,
    }
}

/// A feed: root 1 vouches for signing key 2, which signs `m`.
fn feed(m: &Manifest) -> Feed {
    Feed {
        keys: vec![sign(
            &statement(&key(2), "sign-1", 30),
            &key(1),
            "root-test",
        )],
        revocations: Vec::new(),
        manifest: sign(m, &key(2), "sign-1"),
    }
}

fn bytes(f: &Feed) -> Vec<u8> {
    serde_json::to_vec(f).unwrap()
}

fn roots() -> Vec<RootKey> {
    vec![root(1, "root-test")]
}

#[test]
fn a_good_feed_verifies() {
    let m = manifest("0.2.0", NOW);
    let v = verify_feed(&bytes(&feed(&m)), &roots(), NOW).unwrap();
    assert_eq!(v.manifest, m);
    assert_eq!(v.signing_key, "sign-1");
}

#[test]
fn a_tampered_manifest_is_refused() {
    let mut f = feed(&manifest("0.2.0", NOW));
    // Swap in another payload under the same signature.
    let other = sign(&manifest("9.9.9", NOW), &key(2), "sign-1");
    f.manifest.payload = other.payload;
    assert_eq!(
        verify_feed(&bytes(&f), &roots(), NOW),
        Err(Refusal::BadSignature("the manifest".into()))
    );
}

#[test]
fn a_manifest_signed_by_an_unvouched_key_is_refused() {
    let m = manifest("0.2.0", NOW);
    let mut f = feed(&m);
    f.manifest = sign(&m, &key(3), "sign-1");
    assert!(matches!(
        verify_feed(&bytes(&f), &roots(), NOW),
        Err(Refusal::BadSignature(_))
    ));
    f.manifest = sign(&m, &key(3), "sign-other");
    assert_eq!(
        verify_feed(&bytes(&f), &roots(), NOW),
        Err(Refusal::UnknownKey("sign-other".into()))
    );
}

#[test]
fn a_statement_not_signed_by_a_built_in_root_is_refused() {
    let m = manifest("0.2.0", NOW);
    let mut f = feed(&m);
    // Signed by a key that calls itself the root.
    f.keys = vec![sign(
        &statement(&key(2), "sign-1", 30),
        &key(9),
        "root-test",
    )];
    assert!(matches!(
        verify_feed(&bytes(&f), &roots(), NOW),
        Err(Refusal::BadSignature(_))
    ));
    f.keys = vec![sign(
        &statement(&key(2), "sign-1", 30),
        &key(9),
        "root-evil",
    )];
    assert!(matches!(
        verify_feed(&bytes(&f), &roots(), NOW),
        Err(Refusal::BadSignature(_))
    ));
}

#[test]
fn an_expired_or_not_yet_valid_signing_key_is_refused() {
    let m = manifest("0.2.0", NOW);
    let f = feed(&m);
    let later = NOW + time::Duration::days(31);
    assert!(matches!(
        verify_feed(&bytes(&f), &roots(), later),
        Err(Refusal::SigningKeyExpired { .. })
    ));
    let earlier = NOW - time::Duration::days(2);
    assert!(matches!(
        verify_feed(&bytes(&f), &roots(), earlier),
        Err(Refusal::SigningKeyExpired { .. })
    ));
}

#[test]
fn a_revoked_signing_key_is_refused_and_a_forged_revocation_too() {
    let m = manifest("0.2.0", NOW);
    let mut f = feed(&m);
    let revocation = Revocation {
        id: "sign-1".into(),
        reason: "build machine compromised".into(),
    };
    f.revocations = vec![sign(&revocation, &key(1), "root-test")];
    assert_eq!(
        verify_feed(&bytes(&f), &roots(), NOW),
        Err(Refusal::SigningKeyRevoked {
            id: "sign-1".into(),
            reason: "build machine compromised".into()
        })
    );
    // A revocation not signed by the root: the feed was tampered with.
    f.revocations = vec![sign(&revocation, &key(2), "root-test")];
    assert!(matches!(
        verify_feed(&bytes(&f), &roots(), NOW),
        Err(Refusal::BadSignature(_))
    ));
}

#[test]
fn garbage_and_oversized_feeds_are_malformed() {
    for bad in [
        &b""[..],
        b"{}",
        b"not json",
        b"{\"keys\":[],\"manifest\":1}",
    ] {
        assert!(matches!(
            verify_feed(bad, &roots(), NOW),
            Err(Refusal::Malformed(_))
        ));
    }
    let huge = vec![b' '; MAX_FEED_BYTES + 1];
    assert!(matches!(
        verify_feed(&huge, &roots(), NOW),
        Err(Refusal::Malformed(_))
    ));
}

fn v(text: &str) -> Version {
    Version::parse(text).unwrap()
}

#[test]
fn the_decision_refuses_downgrades_freezes_and_unpinned_versions() {
    let m = manifest("0.2.0", NOW);
    let platform = "linux-deb-x86_64";
    match decide(&m, platform, &v("0.1.0"), None, None).unwrap() {
        Decision::Install {
            version, required, ..
        } => {
            assert_eq!(version, v("0.2.0"));
            assert!(required, "0.1.0 is below the minimum 0.1.5");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        decide(&m, platform, &v("0.2.0"), None, None),
        Ok(Decision::UpToDate)
    );
    assert!(matches!(
        decide(&m, platform, &v("0.3.0"), None, None),
        Err(Refusal::Downgrade { .. })
    ));
    // IT pins the lower version: the rollback is allowed.
    assert!(matches!(
        decide(&m, platform, &v("0.3.0"), Some(&v("0.2.0")), None),
        Ok(Decision::Install { .. })
    ));
    assert!(matches!(
        decide(&m, platform, &v("0.1.0"), Some(&v("0.1.9")), None),
        Err(Refusal::NotPinned { .. })
    ));
    // A manifest older than the last one accepted: a replay.
    assert!(matches!(
        decide(
            &m,
            platform,
            &v("0.1.0"),
            None,
            Some(NOW + time::Duration::hours(1))
        ),
        Err(Refusal::Stale { .. })
    ));
    assert!(decide(&m, platform, &v("0.1.0"), None, Some(NOW)).is_ok());
    assert_eq!(
        decide(&m, "windows-msi-x86_64", &v("0.1.0"), None, None),
        Err(Refusal::NoArtifact("windows-msi-x86_64".into()))
    );
}

#[test]
fn a_download_must_match_its_size_and_hash() {
    let m = manifest("0.2.0", NOW);
    let artifact = &m.artifacts["linux-deb-x86_64"];
    assert_eq!(check_artifact(b"package", artifact), Ok(()));
    assert!(matches!(
        check_artifact(b"package!", artifact),
        Err(Refusal::SizeMismatch { got: 8, want: 7 })
    ));
    assert!(matches!(
        check_artifact(b"pACKAGE", artifact),
        Err(Refusal::HashMismatch { .. })
    ));
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
        let _ = verify_feed(&data, &roots(), NOW);
    }
}
