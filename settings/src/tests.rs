use super::*;

const REG: &str = include_str!("../tests/fixtures/config/windows_reg_query.txt");
const PLIST: &str = include_str!("../tests/fixtures/config/macos_managed.json");

fn toml(name: &str, text: &str) -> Source {
    Source::from_toml(name, text).unwrap()
}

#[test]
fn managed_wins_leaf_by_leaf_and_is_locked() {
    let user = toml(
        "user.toml",
        "broker_url = \"https://user.example\"\nautostart = false\n[identity]\nmax_auth_age_secs = 600\nacr_values = [\"x\"]\n",
    );
    let managed = toml(
        "/etc/sallyport/managed.toml",
        "broker_url = \"https://broker.corp.example\"\n[identity]\nacr_values = [\"phr\"]\n",
    );
    let effective = merge(Some(&user), Some(&managed)).unwrap();
    let s = &effective.settings;
    assert_eq!(s.broker_url.as_deref(), Some("https://broker.corp.example"));
    assert_eq!(s.identity.acr_values, vec!["phr".to_owned()]);
    // Not managed: the user's values stand.
    assert_eq!(s.identity.max_auth_age_secs, Some(600));
    assert!(!s.autostart);
    assert_eq!(
        effective
            .locked
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        vec!["broker_url", "identity.acr_values"]
    );
    assert!(effective.is_locked("broker_url"));
    assert!(!effective.is_locked("autostart"));
}

#[test]
fn no_sources_gives_the_defaults() {
    let effective = merge(None, None).unwrap();
    assert_eq!(effective.settings, Settings::default());
    assert!(effective.locked.is_empty());
    assert_eq!(effective.managed_source, None);
}

#[test]
fn an_unknown_managed_key_is_blamed_on_its_source() {
    let managed = toml("/etc/sallyport/managed.toml", "autostrat = true\n");
    let err = merge(None, Some(&managed)).unwrap_err().to_string();
    assert!(err.contains("/etc/sallyport/managed.toml"), "{err}");
    assert!(err.contains("autostrat"), "{err}");
}

#[test]
fn wrong_types_and_weak_values_are_refused() {
    let bad_type = toml("user.toml", "posture_interval_secs = \"often\"\n");
    assert!(matches!(
        merge(Some(&bad_type), None),
        Err(ConfigError::Invalid { .. })
    ));
    let too_fast = toml("user.toml", "posture_interval_secs = 1\n");
    assert!(
        merge(Some(&too_fast), None)
            .unwrap_err()
            .to_string()
            .contains("at least 10")
    );
    let plain_http = toml("user.toml", "broker_url = \"http://broker.example\"\n");
    assert!(
        merge(Some(&plain_http), None)
            .unwrap_err()
            .to_string()
            .contains("https")
    );
    let loopback = toml("user.toml", "broker_url = \"http://127.0.0.1:8080\"\n");
    assert!(merge(Some(&loopback), None).is_ok());
    // A host that only starts like loopback is another host.
    let lookalike = toml(
        "user.toml",
        "broker_url = \"http://127.0.0.1.evil.example\"\n",
    );
    assert!(merge(Some(&lookalike), None).is_err());
}

#[test]
fn malformed_toml_names_line_and_column() {
    let err = Source::from_toml("user.toml", "broker_url = \n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("user.toml"), "{err}");
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn files_are_read_for_real_and_a_missing_one_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("managed.toml");
    assert_eq!(read_toml_file(&path).unwrap(), None);
    std::fs::write(&path, "autostart = false\n").unwrap();
    let source = read_toml_file(&path).unwrap().unwrap();
    assert_eq!(source.table.get("autostart"), Some(&Value::Boolean(false)));
}

#[test]
fn windows_policy_key_becomes_settings() {
    let managed = Source {
        name: registry::POLICY_KEY.to_owned(),
        table: registry::parse_reg_query(REG).unwrap(),
    };
    let effective = merge(None, Some(&managed)).unwrap();
    let s = effective.settings;
    assert_eq!(s.broker_url.as_deref(), Some("https://broker.corp.example"));
    assert!(s.autostart);
    assert_eq!(s.posture_interval_secs, 30);
    assert_eq!(
        s.identity.acr_values,
        vec!["phr".to_owned(), "phrh".to_owned()]
    );
    assert_eq!(s.identity.max_auth_age_secs, Some(3600));
    assert!(effective.locked.contains("identity.max_auth_age_secs"));
}

/// What `installers/windows/sallyport.wxs` leaves after
/// `msiexec /i … BROKER_URL=… AUTO_CONNECT=wiki,mail POSTURE_INTERVAL_SECS=120
/// AUTOSTART=0`: every value a `REG_SZ`, the unset ones empty.
const REG_FROM_MSI: &str = "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Sallyport\r\n    broker_url    REG_SZ    https://broker.corp.example\r\n    issuer    REG_SZ    \r\n    posture_interval_secs    REG_SZ    120\r\n    autostart    REG_SZ    0\r\n\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Sallyport\\apps\r\n    auto_connect    REG_SZ    wiki, mail\r\n\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Sallyport\\identity\r\n    max_auth_age_secs    REG_SZ\r\n";

#[test]
fn msi_text_values_are_read_by_the_schema_type_and_empty_is_unset() {
    let managed = Source {
        name: registry::POLICY_KEY.to_owned(),
        table: registry::parse_reg_query(REG_FROM_MSI).unwrap(),
    };
    let effective = merge(None, Some(&managed)).unwrap();
    let s = &effective.settings;
    assert_eq!(s.broker_url.as_deref(), Some("https://broker.corp.example"));
    assert_eq!(s.posture_interval_secs, 120);
    assert!(!s.autostart);
    assert_eq!(
        s.apps.auto_connect,
        vec!["wiki".to_owned(), "mail".to_owned()]
    );
    assert!(s.issuer.is_none());
    let locked: Vec<&str> = effective.locked.iter().map(String::as_str).collect();
    assert_eq!(
        locked,
        [
            "apps.auto_connect",
            "autostart",
            "broker_url",
            "posture_interval_secs"
        ],
        "empty values are not set, so not locked"
    );
    let not_a_number = "HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Sallyport\r\n    posture_interval_secs    REG_SZ    soon\r\n";
    let err = registry::parse_reg_query(not_a_number)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("posture_interval_secs") && err.contains("whole number"),
        "{err}"
    );
    let not_a_bool =
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Sallyport\r\n    autostart    REG_SZ    yes\r\n";
    assert!(registry::parse_reg_query(not_a_bool).is_err());
}

#[test]
fn registry_garbage_and_odd_types_are_errors() {
    assert!(registry::parse_reg_query("ERROR: Access is denied.\r\n").is_err());
    let binary =
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Sallyport\r\n    blob    REG_BINARY    00ff\r\n";
    let err = registry::parse_reg_query(binary).unwrap_err().to_string();
    assert!(err.contains("REG_BINARY"), "{err}");
    let bad_dword = "HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Sallyport\r\n    posture_interval_secs    REG_DWORD    0xzz\r\n";
    assert!(registry::parse_reg_query(bad_dword).is_err());
    // An empty key (policy present, nothing set) is an empty table.
    let empty = "HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Sallyport\r\n\r\n";
    assert!(registry::parse_reg_query(empty).unwrap().is_empty());
}

#[test]
fn macos_managed_preferences_become_settings() {
    let managed = Source {
        name: plist::MANAGED_PLIST.to_owned(),
        table: plist::parse_plist_json(PLIST).unwrap(),
    };
    let effective = merge(None, Some(&managed)).unwrap();
    let s = effective.settings;
    assert!(!s.autostart);
    assert_eq!(s.identity.acr_values, vec!["phr".to_owned()]);
    assert_eq!(s.apps.auto_connect, vec!["wiki".to_owned()]);
    assert!(effective.locked.contains("apps.auto_connect"));
    assert!(!effective.locked.iter().any(|k| k.starts_with("Payload")));
}

#[test]
fn plist_garbage_is_an_error() {
    assert!(plist::parse_plist_json("<plist>").is_err());
    assert!(plist::parse_plist_json("[1, 2]").is_err());
    assert!(plist::parse_plist_json("{\"broker_url\": null}").is_err());
}

/// Flattens a table to dotted paths, as the schema names keys.
fn flatten(table: &Table, prefix: &str, out: &mut std::collections::BTreeMap<String, Value>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Table(inner) => flatten(inner, &path, out),
            leaf => {
                out.insert(path, leaf.clone());
            }
        }
    }
}

fn settings_as_flat(settings: &Settings) -> std::collections::BTreeMap<String, Value> {
    let table = Table::try_from(settings).unwrap();
    let mut flat = std::collections::BTreeMap::new();
    flatten(&table, "", &mut flat);
    flat
}

#[test]
fn the_schema_and_the_settings_struct_agree() {
    // The defaults: what the struct says is what the schema says.
    let defaults = settings_as_flat(&Settings::default());
    let from_schema: std::collections::BTreeMap<String, Value> = schema::KEYS
        .iter()
        .filter_map(|k| k.default.map(|d| (k.path.to_owned(), d.to_toml())))
        .collect();
    assert_eq!(defaults, from_schema);
    // Every key's example goes through the parser into the struct and back
    // out unchanged: no schema key is missing from the struct.
    let all = nest(
        schema::KEYS
            .iter()
            .map(|k| (k.path.to_owned(), k.example.to_toml())),
    );
    let source = Source {
        name: "examples".to_owned(),
        table: all,
    };
    let effective = merge(None, Some(&source)).unwrap();
    let examples: std::collections::BTreeMap<String, Value> = schema::KEYS
        .iter()
        .map(|k| (k.path.to_owned(), k.example.to_toml()))
        .collect();
    assert_eq!(settings_as_flat(&effective.settings), examples);
    let every_key: BTreeSet<String> = schema::KEYS.iter().map(|k| k.path.to_owned()).collect();
    assert_eq!(effective.locked, every_key);
}

#[test]
fn a_managed_profile_bookkeeping_key_is_not_a_setting() {
    let table = plist::parse_plist_json(
        r#"{"PayloadType": "com.sallyport.agent", "PayloadVersion": 1, "PayloadDisplayName": "x", "autostart": false}"#,
    )
    .unwrap();
    assert_eq!(table.len(), 1);
}
