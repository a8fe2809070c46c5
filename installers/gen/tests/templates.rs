//! The generated templates: committed copies match the schema, and each one
//! is read back with an independent parser (roxmltree, plist) and then with
//! the agent's own parser for that OS's managed source.

// Test helpers outside `#[test]` functions: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use agent::config::schema::{KEYS, Key, Kind, Literal};
use agent::config::{Source, merge, plist as agent_plist, registry};
use installers_gen::{admx, managed_toml, mobileconfig};
use toml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn committed_templates_match_the_schema() {
    let mut stale = Vec::new();
    for file in installers_gen::all(KEYS) {
        let on_disk = std::fs::read_to_string(root().join(file.path)).unwrap_or_default();
        if on_disk != file.contents {
            stale.push(file.path);
        }
    }
    assert!(
        stale.is_empty(),
        "generated files are out of date with settings/src/schema.rs: {}; run `{}` and commit the result",
        stale.join(", "),
        installers_gen::REGENERATE
    );
}

/// A flattened view of the effective settings, keyed by dotted path.
fn flat_settings(settings: &agent::config::Settings) -> BTreeMap<String, Value> {
    fn walk(table: &toml::Table, prefix: &str, out: &mut BTreeMap<String, Value>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Table(inner) => walk(inner, &path, out),
                leaf => {
                    out.insert(path, leaf.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&toml::Table::try_from(settings).unwrap(), "", &mut out);
    out
}

// ---------------------------------------------------------------- ADMX/ADML

const PD: &str = admx::NAMESPACE;

fn admx_doc_text() -> String {
    admx::admx(KEYS)
}

fn adml_doc_text() -> String {
    admx::adml(KEYS)
}

#[test]
fn admx_and_adml_are_policy_definitions_and_every_reference_resolves() {
    let admx_text = admx_doc_text();
    let adml_text = adml_doc_text();
    let admx = roxmltree::Document::parse(&admx_text).unwrap();
    let adml = roxmltree::Document::parse(&adml_text).unwrap();
    assert_eq!(admx.root_element().tag_name().name(), "policyDefinitions");
    assert_eq!(admx.root_element().tag_name().namespace(), Some(PD));
    assert_eq!(
        adml.root_element().tag_name().name(),
        "policyDefinitionResources"
    );
    assert_eq!(adml.root_element().tag_name().namespace(), Some(PD));
    // Every element of both documents is in the namespace.
    for doc in [&admx, &adml] {
        for node in doc.descendants().filter(|n| n.is_element()) {
            assert_eq!(node.tag_name().namespace(), Some(PD), "{:?}", node);
        }
    }
    let strings: Vec<&str> = adml
        .descendants()
        .filter(|n| n.has_tag_name((PD, "string")))
        .filter_map(|n| n.attribute("id"))
        .collect();
    let presentations: Vec<&str> = adml
        .descendants()
        .filter(|n| n.has_tag_name((PD, "presentation")))
        .filter_map(|n| n.attribute("id"))
        .collect();
    let mut references = 0;
    for node in admx.descendants().filter(|n| n.is_element()) {
        for attribute in node.attributes() {
            let value = attribute.value();
            if let Some(id) = value
                .strip_prefix("$(string.")
                .and_then(|s| s.strip_suffix(')'))
            {
                assert!(strings.contains(&id), "ADML has no string {id}");
                references += 1;
            }
            if let Some(id) = value
                .strip_prefix("$(presentation.")
                .and_then(|s| s.strip_suffix(')'))
            {
                let presentation = adml
                    .descendants()
                    .find(|n| n.has_tag_name((PD, "presentation")) && n.attribute("id") == Some(id))
                    .unwrap_or_else(|| panic!("ADML has no presentation {id}"));
                // Each box refers to an element of this policy.
                for control in presentation.children().filter(|n| n.is_element()) {
                    let ref_id = control.attribute("refId").unwrap();
                    assert!(
                        node.descendants()
                            .any(|e| e.attribute("id") == Some(ref_id)),
                        "{id}: no element {ref_id}"
                    );
                }
                assert!(presentations.contains(&id));
            }
        }
    }
    let policies: Vec<_> = admx
        .descendants()
        .filter(|n| n.has_tag_name((PD, "policy")))
        .collect();
    assert_eq!(policies.len(), KEYS.len());
    assert!(references >= 2 * KEYS.len());
    for policy in policies {
        assert_eq!(policy.attribute("class"), Some("Machine"));
        let category = policy
            .children()
            .find(|n| n.has_tag_name((PD, "parentCategory")))
            .and_then(|n| n.attribute("ref"));
        assert_eq!(category, Some("Sallyport"));
    }
}

/// What the ADMX says a policy writes: registry key, value name, type.
#[derive(Debug)]
struct Written {
    key: String,
    value_name: String,
    reg_type: &'static str,
}

fn written_by(admx_text: &str, key: &Key) -> Written {
    let doc = roxmltree::Document::parse(admx_text).unwrap();
    let name = admx::policy_name(key);
    let policy = doc
        .descendants()
        .find(|n| n.has_tag_name((PD, "policy")) && n.attribute("name") == Some(name.as_str()))
        .unwrap_or_else(|| panic!("no policy {name}"));
    let reg_key = policy.attribute("key").unwrap().to_owned();
    if let Some(value_name) = policy.attribute("valueName") {
        let enabled = policy
            .children()
            .find(|n| n.has_tag_name((PD, "enabledValue")))
            .and_then(|n| n.first_element_child())
            .unwrap();
        assert_eq!(enabled.tag_name().name(), "decimal");
        return Written {
            key: reg_key,
            value_name: value_name.to_owned(),
            reg_type: "REG_DWORD",
        };
    }
    let elements = policy
        .children()
        .find(|n| n.has_tag_name((PD, "elements")))
        .unwrap();
    let element = elements.first_element_child().unwrap();
    let reg_type = match element.tag_name().name() {
        "text" | "enum" => "REG_SZ",
        "decimal" => "REG_DWORD",
        "multiText" => "REG_MULTI_SZ",
        other => panic!("{name}: unexpected element {other}"),
    };
    Written {
        key: element.attribute("key").unwrap_or(&reg_key).to_owned(),
        value_name: element.attribute("valueName").unwrap().to_owned(),
        reg_type,
    }
}

/// `reg query ... /s` output for `values` (key → [(name, type, data)]),
/// the policy root first, as `reg` prints it.
fn reg_query(values: &BTreeMap<String, Vec<(String, &'static str, String)>>) -> String {
    let mut out = String::new();
    let root = format!("HKEY_LOCAL_MACHINE\\{}", admx::POLICY_KEY);
    let mut keys: Vec<&String> = values.keys().collect();
    keys.sort_by_key(|k| (k.len(), (*k).clone()));
    if keys.first().map(|k| k.as_str()) != Some(admx::POLICY_KEY) {
        out.push_str(&format!("{root}\r\n\r\n"));
    }
    for key in keys {
        out.push_str(&format!("HKEY_LOCAL_MACHINE\\{key}\r\n"));
        for (name, kind, data) in &values[key] {
            out.push_str(&format!("    {name}    {kind}    {data}\r\n"));
        }
        out.push_str("\r\n");
    }
    out
}

fn reg_data(reg_type: &str, literal: Literal) -> String {
    match (reg_type, literal) {
        ("REG_DWORD", Literal::Bool(b)) => format!("0x{:x}", u32::from(b)),
        ("REG_DWORD", Literal::Integer(n)) => format!("0x{n:x}"),
        ("REG_SZ", Literal::String(s)) => s.to_owned(),
        ("REG_MULTI_SZ", Literal::List(items)) => items.join("\\0"),
        (t, l) => panic!("the ADMX writes {t} for a {l:?}"),
    }
}

#[test]
fn every_admx_policy_round_trips_through_the_registry_reader() {
    let admx_text = admx_doc_text();
    // The ADMX's root key is the one the agent reads.
    assert_eq!(
        format!("HKEY_LOCAL_MACHINE\\{}", admx::POLICY_KEY),
        registry::POLICY_KEY
    );
    // Each key's example, and for booleans both states, written as the
    // ADMX declares and read back by the agent.
    let mut samples: Vec<BTreeMap<&str, Literal>> = vec![BTreeMap::new(), BTreeMap::new()];
    for key in KEYS {
        samples[0].insert(key.path, key.example);
        samples[1].insert(
            key.path,
            match key.kind {
                Kind::Bool => Literal::Bool(!matches!(key.example, Literal::Bool(true))),
                _ => key.default.unwrap_or(key.example),
            },
        );
    }
    for sample in samples {
        let mut values: BTreeMap<String, Vec<(String, &'static str, String)>> = BTreeMap::new();
        for key in KEYS {
            let written = written_by(&admx_text, key);
            let data = reg_data(written.reg_type, sample[key.path]);
            values.entry(written.key).or_default().push((
                written.value_name,
                written.reg_type,
                data,
            ));
        }
        let text = reg_query(&values);
        let table = registry::parse_reg_query(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let managed = Source {
            name: registry::POLICY_KEY.to_owned(),
            table,
        };
        let effective = merge(None, Some(&managed)).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let got = flat_settings(&effective.settings);
        for key in KEYS {
            assert_eq!(
                got.get(key.path),
                Some(&sample[key.path].to_toml()),
                "{}: {text}",
                key.path
            );
            assert!(effective.is_locked(key.path), "{} not locked", key.path);
        }
    }
}

// ---------------------------------------------------------------- macOS

#[test]
fn the_mobileconfig_is_a_profile_whose_payload_the_agent_reads() {
    let text = mobileconfig::mobileconfig(KEYS);
    let profile: plist::Value = plist::from_bytes(text.as_bytes()).unwrap();
    let profile = profile.as_dictionary().unwrap();
    assert_eq!(
        profile.get("PayloadType").and_then(|v| v.as_string()),
        Some("Configuration")
    );
    assert_eq!(
        profile.get("PayloadIdentifier").and_then(|v| v.as_string()),
        Some(mobileconfig::PROFILE_IDENTIFIER)
    );
    let (profile_uuid, payload_uuid) = mobileconfig::uuids(KEYS);
    assert_eq!(
        profile.get("PayloadUUID").and_then(|v| v.as_string()),
        Some(profile_uuid.as_str())
    );
    let content = profile
        .get("PayloadContent")
        .and_then(|v| v.as_array())
        .unwrap();
    assert_eq!(content.len(), 1);
    let payload = content[0].as_dictionary().unwrap();
    assert_eq!(
        payload.get("PayloadType").and_then(|v| v.as_string()),
        Some("com.sallyport.agent")
    );
    assert_eq!(
        payload.get("PayloadUUID").and_then(|v| v.as_string()),
        Some(payload_uuid.as_str())
    );
    // What macOS writes to /Library/Managed Preferences is the payload's
    // dictionary; plutil turns it into JSON for the agent's reader.
    let json = serde_json::to_string(&content[0]).unwrap();
    let table = agent_plist::parse_plist_json(&json).unwrap();
    let managed = Source {
        name: agent_plist::MANAGED_PLIST.to_owned(),
        table,
    };
    let effective = merge(None, Some(&managed)).unwrap();
    assert_eq!(effective.settings, agent::config::Settings::default());
    let with_default: std::collections::BTreeSet<&str> = KEYS
        .iter()
        .filter(|k| k.default.is_some())
        .map(|k| k.path)
        .collect();
    assert_eq!(
        effective
            .locked
            .iter()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>(),
        with_default
    );
}

// ---------------------------------------------------------------- Linux

#[test]
fn the_managed_toml_example_parses_as_is_and_uncommented() {
    let text = managed_toml::managed_toml(KEYS);
    // As shipped (the packages' conffile): only the keys the package sets,
    // each to its example value, and locked.
    let source = Source::from_toml("/etc/sallyport/managed.toml", &text).unwrap();
    let set: Vec<&str> = source.table.keys().map(String::as_str).collect();
    assert_eq!(set, managed_toml::PACKAGE_SETS.to_vec());
    let effective = merge(None, Some(&source)).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        effective.settings.device_service_socket.as_deref(),
        Some("/run/sallyport/sallyportd.sock")
    );
    assert!(effective.is_locked("device_service_socket"));
    // Everything uncommented: the defaults, and the examples where a key
    // has none; every key locked.
    let uncommented = managed_toml::uncomment_all(&text);
    let source = Source::from_toml("/etc/sallyport/managed.toml", &uncommented).unwrap();
    let effective = merge(None, Some(&source)).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    let got = flat_settings(&effective.settings);
    for key in KEYS {
        let expected = key.default.unwrap_or(key.example).to_toml();
        assert_eq!(got.get(key.path), Some(&expected), "{}", key.path);
        assert!(effective.is_locked(key.path));
    }
}

// ---------------------------------------------------------------- MSI (.wxs)

#[test]
fn the_msi_writes_each_property_where_the_registry_reader_finds_its_key() {
    use installers_gen::wxs;
    let text = wxs::wxs(KEYS);
    let doc = roxmltree::Document::parse(&text).unwrap();
    let values: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("RegistryValue"))
        .collect();
    let expected: Vec<&Key> = wxs::msi_keys(KEYS).collect();
    assert_eq!(values.len(), expected.len());
    for (node, key) in values.iter().zip(expected) {
        assert_eq!(node.attribute("Root"), Some("HKLM"));
        assert_eq!(node.attribute("Type"), Some("string"));
        let value = format!("[{}]", wxs::property(key));
        assert_eq!(node.attribute("Value"), Some(value.as_str()));
        // What `reg query` prints for it, as the MSI leaves it after
        // `msiexec … PROPERTY=<the schema's example>`, read by the agent.
        let example = match key.example {
            Literal::Bool(b) => u8::from(b).to_string(),
            Literal::Integer(n) => n.to_string(),
            Literal::String(s) => s.to_owned(),
            Literal::List(items) => items.join(","),
        };
        // `reg query /s` prints the policy key first, then each subkey.
        let mut reg = "HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Sallyport\r\n".to_owned();
        let subkey = node.attribute("Key").unwrap();
        if subkey != r"SOFTWARE\Policies\Sallyport" {
            reg.push_str(&format!("\r\nHKEY_LOCAL_MACHINE\\{subkey}\r\n"));
        }
        reg.push_str(&format!(
            "    {}    REG_SZ    {example}\r\n",
            node.attribute("Name").unwrap()
        ));
        let managed = Source {
            name: registry::POLICY_KEY.to_owned(),
            table: registry::parse_reg_query(&reg).unwrap(),
        };
        let effective = merge(None, Some(&managed)).unwrap();
        assert!(effective.is_locked(key.path), "{}: {reg}", key.path);
    }
}
