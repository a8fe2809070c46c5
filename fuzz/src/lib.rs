//! A fuzz harness on stable Rust for every parser that takes outside input.
//!
//! Each [`Target`] is one entry point (or a family of them) fed inputs made
//! by a seeded PRNG: random bytes, dictionary tokens, and mutations of real
//! samples (bit flips, truncation, insertion, splicing, repeated ranges,
//! huge numbers, deep nesting, invalid UTF-8). Every call runs under
//! `catch_unwind`, so a panic is counted and reported with its input rather
//! than ending the run. Deterministic: the same seed gives the same inputs.
//!
//! `scripts/fuzz` runs the binary (`src/main.rs`) with a million cases;
//! `tests/quick.rs` runs a short pass inside `cargo test`.

pub mod mutate;
pub mod rng;
pub mod targets;

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

pub use rng::Rng;

/// Calls a target's parser(s) with one input.
pub type RunFn = Box<dyn FnMut(&[u8])>;

/// Describes what a stateful target saw.
pub type NoteFn = Box<dyn Fn() -> String>;

/// One fuzz target.
pub struct Target {
    /// Shown in the table: what is fuzzed.
    pub name: &'static str,
    /// Relative share of the cases (slow targets get less).
    pub weight: u32,
    /// Real, valid inputs that mutations start from.
    pub seeds: Vec<Vec<u8>>,
    /// Tokens worth inserting (field names, delimiters, magic values).
    pub dict: Vec<Vec<u8>>,
    /// Calls the parser(s) with one input.
    pub run: RunFn,
    /// What the target saw (drop counters, events), to show that inputs
    /// got past the outer checks; stateful targets only.
    pub note: Option<NoteFn>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("weight", &self.weight)
            .field("seeds", &self.seeds.len())
            .finish_non_exhaustive()
    }
}

/// A caught panic and the input that caused it.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The panic message and location.
    pub message: String,
    /// The input, as fed to the target.
    pub input: Vec<u8>,
}

/// What one target's run came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The target's name.
    pub name: &'static str,
    /// Inputs run.
    pub cases: u64,
    /// Inputs that panicked.
    pub panics: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The first few panics, with their inputs.
    pub findings: Vec<Finding>,
}

/// Panics kept per target (the count covers all of them).
const KEPT_FINDINGS: usize = 5;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f` with a panic hook that records the message instead of printing
/// it; the previous hook is restored afterwards.
pub fn with_quiet_panics<R>(f: impl FnOnce() -> R) -> R {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic payload)".to_owned());
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{message}{location}")));
    }));
    let result = f();
    panic::set_hook(previous);
    result
}

/// Feeds `target` `cases` inputs from `rng`. Call inside
/// [`with_quiet_panics`] to keep panic messages off stderr.
pub fn run_target(target: &mut Target, cases: u64, rng: &mut Rng) -> Outcome {
    let started = Instant::now();
    let mut outcome = Outcome {
        name: target.name,
        cases: 0,
        panics: 0,
        elapsed: Duration::ZERO,
        findings: Vec::new(),
    };
    let mut input = Vec::new();
    for _ in 0..cases {
        mutate::generate(rng, &target.seeds, &target.dict, &mut input);
        let run = &mut target.run;
        let result = panic::catch_unwind(AssertUnwindSafe(|| run(&input)));
        outcome.cases += 1;
        if result.is_err() {
            outcome.panics += 1;
            if outcome.findings.len() < KEPT_FINDINGS {
                let message = LAST_PANIC
                    .with(|p| p.borrow_mut().take())
                    .unwrap_or_else(|| "(no message)".to_owned());
                outcome.findings.push(Finding {
                    message,
                    input: input.clone(),
                });
            }
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// Splits `total` cases among `targets` by weight (each gets at least one).
pub fn split_cases(targets: &[Target], total: u64) -> Vec<u64> {
    let sum: u64 = targets
        .iter()
        .map(|t| u64::from(t.weight))
        .sum::<u64>()
        .max(1);
    targets
        .iter()
        .map(|t| (total * u64::from(t.weight)).div_ceil(sum).max(1))
        .collect()
}

/// Runs every target with its share of `total` cases; each target gets its
/// own generator derived from `seed` and its name, so adding a target does
/// not change the inputs of the others.
pub fn run_all(targets: &mut [Target], total: u64, seed: u64) -> Vec<Outcome> {
    let shares = split_cases(targets, total);
    with_quiet_panics(|| {
        targets
            .iter_mut()
            .zip(shares)
            .map(|(target, cases)| {
                let mut rng = Rng::new(seed ^ rng::hash_name(target.name));
                run_target(target, cases, &mut rng)
            })
            .collect()
    })
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}
