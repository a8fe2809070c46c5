//! The settings schema: every key the agent understands, with its type,
//! default, allowed values, description, the OSes it applies to and whether
//! IT may manage it.
//!
//! This table is the single source of truth. The parser ([`check_table`])
//! uses it to reject unknown keys and wrong types before serde fills
//! [`super::Settings`]; the Windows registry reader uses it to know which
//! DWORDs are booleans; and the installers' templates (ADMX/ADML,
//! `.mobileconfig`, the Linux `managed.toml` example, `docs/SETTINGS.md`)
//! are generated from it by the `installers-gen` package, so a key added
//! here reaches every template with one `cargo run -p installers-gen`.
//! A unit test keeps this table and the `Settings` struct in step.

use toml::{Table, Value};

/// An operating system a key applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Os {
    /// Linux (managed file `/etc/sallyport/managed.toml`).
    Linux,
    /// macOS (managed preferences of `com.sallyport.agent`).
    MacOs,
    /// Windows (policy key `HKLM\SOFTWARE\Policies\Sallyport`).
    Windows,
}

impl Os {
    /// The OS this build runs on (Linux for any other Unix: its managed
    /// source is the same file).
    pub const fn current() -> Os {
        if cfg!(target_os = "windows") {
            Os::Windows
        } else if cfg!(target_os = "macos") {
            Os::MacOs
        } else {
            Os::Linux
        }
    }

    /// The name used in documentation.
    pub fn name(self) -> &'static str {
        match self {
            Os::Linux => "Linux",
            Os::MacOs => "macOS",
            Os::Windows => "Windows",
        }
    }
}

/// Every OS: the common case.
pub const ALL_OSES: &[Os] = &[Os::Linux, Os::MacOs, Os::Windows];

/// What values a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `true` or `false` (a DWORD 0/1 in the registry).
    Bool,
    /// A whole number in `min..=max`. Bounded by `u32` because Group Policy
    /// stores numbers as `REG_DWORD`.
    Integer {
        /// The smallest allowed value.
        min: u32,
        /// The largest allowed value.
        max: u32,
    },
    /// Free text.
    String,
    /// A URL that must use https (http only to a loopback address).
    HttpsUrl,
    /// A list of strings (`REG_MULTI_SZ` in the registry).
    StringList,
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
}

impl Kind {
    /// A short name for documentation and error messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bool => "boolean",
            Kind::Integer { .. } => "integer",
            Kind::String => "string",
            Kind::HttpsUrl => "URL",
            Kind::StringList => "list of strings",
            Kind::Choice(_) => "string (one of a set)",
        }
    }

    /// Checks one value; the error says what is wrong, for a user to fix.
    pub fn check(self, path: &str, value: &Value) -> Result<(), String> {
        let wrong_type = || {
            format!(
                "`{path}` must be a {}, not {} {}",
                self.name(),
                article(value.type_str()),
                value.type_str()
            )
        };
        match (self, value) {
            (Kind::Bool, Value::Boolean(_)) => Ok(()),
            (Kind::Integer { min, max }, Value::Integer(n)) => {
                if *n < i64::from(min) {
                    Err(format!("`{path}` must be at least {min} (got {n})"))
                } else if *n > i64::from(max) {
                    Err(format!("`{path}` must be at most {max} (got {n})"))
                } else {
                    Ok(())
                }
            }
            (Kind::String, Value::String(_)) => Ok(()),
            (Kind::HttpsUrl, Value::String(url)) => {
                if broker::api::https_or_loopback(url) {
                    Ok(())
                } else {
                    Err(format!(
                        "`{path}` {url:?} must use https (http only to loopback)"
                    ))
                }
            }
            (Kind::StringList, Value::Array(items)) => {
                if items.iter().all(Value::is_str) {
                    Ok(())
                } else {
                    Err(format!("`{path}` must be a list of strings"))
                }
            }
            (Kind::Choice(allowed), Value::String(s)) => {
                if allowed.contains(&s.as_str()) {
                    Ok(())
                } else {
                    Err(format!(
                        "`{path}` must be one of {} (got {s:?})",
                        allowed.join(", ")
                    ))
                }
            }
            _ => Err(wrong_type()),
        }
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// A value written in the schema (a default or an example).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Literal {
    /// A boolean.
    Bool(bool),
    /// A whole number.
    Integer(u32),
    /// A string.
    String(&'static str),
    /// A list of strings.
    List(&'static [&'static str]),
}

impl Literal {
    /// The TOML value, as the parser sees it.
    pub fn to_toml(self) -> Value {
        match self {
            Literal::Bool(b) => Value::Boolean(b),
            Literal::Integer(n) => Value::Integer(i64::from(n)),
            Literal::String(s) => Value::String(s.to_owned()),
            Literal::List(items) => Value::Array(
                items
                    .iter()
                    .map(|s| Value::String((*s).to_owned()))
                    .collect(),
            ),
        }
    }
}

/// One setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The dotted path (`identity.acr_values`): the TOML key, the plist key
    /// (or nested dictionaries), the registry subkey and value name.
    pub path: &'static str,
    /// A short human title (the Group Policy editor's policy name).
    pub title: &'static str,
    /// What it does, for IT: one or two sentences.
    pub description: &'static str,
    /// Its type and allowed values.
    pub kind: Kind,
    /// The value when no source sets it; `None`: unset (and what that means
    /// is in the description).
    pub default: Option<Literal>,
    /// A realistic value for examples and tests.
    pub example: Literal,
    /// Where the key means something; templates for other OSes leave it out.
    pub oses: &'static [Os],
    /// Whether the managed source (MDM, GPO, /etc) may set it.
    pub manageable: bool,
}

impl Key {
    /// The section (`identity`) or `""` for a top-level key.
    pub fn section(&self) -> &'static str {
        self.path
            .rsplit_once('.')
            .map_or("", |(section, _)| section)
    }

    /// The last path component (`acr_values`).
    pub fn leaf(&self) -> &'static str {
        self.path
            .rsplit_once('.')
            .map_or(self.path, |(_, leaf)| leaf)
    }

    /// Whether the key applies to `os`.
    pub fn applies_to(&self, os: Os) -> bool {
        self.oses.contains(&os)
    }
}

/// Every setting, top-level keys first, then by section.
pub const KEYS: &[Key] = &[
    Key {
        path: "broker_url",
        title: "Access broker URL",
        description: "The access broker's base URL. Required to run the agent (unless given with \
                      `sallyport run --broker`).",
        kind: Kind::HttpsUrl,
        default: None,
        example: Literal::String("https://broker.example.com"),
        oses: ALL_OSES,
        manageable: true,
    },
    Key {
        path: "issuer",
        title: "OpenID issuer",
        description: "The OpenID Connect issuer users sign in with. When unset, the broker's \
                      `/v1/config` names it.",
        kind: Kind::String,
        default: None,
        example: Literal::String("https://login.example.com"),
        oses: ALL_OSES,
        manageable: true,
    },
    Key {
        path: "client_id",
        title: "OIDC client id",
        description: "The OAuth client id registered for Sallyport at the issuer. When unset, the \
                      broker's `/v1/config` names it.",
        kind: Kind::String,
        default: None,
        example: Literal::String("sallyport-desktop"),
        oses: ALL_OSES,
        manageable: true,
    },
    Key {
        path: "posture_interval_secs",
        title: "Posture check interval (seconds)",
        description: "How often the device's posture is measured and attested, in seconds. \
                      Events (wake, network change) trigger extra checks.",
        kind: Kind::Integer {
            min: 10,
            max: 86_400,
        },
        default: Some(Literal::Integer(60)),
        example: Literal::Integer(30),
        oses: ALL_OSES,
        manageable: true,
    },
    Key {
        path: "autostart",
        title: "Start the tray app at login",
        description: "Start the Sallyport tray app when the user logs in.",
        kind: Kind::Bool,
        default: Some(Literal::Bool(true)),
        example: Literal::Bool(false),
        oses: ALL_OSES,
        manageable: true,
    },
    Key {
        path: "device_service_socket",
        title: "Device service socket",
        description: "Where the device service (`sallyportd`) listens, e.g. \
                      `/run/sallyport/sallyportd.sock`. When set, the device key, the posture \
                      attestations and the DPoP proofs come from the service and the signed-in \
                      user holds no key. Unset: a key in the user's keyring (no device service). \
                      The Linux packages set it in `/etc/sallyport/managed.toml`. \
                      The environment variable `SALLYPORT_SERVICE_SOCKET` overrides it.",
        kind: Kind::String,
        default: None,
        example: Literal::String("/run/sallyport/sallyportd.sock"),
        oses: ALL_OSES,
        manageable: true,
    },
    Key {
        path: "identity.acr_values",
        title: "Requested authentication context (acr_values)",
        description: "The `acr_values` requested from the issuer at sign-in (e.g. a phishing-\
                      resistant MFA level). Empty: none requested.",
        kind: Kind::StringList,
        default: Some(Literal::List(&[])),
        example: Literal::List(&["phr", "phrh"]),
        oses: ALL_OSES,
        manageable: true,
    },
    Key {
        path: "identity.mfa_amr",
        title: "Accepted second factors (amr)",
        description: "The `amr` values (RFC 8176) that count as a second factor. Empty: the \
                      built-in set (mfa, otp, hwk, swk, sc, fpt, face). Applied by the agent \
                      (`sallyport run`, the tray app) at every sign-in it runs.",
        kind: Kind::StringList,
        default: Some(Literal::List(&[])),
        example: Literal::List(&["hwk", "sc"]),
        oses: ALL_OSES,
        manageable: true,
    },
    Key {
        path: "identity.max_auth_age_secs",
        title: "Maximum sign-in age (seconds)",
        description: "The oldest accepted MFA sign-in, in seconds; older sessions must sign in \
                      again. Also sent to the issuer as `max_age`.",
        kind: Kind::Integer {
            min: 60,
            max: 31_536_000,
        },
        default: Some(Literal::Integer(12 * 3600)),
        example: Literal::Integer(3600),
        oses: ALL_OSES,
        manageable: true,
    },
    Key {
        path: "apps.auto_connect",
        title: "Applications connected at sign-in",
        description: "Application ids (see `sallyport apps`) whose tunnels are opened \
                      automatically after sign-in.",
        kind: Kind::StringList,
        default: Some(Literal::List(&[])),
        example: Literal::List(&["wiki"]),
        oses: ALL_OSES,
        manageable: true,
    },
    Key {
        path: "tunnels.socks_auth",
        title: "Password-protect each application's SOCKS5 proxy",
        description: "Require a per-tunnel username and password on each application's SOCKS5 \
                      proxy (RFC 1929). The agent generates a fresh pair for every tunnel and \
                      shows it only to the signed-in user (`sallyport status`, the tray app); \
                      clients that offer no authentication are refused. Off: any process of \
                      the user may use the proxy.",
        kind: Kind::Bool,
        default: Some(Literal::Bool(false)),
        example: Literal::Bool(true),
        oses: ALL_OSES,
        manageable: true,
    },
    Key {
        path: "update.mode",
        title: "Updates",
        description: "What the device service does with a signed update from `update.feed_url`:                       `off` (never checks), `notify` (checks and tells the user), `auto`                       (installs it with the platform's installer, within `update.window`).                       A feed whose signatures, dates or version do not check out is refused                       and logged.",
        kind: Kind::Choice(&["off", "notify", "auto"]),
        default: Some(Literal::String("notify")),
        example: Literal::String("auto"),
        oses: ALL_OSES,
        manageable: true,
    },
    Key {
        path: "update.feed_url",
        title: "Update feed URL",
        description: "Where the signed update manifest is published (HTTPS). Unset: no update                       checks.",
        kind: Kind::HttpsUrl,
        default: None,
        example: Literal::String("https://updates.example.com/sallyport/feed.json"),
        oses: ALL_OSES,
        manageable: true,
    },
    Key {
        path: "update.pin",
        title: "Pinned version",
        description: "Install exactly this version (SemVer) and no other, even a lower one than                       the running version: the only way to roll back. Unset: the newest signed                       version, never lower than the running one.",
        kind: Kind::String,
        default: None,
        example: Literal::String("0.1.0"),
        oses: ALL_OSES,
        manageable: true,
    },
    Key {
        path: "update.window",
        title: "Automatic install hours",
        description: "Local hours when `auto` may install, `HH:MM-HH:MM` (e.g. `02:00-05:00`;                       may wrap past midnight). Unset: any time.",
        kind: Kind::String,
        default: None,
        example: Literal::String("02:00-05:00"),
        oses: ALL_OSES,
        manageable: true,
    },
];

/// The key at `path` in `keys`.
pub fn find<'k>(keys: &'k [Key], path: &str) -> Option<&'k Key> {
    keys.iter().find(|k| k.path == path)
}

/// The key at `path` in [`KEYS`].
pub fn key(path: &str) -> Option<&'static Key> {
    find(KEYS, path)
}

/// Who set a table: the managed source may only set manageable keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The user's own file (or the merged result).
    User,
    /// IT's managed source.
    Managed,
}

/// Checks every key of `table` against `keys`: known, of the right type,
/// in range, and (for the managed source) manageable. Pure; the error is the
/// detail of a [`super::ConfigError::Invalid`].
pub fn check_table(keys: &[Key], table: &Table, origin: Origin) -> Result<(), String> {
    check_level(keys, table, "", origin)
}

fn check_level(keys: &[Key], table: &Table, prefix: &str, origin: Origin) -> Result<(), String> {
    for (name, value) in table {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if let Some(key) = find(keys, &path) {
            key.kind.check(&path, value)?;
            if origin == Origin::Managed && !key.manageable {
                return Err(format!(
                    "`{path}` is a user setting; the managed configuration cannot set it"
                ));
            }
            continue;
        }
        let is_section = keys.iter().any(|k| k.section() == path);
        match value {
            Value::Table(inner) if is_section => check_level(keys, inner, &path, origin)?,
            _ if is_section => return Err(format!("`{path}` must be a table of settings")),
            _ => return Err(format!("unknown key `{path}`")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        text.parse().unwrap()
    }

    #[test]
    fn paths_are_unique_sections_come_after_top_level_keys() {
        let mut seen = std::collections::BTreeSet::new();
        let mut in_sections = false;
        for key in KEYS {
            assert!(seen.insert(key.path), "{} twice", key.path);
            assert!(
                key.path.split('.').count() <= 2,
                "{}: one level of sections",
                key.path
            );
            in_sections |= !key.section().is_empty();
            assert!(
                !in_sections || !key.section().is_empty(),
                "{} after a section",
                key.path
            );
            assert!(!key.oses.is_empty(), "{} applies nowhere", key.path);
            // The macOS reader skips profile bookkeeping keys by this prefix.
            assert!(!key.path.starts_with("Payload"), "{}", key.path);
        }
    }

    #[test]
    fn defaults_and_examples_are_valid_values_of_their_kind() {
        for key in KEYS {
            if let Some(default) = key.default {
                key.kind.check(key.path, &default.to_toml()).unwrap();
            }
            key.kind.check(key.path, &key.example.to_toml()).unwrap();
        }
    }

    #[test]
    fn unknown_keys_wrong_types_and_ranges_are_named() {
        let err = check_table(KEYS, &table("[identity]\nacr_valeus = []\n"), Origin::User);
        assert_eq!(err.unwrap_err(), "unknown key `identity.acr_valeus`");
        let err = check_table(KEYS, &table("identity = 3\n"), Origin::User);
        assert_eq!(err.unwrap_err(), "`identity` must be a table of settings");
        let err = check_table(KEYS, &table("autostart = \"yes\"\n"), Origin::User);
        assert_eq!(
            err.unwrap_err(),
            "`autostart` must be a boolean, not a string"
        );
        let err = check_table(
            KEYS,
            &table("posture_interval_secs = 100000\n"),
            Origin::User,
        );
        assert_eq!(
            err.unwrap_err(),
            "`posture_interval_secs` must be at most 86400 (got 100000)"
        );
        let err = check_table(KEYS, &table("apps.auto_connect = [1]\n"), Origin::User);
        assert_eq!(
            err.unwrap_err(),
            "`apps.auto_connect` must be a list of strings"
        );
    }

    #[test]
    fn choices_and_unmanageable_keys() {
        const TEST_KEYS: &[Key] = &[Key {
            path: "ui.theme",
            title: "Theme",
            description: "The window's theme.",
            kind: Kind::Choice(&["light", "dark"]),
            default: Some(Literal::String("light")),
            example: Literal::String("dark"),
            oses: ALL_OSES,
            manageable: false,
        }];
        let dark = table("[ui]\ntheme = \"dark\"\n");
        assert_eq!(check_table(TEST_KEYS, &dark, Origin::User), Ok(()));
        let err = check_table(TEST_KEYS, &dark, Origin::Managed).unwrap_err();
        assert!(err.contains("cannot set"), "{err}");
        let err = check_table(TEST_KEYS, &table("ui.theme = \"pink\"\n"), Origin::User);
        assert_eq!(
            err.unwrap_err(),
            "`ui.theme` must be one of light, dark (got \"pink\")"
        );
    }
}
