//! The Linux example `/etc/sallyport/managed.toml`: every Linux key,
//! commented out, with its description, allowed values and default.
//!
//! Description lines start with `# `; settings and section headers start
//! with `#` directly followed by the key or `[`, so "uncomment" is
//! mechanical (strip the `#` of lines matching `^#[a-z\[]`) and the test
//! does exactly that before parsing the result with the agent's parser.
//! A commented key shows its default, or an example when it has none.
//!
//! The same file is the deb/rpm packages' conffile
//! (`installers/build`), so the keys in [`PACKAGE_SETS`] are set, not
//! commented: a packaged machine runs `sallyportd`, and its agents must
//! take the device key from it.

use std::fmt::Write as _;

use agent::config::schema::{Key, Kind, Literal, Os};

/// A literal as TOML source.
pub fn toml_literal(literal: Literal) -> String {
    literal.to_toml().to_string()
}

/// Keys the Linux packages set (uncommented, to their example value): the
/// device service's socket, where the packaged `sallyportd` listens.
pub const PACKAGE_SETS: &[&str] = &["device_service_socket"];

/// The example file, and the packages' `/etc/sallyport/managed.toml`.
pub fn managed_toml(keys: &[Key]) -> String {
    let mut out = String::new();
    out.push_str(
        "# Sallyport managed settings for Linux: /etc/sallyport/managed.toml (root-owned, 0644).\n",
    );
    out.push_str("# Generated from settings/src/schema.rs by `cargo run -p installers-gen`; do not edit here.\n");
    out.push_str("#\n");
    out.push_str(
        "# Every key set here overrides the user's own setting (~/.config/sallyport/config.toml)\n",
    );
    out.push_str(
        "# and the agent reports it as locked. Uncomment what you manage (remove the `#` before the key and\n",
    );
    out.push_str(
        "# its [section] line). An unknown key or a wrong type stops the agent with an error\n",
    );
    out.push_str("# naming this file and the key. Reference: docs/SETTINGS.md.\n");
    out.push_str("#\n");
    out.push_str(
        "# The Linux packages install this file with the keys below that are not commented out\n",
    );
    out.push_str(
        "# (the device service's socket); keep them when you replace it. The agent's defaults hold\n",
    );
    out.push_str("# for every commented key.\n");
    let mut section = "";
    // The schema lists top-level keys first (its tests say so), as TOML
    // needs: a key after a `[section]` line belongs to that section.
    for key in keys
        .iter()
        .filter(|k| k.manageable && k.applies_to(Os::Linux))
    {
        if key.section() != section {
            section = key.section();
            let _ = write!(out, "\n#[{section}]\n");
        }
        out.push('\n');
        let _ = writeln!(out, "# {}", key.description);
        let mut facts = format!("Type: {}", key.kind.name());
        match key.kind {
            Kind::Integer { min, max } => {
                let _ = write!(facts, ", {min} to {max}");
            }
            Kind::Choice(items) => {
                let _ = write!(facts, ", one of {}", items.join(", "));
            }
            Kind::HttpsUrl => facts.push_str(", https (http only to loopback)"),
            _ => {}
        }
        let _ = write!(facts, ". Default: {}.", crate::describe_default(key));
        let _ = writeln!(out, "# {facts}");
        if PACKAGE_SETS.contains(&key.path) {
            let _ = writeln!(out, "# Set by the sallyport deb/rpm package.");
            let _ = writeln!(out, "{} = {}", key.leaf(), toml_literal(key.example));
            continue;
        }
        let shown = match key.default {
            Some(default) => toml_literal(default),
            None => toml_literal(key.example),
        };
        let _ = writeln!(out, "#{} = {shown}", key.leaf());
    }
    out
}

/// Uncomments every setting and section line (what an administrator does
/// to manage everything). Pure; used by the tests.
pub fn uncomment_all(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => line,
        })
        .fold(String::new(), |mut acc, line| {
            acc.push_str(line);
            acc.push('\n');
            acc
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommenting_touches_only_settings() {
        let text = "# A description.\n#key = 1\n#[identity]\n#  indented\n";
        assert_eq!(
            uncomment_all(text),
            "# A description.\nkey = 1\n[identity]\n#  indented\n"
        );
    }

    #[test]
    fn literals_are_toml() {
        assert_eq!(toml_literal(Literal::List(&["a", "b"])), "[\"a\", \"b\"]");
        assert_eq!(toml_literal(Literal::Integer(60)), "60");
    }
}
