//! Missing prerequisites: a skip on a laptop, a failure in CI.
//!
//! A test that needs node, a keyring daemon, network namespaces or a TPM
//! simulator may skip on a developer's machine that lacks them, saying why.
//! Where the suite is meant to be complete it must fail instead, or a green
//! run would hide a missing install step: when `CI` is set, when
//! `SALLYPORT_REQUIRE_ALL` is set, or when running as root (scripts/test as
//! root installs every prerequisite).

/// True where every prerequisite must be present.
pub fn required() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
    set("CI") || set("SALLYPORT_REQUIRE_ALL") || is_root()
}

#[cfg(unix)]
fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

#[cfg(not(unix))]
fn is_root() -> bool {
    false
}

/// Reports a missing prerequisite: panics with `why` where prerequisites
/// are [`required`], else prints `SKIP: why` so the caller can return.
#[track_caller]
pub fn missing(why: &str) {
    if required() {
        panic!("prerequisite missing (CI, root or SALLYPORT_REQUIRE_ALL): {why}");
    }
    eprintln!("SKIP: {why}");
}

/// Whether `program` is on `PATH`.
pub fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
