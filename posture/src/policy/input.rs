//! The document a policy reads as `input`: the report with its checks keyed
//! by id, so a policy can say `input.checks.firewall.status`.
//!
//! An attested evaluation (the broker's) adds `input.device`, what the EAT
//! says about the key and the local account ([`DeviceFacts`]):
//! `input.device.key_assurance` (`tpm`, `platform-crypto-provider`,
//! `secure-enclave`, `software`, or `unreported` when the EAT has no such
//! claim: always a string, so `input.device.key_assurance != "tpm"` is
//! never undefined), `input.device.local_uid` and `input.device.local_user`
//! (present only when the device service reported them).
//!
//! [`policy_input`] is the definition (serde, the same JSON a person sees);
//! [`regorus_input`] builds the identical document directly as regorus
//! values for evaluation, skipping the intermediate serde_json tree. A test
//! below keeps the two equal.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::check::Check;
use crate::report::Report;

/// The value of `input.device.key_assurance` when the EAT carried none
/// (signed by an agent's own keyring key, not by the device service).
pub const KEY_ASSURANCE_UNREPORTED: &str = "unreported";

/// What an attestation says about the device beyond its posture: which
/// store holds its key and which local account asked for the EAT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct DeviceFacts {
    /// `tpm`, `software`, ... or [`KEY_ASSURANCE_UNREPORTED`].
    pub key_assurance: String,
    /// The local uid the device service saw on its socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_uid: Option<u32>,
    /// That account's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_user: Option<String>,
}

impl DeviceFacts {
    /// The facts an EAT's optional claims give (absent claims: unreported).
    pub fn from_claims(
        key_assurance: Option<&str>,
        local_uid: Option<u32>,
        local_user: Option<&str>,
    ) -> Self {
        DeviceFacts {
            key_assurance: key_assurance.unwrap_or(KEY_ASSURANCE_UNREPORTED).to_owned(),
            local_uid,
            local_user: local_user.map(str::to_owned),
        }
    }
}

/// [`policy_input`] plus `input.device` (see the module docs).
pub fn policy_input_for(report: &Report, device: Option<&DeviceFacts>) -> Value {
    let mut input = policy_input(report);
    if let (Some(device), Some(map)) = (device, input.as_object_mut()) {
        map.insert(
            "device".to_owned(),
            serde_json::to_value(device).unwrap_or(Value::Null),
        );
    }
    input
}

/// [`regorus_input`] plus `input.device`, built directly.
pub(super) fn regorus_input_for(report: &Report, device: Option<&DeviceFacts>) -> regorus::Value {
    let mut input = regorus_input(report);
    if let (Some(device), Ok(map)) = (device, input.as_object_mut()) {
        let mut fields = vec![("key_assurance", device.key_assurance.as_str().into())];
        if let Some(uid) = device.local_uid {
            fields.push(("local_uid", regorus::Value::from(u64::from(uid))));
        }
        if let Some(user) = &device.local_user {
            fields.push(("local_user", user.as_str().into()));
        }
        map.insert("device".into(), object(fields));
    }
    input
}

/// The policy input as JSON.
pub fn policy_input(report: &Report) -> Value {
    let checks: Map<String, Value> = report
        .checks
        .iter()
        .filter_map(|check| {
            Some((
                check.id.as_str().to_owned(),
                serde_json::to_value(check).ok()?,
            ))
        })
        .collect();
    serde_json::json!({
        "platform": report.platform,
        "agent_version": report.agent_version,
        "checks": checks,
    })
}

/// The same document as [`policy_input`], as regorus values.
pub(super) fn regorus_input(report: &Report) -> regorus::Value {
    let checks: BTreeMap<regorus::Value, regorus::Value> = report
        .checks
        .iter()
        .map(|check| (check.id.as_str().into(), regorus_check(check)))
        .collect();
    object([
        ("platform", name_of(&report.platform)),
        ("agent_version", report.agent_version.as_str().into()),
        ("checks", checks.into()),
    ])
}

/// One check, with the fields and omissions of its `Serialize`.
fn regorus_check(check: &Check) -> regorus::Value {
    let mut fields = vec![
        ("id", check.id.as_str().into()),
        ("status", name_of(&check.status)),
        ("summary", check.summary.as_str().into()),
        (
            "observed",
            check
                .observed
                .iter()
                .map(|(k, v)| (k.as_str().into(), from_json(v)))
                .collect::<BTreeMap<regorus::Value, regorus::Value>>()
                .into(),
        ),
        (
            "evidence",
            check
                .evidence
                .iter()
                .map(|line| line.as_str().into())
                .collect::<Vec<regorus::Value>>()
                .into(),
        ),
    ];
    if let Some(remediation) = &check.remediation {
        fields.push(("remediation", remediation.as_str().into()));
    }
    if let Some(unknown) = &check.unknown {
        fields.push((
            "unknown",
            object([
                ("kind", name_of(&unknown.kind)),
                ("detail", unknown.detail.as_str().into()),
            ]),
        ));
    }
    object(fields)
}

fn object<'a>(fields: impl IntoIterator<Item = (&'a str, regorus::Value)>) -> regorus::Value {
    fields
        .into_iter()
        .map(|(k, v)| (regorus::Value::from(k), v))
        .collect::<BTreeMap<_, _>>()
        .into()
}

/// A unit enum's serde name (`"pass"`, `"linux"`, `"permission_denied"`).
fn name_of(value: &impl Serialize) -> regorus::Value {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name.as_str().into(),
        _ => regorus::Value::Undefined,
    }
}

/// A JSON fact as a regorus value; numbers keep their integer-ness.
fn from_json(value: &Value) -> regorus::Value {
    match value {
        Value::Null => regorus::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                n.as_f64().map_or(regorus::Value::Undefined, Into::into)
            }
        }
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => items.iter().map(from_json).collect::<Vec<_>>().into(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.as_str().into(), from_json(v)))
            .collect::<BTreeMap<regorus::Value, regorus::Value>>()
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{CheckId, Unknown, UnknownKind};
    use crate::report::Platform;

    #[test]
    fn direct_build_equals_the_serde_definition() {
        let report = Report {
            collected_at: time::OffsetDateTime::UNIX_EPOCH,
            platform: Platform::Windows,
            agent_version: "1.2.3".into(),
            duration_ms: 5,
            checks: vec![
                Check::pass(CheckId::OsVersion, "Windows 11")
                    .fact("version_parts", vec![10, 0, 22631])
                    .fact("big", u64::MAX)
                    .fact("negative", -3)
                    .fact("ratio", 0.25)
                    .fact("nothing", Value::Null)
                    .fact("nested", serde_json::json!({"a": [true, "x", {"b": null}]}))
                    .evidence("reg query ...")
                    .evidence("second line"),
                Check::fail(CheckId::Firewall, "off").remediation("turn it on"),
                Check::unknown(
                    CheckId::DiskEncryption,
                    Unknown::new(UnknownKind::PermissionDenied, "needs admin"),
                ),
            ],
        };
        let definition = regorus::Value::from(policy_input(&report));
        assert_ne!(definition, regorus::Value::Undefined);
        assert_eq!(regorus_input(&report), definition);
        for device in [
            DeviceFacts::from_claims(None, None, None),
            DeviceFacts::from_claims(Some("tpm"), Some(1000), Some("alice")),
        ] {
            let definition = regorus::Value::from(policy_input_for(&report, Some(&device)));
            assert_eq!(regorus_input_for(&report, Some(&device)), definition);
        }
    }
}
