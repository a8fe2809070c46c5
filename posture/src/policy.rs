//! Posture policy as code: Rego, evaluated by `regorus`.
//!
//! The policy reads the report (checks keyed by id) and returns the set of
//! violations with messages and remediations. A compiled [`Policy`] is cheap
//! to clone and to evaluate again, so the broker can keep one per policy
//! digest and evaluate thousands of attestations a second.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::report::Report;

/// The policy that ships with Sallyport (`posture/policy/default.rego`).
pub const DEFAULT_POLICY: &str = include_str!("../policy/default.rego");

/// The rule every policy must define.
const VIOLATIONS_RULE: &str = "data.sallyport.posture.violations";

/// Why a policy could not be loaded or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("cannot read policy {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The Rego does not compile; the message has `file:line:column`.
    #[error("invalid policy: {0}")]
    Invalid(String),
    /// The policy compiled but evaluating it failed (e.g. a type error).
    #[error("policy evaluation failed: {0}")]
    Evaluation(String),
    /// `violations` is missing or not a set of {check, message, remediation}.
    #[error("policy output is malformed: {0}")]
    Output(String),
}

/// One way the device does not meet the policy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Violation {
    /// The check id it concerns (`disk_encryption`).
    pub check: String,
    /// What is wrong, for the user.
    pub message: String,
    /// What to do about it.
    pub remediation: String,
}

/// The outcome of evaluating a policy over a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// True when there are no violations.
    pub compliant: bool,
    /// The violations, sorted by check then message.
    pub violations: Vec<Violation>,
}

impl Evaluation {
    /// The violations that concern `check`.
    pub fn for_check<'a>(&'a self, check: &'a str) -> impl Iterator<Item = &'a Violation> + 'a {
        self.violations.iter().filter(move |v| v.check == check)
    }
}

/// A compiled Rego policy.
#[derive(Clone)]
pub struct Policy {
    engine: regorus::Engine,
    name: String,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// The built-in default policy.
    pub fn default_policy() -> Result<Self, PolicyError> {
        Policy::from_source("default.rego", DEFAULT_POLICY)
    }

    /// Compiles `source`; `name` appears in error positions.
    pub fn from_source(name: &str, source: &str) -> Result<Self, PolicyError> {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(name.to_owned(), source.to_owned())
            .map_err(|err| PolicyError::Invalid(err.to_string()))?;
        // Evaluate once on the stored engine: regorus analyses the rules on
        // the first evaluation and keeps the result, so every later clone
        // (one per evaluation) starts prepared — about 2x faster per call
        // (measured by the broker's `attest` bench).
        let empty = serde_json::json!({"platform": "linux", "checks": {}});
        let empty_input = regorus::Value::from_json_str(&empty.to_string())
            .map_err(|err| PolicyError::Evaluation(err.to_string()))?;
        engine.set_input(empty_input);
        engine
            .eval_rule(VIOLATIONS_RULE.to_owned())
            .map_err(|err| PolicyError::Evaluation(err.to_string()))?;
        let policy = Policy {
            engine,
            name: name.to_owned(),
        };
        // Reject a policy without the rule (or with a malformed one) at load
        // time, not per device.
        policy.evaluate_input(&empty)?;
        Ok(policy)
    }

    /// Reads and compiles a policy file.
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        let source = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Policy::from_source(&path.display().to_string(), &source)
    }

    /// The name the policy was loaded under (file name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Evaluates the policy over a report.
    pub fn evaluate(&self, report: &Report) -> Result<Evaluation, PolicyError> {
        self.evaluate_input(&policy_input(report))
    }

    /// Evaluates the policy over an already-built input document.
    pub fn evaluate_input(&self, input: &Value) -> Result<Evaluation, PolicyError> {
        let mut engine = self.engine.clone();
        let input = regorus::Value::from_json_str(&input.to_string())
            .map_err(|err| PolicyError::Evaluation(err.to_string()))?;
        engine.set_input(input);
        let result = engine
            .eval_rule(VIOLATIONS_RULE.to_owned())
            .map_err(|err| PolicyError::Evaluation(err.to_string()))?;
        let json = result
            .to_json_str()
            .map_err(|err| PolicyError::Output(err.to_string()))?;
        let value: Value =
            serde_json::from_str(&json).map_err(|err| PolicyError::Output(err.to_string()))?;
        let mut violations: Vec<Violation> = match value {
            Value::Array(items) => items
                .into_iter()
                .map(serde_json::from_value)
                .collect::<Result<_, _>>()
                .map_err(|err| {
                    PolicyError::Output(format!(
                        "each violation needs check, message, remediation: {err}"
                    ))
                })?,
            other => {
                return Err(PolicyError::Output(format!(
                    "{VIOLATIONS_RULE} must be a set, got {}",
                    short(&other)
                )));
            }
        };
        violations.sort();
        violations.dedup();
        Ok(Evaluation {
            compliant: violations.is_empty(),
            violations,
        })
    }
}

/// The policy input: the report with its checks keyed by id, so a policy can
/// say `input.checks.firewall.status`.
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

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}
