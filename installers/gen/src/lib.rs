//! The installers' settings templates, generated from the agent's one
//! settings schema (`agent::config::schema::KEYS`): the Group Policy ADMX
//! and its en-US ADML, the Windows Installer source (`.wxs`, one public
//! property per setting), the macOS `.mobileconfig`, the Linux
//! `managed.toml` example and the `docs/SETTINGS.md` reference.
//!
//! A package of its own (not a module of `agent`) because the product
//! binaries never need the generators; it links the agent only for the
//! schema, and its tests read the templates back with the agent's own
//! parsers. Every generator is pure (keys in, text out); `main.rs` is the
//! only code that writes files, and the drift test compares in memory.

pub mod admx;
pub mod managed_toml;
pub mod mobileconfig;
pub mod reference;
pub mod uuid5;
pub mod wxs;
mod xml;

use agent::config::schema::Key;

/// The command that rewrites the generated files (quoted in drift errors).
pub const REGENERATE: &str = "cargo run -p installers-gen";

/// One generated file: its path from the workspace root, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Relative to the workspace root, `/`-separated.
    pub path: &'static str,
    /// The whole file.
    pub contents: String,
}

/// Where the ADMX goes.
pub const ADMX_PATH: &str = "installers/windows/admx/Sallyport.admx";
/// Where the en-US ADML goes.
pub const ADML_PATH: &str = "installers/windows/admx/en-US/Sallyport.adml";
/// Where the configuration profile goes.
pub const MOBILECONFIG_PATH: &str = "installers/macos/com.sallyport.agent.mobileconfig";
/// Where the Linux example goes.
pub const MANAGED_TOML_PATH: &str = "installers/linux/managed.toml";
/// Where the Windows Installer source goes.
pub const WXS_PATH: &str = "installers/windows/sallyport.wxs";
/// Where the settings reference goes.
pub const REFERENCE_PATH: &str = "docs/SETTINGS.md";

/// Every generated file for `keys`.
pub fn all(keys: &[Key]) -> Vec<Generated> {
    vec![
        Generated {
            path: ADMX_PATH,
            contents: admx::admx(keys),
        },
        Generated {
            path: ADML_PATH,
            contents: admx::adml(keys),
        },
        Generated {
            path: MOBILECONFIG_PATH,
            contents: mobileconfig::mobileconfig(keys),
        },
        Generated {
            path: MANAGED_TOML_PATH,
            contents: managed_toml::managed_toml(keys),
        },
        Generated {
            path: WXS_PATH,
            contents: wxs::wxs(keys),
        },
        Generated {
            path: REFERENCE_PATH,
            contents: reference::settings_md(keys),
        },
    ]
}

/// A default in words, for comments and documentation.
pub(crate) fn describe_default(key: &Key) -> String {
    use agent::config::schema::Literal;
    match key.default {
        None => "unset".to_owned(),
        Some(Literal::Bool(b)) => b.to_string(),
        Some(Literal::Integer(n)) => n.to_string(),
        Some(Literal::String(s)) => format!("{s:?}"),
        Some(Literal::List([])) => "empty".to_owned(),
        Some(Literal::List(items)) => items.join(", "),
    }
}
