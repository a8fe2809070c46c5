//! Workspace binaries for tests that run them as a user would (`sallyport`,
//! `sallyportd`): built with cargo into the running test's target directory
//! when this test run has not built them (a `cargo test -p X` builds only
//! X's binaries), so a test never runs a stale one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Builds hold this: two builds into one target directory must not
/// interleave with the copies tests make of their results.
pub static BUILD: Mutex<()> = Mutex::new(());

/// `target/<profile>/<bin>` of `package`, built with `args` (features) first.
/// Callers that copy or swap variants hold [`BUILD`] across the build and
/// the copy.
pub fn build_locked(package: &str, bin: &str, args: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/<bin>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let binary = profile_dir.join(bin);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Always asked: a no-op when up to date, and never a stale binary.
    let status = Command::new(cargo)
        .current_dir(&workspace)
        .args(["build", "-p", package, "--bin", bin])
        .args(args)
        .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "building {bin} {args:?} failed");
    assert!(
        binary.exists(),
        "{} missing after the build",
        binary.display()
    );
    binary
}

/// The `sallyport` CLI.
pub fn sallyport() -> PathBuf {
    let _build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    build_locked("sallyport", "sallyport", &[])
}
