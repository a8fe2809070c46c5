//! The updater against a real feed on 127.0.0.1 and the real `dpkg`: a
//! throwaway root signs; each bad feed or download is refused with its
//! reason and installs nothing; a good one is installed by `dpkg -i`; an
//! older manifest than one already accepted is refused; and after the
//! service restarts at the new version the status says "updated".
//!
//! The package is a small real `.deb` made with `dpkg-deb` (not Sallyport
//! itself: installing that here would replace the test's own binaries).
//! Needs root for dpkg (a missing prerequisite: a skip on a laptop, a
//! failure in CI or as root).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use service::updater::{Phase, Updater, UpdaterConfig};
use sha2::Digest as _;
use time::OffsetDateTime;
use update::{Artifact, Feed, KeyStatement, Manifest, Revocation, RootKey, SigningKey, sign};

const PACKAGE: &str = "sallyport-updater-test";

#[derive(Clone, Default)]
struct Served {
    feed: Arc<Mutex<Vec<u8>>>,
    package: Arc<Mutex<Vec<u8>>>,
}

async fn serve(served: Served) -> String {
    let app = Router::new()
        .route(
            "/feed.json",
            get(|State(s): State<Served>| async move { s.feed.lock().unwrap().clone() }),
        )
        .route(
            "/pkg/sallyport-updater-test_0.2.0_all.deb",
            get(|State(s): State<Served>| async move { s.package.lock().unwrap().clone() }),
        )
        .with_state(served);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A real .deb (`dpkg-deb --build`) that installs one marker file.
fn build_deb(dir: &Path, version: &str) -> Vec<u8> {
    let root = dir.join(format!("pkg-{version}"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share").join(PACKAGE)).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\nMaintainer: Sallyport tests <tests@example.invalid>\nDescription: updater test package\n"
        ),
    )
    .unwrap();
    std::fs::write(root.join("usr/share").join(PACKAGE).join("marker"), version).unwrap();
    let out = dir.join(format!("{PACKAGE}_{version}_all.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    std::fs::read(out).unwrap()
}

fn installed_version() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Version}", PACKAGE])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.strip_prefix("install ok installed ")
        .map(str::to_owned)
}

fn purge() {
    let _ = Command::new("dpkg").args(["-P", PACKAGE]).output();
}

struct Keys {
    root: SigningKey,
    signing: SigningKey,
}

impl Keys {
    fn roots(&self) -> Vec<RootKey> {
        vec![RootKey {
            id: "root-test",
            public_key: self.root.verifying_key().to_bytes(),
        }]
    }

    fn statement(&self, valid_days: i64) -> update::Signed {
        let now = OffsetDateTime::now_utc();
        let (not_before, not_after) = if valid_days >= 0 {
            (
                now - time::Duration::hours(1),
                now + time::Duration::days(valid_days),
            )
        } else {
            (
                now - time::Duration::days(30),
                now + time::Duration::days(valid_days),
            )
        };
        sign(
            &KeyStatement {
                id: "build-1".into(),
                public_key: update::public_key_text(&self.signing),
                not_before,
                not_after,
            },
            &self.root,
            "root-test",
        )
    }
}

fn manifest(base: &str, version: &str, package: &[u8], issued_at: OffsetDateTime) -> Manifest {
    let mut artifacts = BTreeMap::new();
    artifacts.insert(
        update::platform("deb"),
        Artifact {
            url: format!("{base}/pkg/sallyport-updater-test_0.2.0_all.deb"),
            sha256: update::hex(&sha2::Sha256::digest(package)),
            size: package.len() as u64,
        },
    );
    Manifest {
        version: version.into(),
        issued_at,
        minimum_version: None,
        artifacts,
    }
}

fn updater(dir: &Path, roots: Vec<RootKey>, running: &str, settings: &Path) -> Updater {
    Updater::new(UpdaterConfig {
        state_dir: dir.join("state"),
        roots,
        running: running.parse().unwrap(),
        platform: update::platform("deb"),
        settings_file: Some(settings.to_owned()),
    })
    .unwrap()
}

fn noon() -> jiff::civil::Time {
    jiff::civil::time(12, 0, 0, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_feeds_are_refused_and_a_good_one_is_installed_with_dpkg() {
    if !nix::unistd::geteuid().is_root() {
        support::prereq::missing("installing a package with dpkg needs root");
        return;
    }
    if !support::prereq::have("dpkg-deb") {
        support::prereq::missing("needs dpkg-deb to build the test package");
        return;
    }
    purge();
    let dir = tempfile::tempdir().unwrap();
    let package = build_deb(dir.path(), "0.2.0");
    let served = Served::default();
    *served.package.lock().unwrap() = package.clone();
    let base = serve(served.clone()).await;
    let settings = dir.path().join("managed.toml");
    let write_settings = |mode: &str| {
        std::fs::write(
            &settings,
            format!("[update]\nmode = \"{mode}\"\nfeed_url = \"{base}/feed.json\"\nwindow = \"11:00-13:00\"\n"),
        )
        .unwrap();
    };
    write_settings("auto");
    let keys = Keys {
        root: SigningKey::from_bytes(&[1; 32]),
        signing: SigningKey::from_bytes(&[2; 32]),
    };
    let now = OffsetDateTime::now_utc();
    let good = manifest(&base, "0.2.0", &package, now);
    let publish = |feed: &Feed| *served.feed.lock().unwrap() = serde_json::to_vec(feed).unwrap();
    let feed_with = |statement: update::Signed, manifest: &Manifest| Feed {
        keys: vec![statement],
        revocations: Vec::new(),
        manifest: sign(manifest, &keys.signing, "build-1"),
    };
    let u = updater(dir.path(), keys.roots(), "0.1.0", &settings);
    let refused = |phase: &Phase, words: &str| match phase {
        Phase::Refused { reason } => assert!(reason.contains(words), "{reason}"),
        other => panic!("expected a refusal naming {words:?}, got {other:?}"),
    };

    // 1. A tampered manifest.
    let mut feed = feed_with(keys.statement(30), &good);
    feed.manifest.payload = sign(
        &manifest(&base, "9.9.9", &package, now),
        &keys.signing,
        "build-1",
    )
    .payload;
    publish(&feed);
    refused(&u.check(now, noon()).await.phase, "bad signature");
    // 2. An expired signing key.
    publish(&feed_with(keys.statement(-1), &good));
    refused(&u.check(now, noon()).await.phase, "not valid now");
    // 3. A revoked signing key.
    let mut feed = feed_with(keys.statement(30), &good);
    feed.revocations = vec![sign(
        &Revocation {
            id: "build-1".into(),
            reason: "build machine compromised".into(),
        },
        &keys.root,
        "root-test",
    )];
    publish(&feed);
    refused(&u.check(now, noon()).await.phase, "revoked");
    // 4. A lower version than the running one.
    let old = manifest(&base, "0.0.9", &package, now);
    let downgrade = updater(dir.path(), keys.roots(), "0.1.0", &settings);
    publish(&feed_with(keys.statement(30), &old));
    refused(
        &downgrade.check(now, noon()).await.phase,
        "lower than the running",
    );
    // 5. The download differs from what was signed: same size, other bytes.
    publish(&feed_with(keys.statement(30), &good));
    let mut tampered = package.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xFF;
    *served.package.lock().unwrap() = tampered;
    refused(&u.check(now, noon()).await.phase, "SHA-256");
    // 6. And a different size.
    let mut longer = package.clone();
    longer.push(0);
    *served.package.lock().unwrap() = longer;
    refused(&u.check(now, noon()).await.phase, "bytes");
    assert_eq!(
        installed_version(),
        None,
        "a refused update installed something"
    );

    // Outside the install window, `auto` only says it is available.
    *served.package.lock().unwrap() = package.clone();
    let night = jiff::civil::time(3, 0, 0, 0);
    assert_eq!(
        u.check(now, night).await.phase,
        Phase::Available {
            version: "0.2.0".into(),
            required: false
        }
    );
    assert_eq!(installed_version(), None);

    // 7. The good one: installed by dpkg.
    let status = u.check(now, noon()).await;
    assert_eq!(
        status.phase,
        Phase::Installing {
            version: "0.2.0".into()
        },
        "{status:?}"
    );
    assert_eq!(installed_version().as_deref(), Some("0.2.0"));
    assert_eq!(
        std::fs::read_to_string(Path::new("/usr/share").join(PACKAGE).join("marker")).unwrap(),
        "0.2.0"
    );
    let download: PathBuf = dir
        .path()
        .join("state/updates/sallyport-updater-test_0.2.0_all.deb");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&download).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // 8. The service restarts at the new version: "updated".
    let restarted = updater(dir.path(), keys.roots(), "0.2.0", &settings);
    assert_eq!(
        restarted.status().phase,
        Phase::Updated {
            from: "0.1.0".into(),
            to: "0.2.0".into()
        }
    );
    // 9. A replayed older manifest (signed, valid, but issued before the
    // one accepted) is refused: a freeze attack.
    let replay = manifest(&base, "0.2.0", &package, now - time::Duration::hours(1));
    publish(&feed_with(keys.statement(30), &replay));
    refused(
        &restarted.check(now, noon()).await.phase,
        "before the last one accepted",
    );

    // `off`: nothing is fetched.
    write_settings("off");
    assert_eq!(restarted.check(now, noon()).await.phase, Phase::Off);

    // Every step is in the recent events, in order, across the restart:
    // what the agent's timeline records.
    let events: Vec<String> = restarted
        .status()
        .recent
        .iter()
        .map(|e| match &e.phase {
            Phase::Refused { reason } => format!("refused: {reason}"),
            other => format!("{other:?}"),
        })
        .collect();
    let expected = [
        "bad signature",
        "not valid now",
        "revoked",
        "lower than the running",
        "SHA-256",
        "bytes",
        "Available",
        "Installing",
        "Updated",
        "before the last one accepted",
        "Off",
    ];
    assert_eq!(events.len(), expected.len(), "{events:#?}");
    for (event, words) in events.iter().zip(expected) {
        assert!(event.contains(words), "{event} should name {words:?}");
    }
    purge();
}
