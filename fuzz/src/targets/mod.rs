//! The targets: one per parser (or family of parsers) that takes input from
//! the network, a file, a local socket or a command's output.

mod agent;
mod api;
mod jose;
mod posture;
mod tunnel;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use crate::Target;

/// Every target, in table order.
pub fn all() -> Vec<Target> {
    let mut targets = Vec::new();
    targets.extend(api::targets());
    targets.extend(jose::targets());
    targets.extend(agent::targets());
    targets.extend(tunnel::targets());
    targets.extend(posture::targets());
    targets
}

/// The workspace root (seeds are read from the source tree).
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Every regular file under `dir` (sorted, recursive); none when absent.
pub(crate) fn files_under(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_none_or(|e| e != "md") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// The ```json blocks of a Markdown file (API examples as seeds).
pub(crate) fn json_blocks(markdown: &Path) -> Vec<Vec<u8>> {
    let Ok(text) = std::fs::read_to_string(markdown) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("```json") {
        let body = &rest[start + 7..];
        let Some(end) = body.find("```") else { break };
        out.push(body[..end].trim().as_bytes().to_vec());
        rest = &body[end + 3..];
    }
    out
}

/// Input as text the way the callers decode it: lossy UTF-8.
pub(crate) fn text(input: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(input)
}

/// Byte strings from string literals.
pub(crate) fn tokens(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|s| s.as_bytes().to_vec()).collect()
}
