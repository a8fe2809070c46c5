//! Posture policy as code: Rego, evaluated by `regorus`.
//!
//! The policy reads the report (checks keyed by id) and returns the set of
//! violations with messages and remediations. A compiled [`Policy`] is cheap
//! to clone and to evaluate again, so the broker can keep one per policy
//! digest and evaluate thousands of attestations a second.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::report::Report;

mod input;
mod program;
pub use input::{DeviceFacts, KEY_ASSURANCE_UNREPORTED, policy_input, policy_input_for};
pub use program::{MAX_INSTRUCTIONS, RegoProgram, regorus_value};

/// The policy that ships with Sallyport (`posture/policy/default.rego`).
pub const DEFAULT_POLICY: &str = include_str!("../../policy/default.rego");

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
///
/// Evaluation runs regorus' bytecode VM (RVM) over a program compiled once
/// at load: the broker evaluates a policy for every attestation, and the VM
/// is several times faster than the tree-walking interpreter (measured by
/// the broker's `attest` bench). The interpreter is kept as the reference
/// semantics: [`Policy::evaluate_interpreted`] answers with it, and tests
/// check that both agree over many reports.
#[derive(Clone)]
pub struct Policy {
    /// [`VIOLATIONS_RULE`], compiled.
    program: RegoProgram,
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
        let program = RegoProgram::compile(name, source, VIOLATIONS_RULE).map_err(invalid)?;
        let policy = Policy {
            program,
            name: name.to_owned(),
        };
        // Reject a policy without the rule (or with a malformed one) at load
        // time, not per device.
        let empty = serde_json::json!({"platform": "linux", "checks": {}});
        policy.evaluate_input(&empty)?;
        policy.evaluate_input_interpreted(&empty)?;
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
        // Built straight into regorus' values: going through a serde_json
        // tree first was half the cost of an evaluation.
        self.run(input::regorus_input(report))
    }

    /// Evaluates the policy over a report and what the attestation says
    /// about the device (`input.device`, see [`DeviceFacts`]): the broker's
    /// evaluation, so Rego can require `input.device.key_assurance == "tpm"`.
    pub fn evaluate_attested(
        &self,
        report: &Report,
        device: &DeviceFacts,
    ) -> Result<Evaluation, PolicyError> {
        self.run(input::regorus_input_for(report, Some(device)))
    }

    /// Evaluates the policy over an already-built input document (the shape
    /// [`policy_input`] makes).
    pub fn evaluate_input(&self, input: &Value) -> Result<Evaluation, PolicyError> {
        self.run(regorus_value(input).map_err(PolicyError::Evaluation)?)
    }

    fn run(&self, input: regorus::Value) -> Result<Evaluation, PolicyError> {
        let result = self.program.run(input).map_err(PolicyError::Evaluation)?;
        evaluation_from(&result)
    }

    /// Evaluates with regorus' interpreter instead of the VM: the reference
    /// semantics, for tests that check the VM agrees. Slower.
    pub fn evaluate_interpreted(&self, report: &Report) -> Result<Evaluation, PolicyError> {
        self.evaluate_input_interpreted(&policy_input(report))
    }

    fn evaluate_input_interpreted(&self, input: &Value) -> Result<Evaluation, PolicyError> {
        let result = self
            .program
            .run_interpreted(regorus_value(input).map_err(PolicyError::Evaluation)?)
            .map_err(PolicyError::Evaluation)?;
        evaluation_from(&result)
    }
}

/// A policy that does not compile, with regorus' explanation.
fn invalid(err: impl std::fmt::Display) -> PolicyError {
    PolicyError::Invalid(err.to_string())
}

/// Reads the `violations` set the policy produced.
fn evaluation_from(result: &regorus::Value) -> Result<Evaluation, PolicyError> {
    let value = serde_json::to_value(result).map_err(|err| PolicyError::Output(err.to_string()))?;
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

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}
