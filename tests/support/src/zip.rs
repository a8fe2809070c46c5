//! Reading a zip back with an independent reader (Python's `zipfile`),
//! for tests of the diagnostics bundle.

use std::path::Path;

/// Every file of the zip at `path`, as (name, text).
pub fn texts(path: &Path) -> Vec<(String, String)> {
    let script = "import json,sys,zipfile\n\
z=zipfile.ZipFile(sys.argv[1])\n\
print(json.dumps([[n, z.read(n).decode()] for n in z.namelist()]))\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script, &path.display().to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the zip's files as JSON")
}
