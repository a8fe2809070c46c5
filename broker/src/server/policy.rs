//! The posture policy as the broker evaluates it: the same Rego, the same
//! input document ([`posture::policy::policy_input`]), the same output type
//! ([`posture::policy::Evaluation`]) as `posture::policy::Policy`, with one
//! difference that matters at thousands of attestations a second: the regorus
//! engine is *prepared* (rule analysis, scheduling, loop hoisting) once at
//! load, so the clone made for each evaluation starts warm.
//!
//! `posture::policy::Policy::evaluate` clones a never-evaluated engine, and
//! each clone redoes that preparation (measured: ~345 µs per evaluation vs
//! ~115 µs prepared; see `benches/attest.rs`). When posture prepares its
//! engine at load, this wrapper can go; `agrees_with_posture_policy` below
//! keeps the two answers identical until then.

use posture::Report;
use posture::policy::{Evaluation, Policy, PolicyError, Violation, policy_input};
use serde::Deserialize as _;

/// The rule every policy defines (as in `posture::policy`).
const VIOLATIONS_RULE: &str = "data.sallyport.posture.violations";

/// A compiled, prepared policy. Cheap to share; evaluation clones the
/// prepared engine (an `Arc` bump), so concurrent evaluations never share
/// mutable state.
#[derive(Clone)]
pub struct PreparedPolicy {
    engine: regorus::Engine,
}

impl std::fmt::Debug for PreparedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedPolicy").finish_non_exhaustive()
    }
}

impl PreparedPolicy {
    /// Compiles `source`. Load-time checks (syntax, the `violations` rule,
    /// its output shape) are posture's own, so a policy the agent accepts is
    /// exactly a policy the broker accepts.
    pub fn new(name: &str, source: &str) -> Result<Self, PolicyError> {
        Policy::from_source(name, source)?;
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(name.to_owned(), source.to_owned())
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        // One evaluation on the template itself prepares it for every clone.
        let empty = serde_json::json!({"platform": "linux", "checks": {}});
        let input = regorus::Value::from_json_str(&empty.to_string())
            .map_err(|e| PolicyError::Evaluation(e.to_string()))?;
        engine.set_input(input);
        engine
            .eval_rule(VIOLATIONS_RULE.to_owned())
            .map_err(|e| PolicyError::Evaluation(e.to_string()))?;
        Ok(Self { engine })
    }

    /// Evaluates the policy over a report.
    pub fn evaluate(&self, report: &Report) -> Result<Evaluation, PolicyError> {
        let mut engine = self.engine.clone();
        // Straight from the serde tree: no JSON text in between.
        let input = regorus::Value::deserialize(&policy_input(report))
            .map_err(|e| PolicyError::Evaluation(e.to_string()))?;
        engine.set_input(input);
        let result = engine
            .eval_rule(VIOLATIONS_RULE.to_owned())
            .map_err(|e| PolicyError::Evaluation(e.to_string()))?;
        let json = result
            .to_json_str()
            .map_err(|e| PolicyError::Output(e.to_string()))?;
        let mut violations: Vec<Violation> = serde_json::from_str(&json).map_err(|e| {
            PolicyError::Output(format!(
                "{VIOLATIONS_RULE} must be a set of {{check, message, remediation}}: {e}"
            ))
        })?;
        violations.sort();
        violations.dedup();
        Ok(Evaluation {
            compliant: violations.is_empty(),
            violations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use posture::check::{Check, CheckId, Unknown, UnknownKind};
    use posture::policy::DEFAULT_POLICY;
    use posture::report::Platform;

    fn report(checks: Vec<Check>) -> Report {
        Report {
            collected_at: time::OffsetDateTime::UNIX_EPOCH,
            platform: Platform::Linux,
            agent_version: "0.1.0".into(),
            duration_ms: 1,
            checks,
        }
    }

    fn healthy() -> Vec<Check> {
        vec![
            Check::pass(CheckId::OsVersion, "Debian 12")
                .fact("platform_id", "debian")
                .fact("name", "Debian GNU/Linux")
                .fact("version", "12")
                .fact("version_parts", vec![12]),
            Check::pass(CheckId::SecurityUpdates, "none")
                .fact("security_pending", 0)
                .fact("metadata_age_days", 1),
            Check::pass(CheckId::DiskEncryption, "LUKS2").fact("encrypted", true),
            Check::pass(CheckId::Firewall, "nftables").fact("enabled", true),
            Check::pass(CheckId::ScreenLock, "300 s").fact("timeout_seconds", 300),
        ]
    }

    #[test]
    fn agrees_with_posture_policy() {
        let ours = PreparedPolicy::new("default.rego", DEFAULT_POLICY).unwrap();
        let theirs = Policy::default_policy().unwrap();
        let mut cases = vec![report(healthy()), report(vec![])];
        let mut bad = healthy();
        bad[3] = Check::fail(CheckId::Firewall, "off").remediation("turn it on");
        bad[4] = Check::pass(CheckId::ScreenLock, "1 h").fact("timeout_seconds", 3600);
        bad[0] = Check::pass(CheckId::OsVersion, "Debian 11")
            .fact("platform_id", "debian")
            .fact("name", "Debian")
            .fact("version", "11")
            .fact("version_parts", vec![11]);
        cases.push(report(bad));
        let mut unknown = healthy();
        unknown[2] = Check::unknown(
            CheckId::DiskEncryption,
            Unknown::new(UnknownKind::PermissionDenied, "needs root"),
        );
        cases.push(report(unknown));
        // Interleave so a prepared engine that leaked state between
        // evaluations would show.
        for _ in 0..2 {
            for case in &cases {
                assert_eq!(ours.evaluate(case).unwrap(), theirs.evaluate(case).unwrap());
            }
        }
        assert!(ours.evaluate(&cases[0]).unwrap().compliant);
        assert_eq!(ours.evaluate(&cases[2]).unwrap().violations.len(), 3);
    }

    #[test]
    fn refuses_what_posture_refuses() {
        assert!(PreparedPolicy::new("x.rego", "package nope\nx := 1").is_err());
        assert!(PreparedPolicy::new("x.rego", "not rego").is_err());
    }
}
