//! The release tool end to end on a throwaway root: make the keys, vouch
//! for the signing key, sign a feed for a real file, and the service's
//! verification accepts it; then revoke the key and it refuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use base64::Engine as _;

fn release(args: &[&str], dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sallyport-release"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sallyport-release {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn keys_statements_and_feeds_made_by_the_tool_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let printed = release(&["keygen", "--out", "root.key"], d);
    release(&["keygen", "--out", "signing.key"], d);
    // A key file is never overwritten.
    let again = Command::new(env!("CARGO_BIN_EXE_sallyport-release"))
        .args(["keygen", "--out", "root.key"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!again.status.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("root.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let public = printed
        .lines()
        .next()
        .unwrap()
        .strip_prefix("public key ")
        .unwrap();
    let public: [u8; 32] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(public)
        .unwrap()
        .try_into()
        .unwrap();
    let roots = [update::RootKey {
        id: "root-ci",
        public_key: public,
    }];

    release(
        &[
            "delegate",
            "--root",
            "root.key",
            "--root-id",
            "root-ci",
            "--signing",
            "signing.key",
            "--signing-id",
            "build-1",
            "--days",
            "7",
            "--out",
            "statement.json",
        ],
        d,
    );
    std::fs::write(d.join("pkg.deb"), b"a package").unwrap();
    release(
        &[
            "sign",
            "--signing",
            "signing.key",
            "--signing-id",
            "build-1",
            "--statement",
            "statement.json",
            "--version",
            "0.2.0",
            "--artifact",
            "linux-deb-x86_64=pkg.deb=http://127.0.0.1:8080/pkg.deb",
            "--out",
            "feed.json",
        ],
        d,
    );
    let now = time::OffsetDateTime::now_utc();
    let feed = std::fs::read(d.join("feed.json")).unwrap();
    let verified = update::verify_feed(&feed, &roots, now).unwrap();
    assert_eq!(verified.manifest.version, "0.2.0");
    let artifact = &verified.manifest.artifacts["linux-deb-x86_64"];
    update::check_artifact(b"a package", artifact).unwrap();

    // Revoked: the same signing key's next feed is refused.
    release(
        &[
            "revoke",
            "--root",
            "root.key",
            "--root-id",
            "root-ci",
            "--id",
            "build-1",
            "--reason",
            "laptop lost",
            "--out",
            "revocation.json",
        ],
        d,
    );
    release(
        &[
            "sign",
            "--signing",
            "signing.key",
            "--signing-id",
            "build-1",
            "--statement",
            "statement.json",
            "--revocation",
            "revocation.json",
            "--version",
            "0.2.1",
            "--artifact",
            "linux-deb-x86_64=pkg.deb=http://127.0.0.1:8080/pkg.deb",
            "--out",
            "feed2.json",
        ],
        d,
    );
    let feed = std::fs::read(d.join("feed2.json")).unwrap();
    assert!(matches!(
        update::verify_feed(&feed, &roots, now),
        Err(update::Refusal::SigningKeyRevoked { .. })
    ));
}
