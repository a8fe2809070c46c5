//! `cargo run -p installers-gen`: rewrites the generated settings templates
//! (see the library) in the workspace, from `agent::config::schema::KEYS`.
//! `--check` only compares and fails on drift, writing nothing.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let check = std::env::args().skip(1).any(|a| a == "--check");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut stdout = std::io::stdout().lock();
    let mut stale = Vec::new();
    for file in installers_gen::all(agent::config::schema::KEYS) {
        let path = root.join(file.path);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(file.contents.as_str()) {
            writeln!(stdout, "unchanged {}", file.path)?;
            continue;
        }
        if check {
            stale.push(file.path);
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, &file.contents)
            .with_context(|| format!("writing {}", path.display()))?;
        writeln!(stdout, "wrote     {}", file.path)?;
    }
    if !stale.is_empty() {
        anyhow::bail!(
            "out of date: {}; run `{}`",
            stale.join(", "),
            installers_gen::REGENERATE
        );
    }
    Ok(())
}
