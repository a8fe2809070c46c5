//! Plain-text rendering of `sallyport settings` (pure, so the wording is
//! tested without a machine configured by IT).

use std::fmt::Write as _;

use agent::config::view::{SettingsView, display_value};

/// The settings as an aligned table, headed by where IT's values came from.
pub fn render_settings(view: &SettingsView) -> String {
    let mut out = String::new();
    match &view.managed_source {
        Some(source) => {
            let _ = writeln!(
                out,
                "Managed by your organisation ({source}): locked settings cannot be changed here."
            );
        }
        None => {
            let _ = writeln!(out, "No managed configuration on this device.");
        }
    }
    let width = view.settings.iter().map(|r| r.key.len()).max().unwrap_or(0);
    let values: Vec<String> = view
        .settings
        .iter()
        .map(|r| display_value(r.value.as_ref()))
        .collect();
    let value_width = values.iter().map(|v| v.chars().count()).max().unwrap_or(0);
    for (row, value) in view.settings.iter().zip(&values) {
        let _ = writeln!(
            out,
            "  {:width$}  {:value_width$}  {}",
            row.key,
            value,
            row.set_by.label()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent::config::view::{SetBy, SettingRow};

    #[test]
    fn locked_rows_say_so_and_the_source_is_named() {
        let view = SettingsView {
            managed_source: Some(r"HKLM\SOFTWARE\Policies\Sallyport".to_owned()),
            settings: vec![
                SettingRow {
                    key: "broker_url",
                    title: "Access broker URL",
                    value: Some(serde_json::json!("https://broker.example.com")),
                    set_by: SetBy::Managed,
                    locked: true,
                },
                SettingRow {
                    key: "issuer",
                    title: "OpenID issuer",
                    value: None,
                    set_by: SetBy::Default,
                    locked: false,
                },
            ],
        };
        let text = render_settings(&view);
        assert!(text.starts_with(
            "Managed by your organisation (HKLM\\SOFTWARE\\Policies\\Sallyport): locked"
        ));
        assert!(text.contains("  broker_url  https://broker.example.com  managed (locked)\n"));
        assert!(text.contains("  issuer      (unset)                     default\n"));
    }
}
