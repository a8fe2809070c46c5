//! `sallyport-fuzz [--cases N] [--only NAME] [--list]`: runs every target
//! with its share of N cases (default 1,000,000), prints a table, and exits
//! 1 when anything panicked. The seed is `SALLYPORT_FUZZ_SEED` (decimal or
//! 0x-hex), else a fixed default; it is printed so a run can be repeated.

use std::io::Write as _;
use std::process::ExitCode;

use sallyport_fuzz::{hex, run_all, targets};

const DEFAULT_SEED: u64 = 0x5a11_9027;

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.replace('_', "");
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn main() -> ExitCode {
    let mut out = std::io::stdout().lock();
    let mut total: u64 = 1_000_000;
    let mut only: Option<String> = None;
    let mut list = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cases" => match args.next().as_deref().and_then(parse_u64) {
                Some(n) => total = n,
                None => {
                    let _ = writeln!(out, "--cases needs a number");
                    return ExitCode::from(2);
                }
            },
            "--only" => only = args.next(),
            "--list" => list = true,
            other => {
                let _ = writeln!(
                    out,
                    "usage: sallyport-fuzz [--cases N] [--only NAME] [--list] (unknown: {other})"
                );
                return ExitCode::from(2);
            }
        }
    }
    let seed = std::env::var("SALLYPORT_FUZZ_SEED")
        .ok()
        .and_then(|s| parse_u64(&s))
        .unwrap_or(DEFAULT_SEED);
    let mut targets = targets::all();
    if let Some(only) = &only {
        targets.retain(|t| t.name.contains(only.as_str()));
    }
    if list {
        for t in &targets {
            let _ = writeln!(
                out,
                "{} (weight {}, {} seeds)",
                t.name,
                t.weight,
                t.seeds.len()
            );
        }
        return ExitCode::SUCCESS;
    }
    let _ = writeln!(
        out,
        "seed {seed:#x} (SALLYPORT_FUZZ_SEED to change), {total} cases over {} targets",
        targets.len()
    );
    let outcomes = run_all(&mut targets, total, seed);
    let width = outcomes
        .iter()
        .map(|o| o.name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        out,
        "{:<width$}  {:>10}  {:>6}  {:>8}",
        "target", "cases", "panics", "time"
    );
    let (mut cases, mut panics, mut secs) = (0u64, 0u64, 0f64);
    for o in &outcomes {
        let _ = writeln!(
            out,
            "{:<width$}  {:>10}  {:>6}  {:>7.1}s",
            o.name,
            o.cases,
            o.panics,
            o.elapsed.as_secs_f64()
        );
        cases += o.cases;
        panics += o.panics;
        secs += o.elapsed.as_secs_f64();
    }
    let _ = writeln!(
        out,
        "{:<width$}  {:>10}  {:>6}  {:>7.1}s",
        "total", cases, panics, secs
    );
    for t in &targets {
        if let Some(note) = &t.note {
            let _ = writeln!(out, "{}: {}", t.name, note());
        }
    }
    for o in &outcomes {
        for f in &o.findings {
            let _ = writeln!(
                out,
                "\nPANIC in {}: {}\n  input ({} bytes): {}",
                o.name,
                f.message,
                f.input.len(),
                hex(&f.input)
            );
        }
    }
    if panics > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
