//! One Rego rule compiled for regorus' bytecode VM, evaluated with a bound
//! on instructions: what the posture policy (`sallyport.posture`) and the
//! broker's access policy (`sallyport.access`) both run.

use std::sync::Arc;

/// Upper bound on VM instructions per evaluation: a policy that loops over a
/// hostile input cannot pin a core. The shipped policies over a full input
/// run a few thousand.
pub const MAX_INSTRUCTIONS: usize = 1_000_000;

/// A rule of a Rego source, compiled once.
#[derive(Clone)]
pub struct RegoProgram {
    /// The compiled rules (the VM needs them for default values; the
    /// interpreter evaluates them directly).
    compiled: regorus::CompiledPolicy,
    /// The bytecode program for the rule.
    program: Arc<regorus::rvm::program::Program>,
}

impl std::fmt::Debug for RegoProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoProgram").finish_non_exhaustive()
    }
}

impl RegoProgram {
    /// Compiles `rule` (`data.package.rule`) of `source`; `name` appears in
    /// error positions. The error is regorus' explanation.
    pub fn compile(name: &str, source: &str, rule: &str) -> Result<Self, String> {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(name.to_owned(), source.to_owned())
            .map_err(|e| e.to_string())?;
        let entry: regorus::Rc<str> = rule.into();
        let compiled = engine
            .compile_with_entrypoint(&entry)
            .map_err(|e| e.to_string())?;
        let program =
            regorus::languages::rego::compiler::Compiler::compile_from_policy(&compiled, &[rule])
                .map_err(|e| e.to_string())?;
        Ok(Self { compiled, program })
    }

    /// Runs the rule on the VM over `input`, at most [`MAX_INSTRUCTIONS`].
    pub fn run(&self, input: regorus::Value) -> Result<regorus::Value, String> {
        let mut vm = regorus::rvm::RegoVM::new_with_policy(self.compiled.clone());
        vm.load_program(self.program.clone());
        vm.set_max_instructions(MAX_INSTRUCTIONS);
        vm.set_input(input);
        vm.execute().map_err(|e| e.to_string())
    }

    /// Evaluates the rule with regorus' interpreter: the reference
    /// semantics, for tests that check the VM agrees. Slower.
    pub fn run_interpreted(&self, input: regorus::Value) -> Result<regorus::Value, String> {
        self.compiled
            .eval_with_input(input)
            .map_err(|e| e.to_string())
    }
}

/// A JSON document as regorus' value, straight from the serde tree.
pub fn regorus_value(input: &serde_json::Value) -> Result<regorus::Value, String> {
    use serde::Deserialize as _;
    regorus::Value::deserialize(input).map_err(|e| e.to_string())
}
