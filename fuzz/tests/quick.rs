//! The fuzz targets, briefly, inside `cargo test`: 20,000 cases in all, no
//! panic allowed. `scripts/fuzz` runs a million.

use sallyport_fuzz::{hex, run_all, targets};

#[test]
fn every_target_runs_twenty_thousand_cases_without_a_panic() {
    let mut all = targets::all();
    let names: Vec<&str> = all.iter().map(|t| t.name).collect();
    assert!(all.len() >= 20, "targets missing: {names:?}");
    for t in &all {
        assert!(!t.seeds.is_empty(), "{} has no seeds", t.name);
    }
    let seed = std::env::var("SALLYPORT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5a11_9027);
    let outcomes = run_all(&mut all, 20_000, seed);
    let failures: Vec<String> = outcomes
        .iter()
        .flat_map(|o| {
            o.findings
                .iter()
                .map(move |f| format!("{}: {} (input {})", o.name, f.message, hex(&f.input)))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "panics (seed {seed:#x}):\n{}",
        failures.join("\n")
    );
    assert!(outcomes.iter().map(|o| o.cases).sum::<u64>() >= 20_000);
}
