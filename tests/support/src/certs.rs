//! Test certificates made by the `openssl` CLI, as an operator would.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A self-signed P-256 server certificate for `subject_alt_name`
/// (`IP:127.0.0.1`, `DNS:localhost`), valid for a day: written to
/// `dir/cert.pem` and `dir/key.pem`, returned as (certificate, key). It is
/// an end entity, not a CA (webpki refuses a CA as an end entity), so a
/// client trusts it by listing it as its own root.
pub fn self_signed_server(dir: &Path, subject_alt_name: &str) -> (PathBuf, PathBuf) {
    self_signed_server_named(dir, subject_alt_name, "sallyport-test-server", 1)
}

/// [`self_signed_server`] with its subject's common name and its validity
/// in days chosen (a test that reads them back).
pub fn self_signed_server_named(
    dir: &Path,
    subject_alt_name: &str,
    common_name: &str,
    days: u32,
) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", &days.to_string()])
        .arg("-subj")
        .arg(format!("/CN={common_name}"))
        .arg("-addext")
        .arg(format!("subjectAltName={subject_alt_name}"))
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl CLI (Debian package `openssl`)");
    assert!(out.status.success(), "{out:?}");
    (cert, key)
}
