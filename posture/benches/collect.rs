//! One full posture collection on this machine, cold and warm, against a
//! reference measured in the same run: spawning `true` (the unit cost every
//! command-based collector pays at least once).
//!
//! Run: `cargo bench -p posture --bench collect`.
//! cold = no cache: the package-manager simulation runs;
//! warm = its cached output is reused (package database unchanged).

// A bench that cannot set up must abort loudly.
#![allow(clippy::expect_used)]
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use posture::cache::Cache;
use posture::collect::{Options, collect};

fn options(cache: Cache) -> Options {
    Options {
        cache,
        ..Options::default()
    }
}

fn bench_collection(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");

    let mut group = c.benchmark_group("posture");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("reference: spawn `true`", |b| {
        b.iter(|| {
            std::process::Command::new("true")
                .status()
                .expect("spawn true")
        })
    });
    let warm = options(Cache::at(dir.path()));
    runtime.block_on(collect(&warm)); // prime the cache
    group.bench_function("full collection, warm", |b| {
        b.iter(|| runtime.block_on(collect(&warm)))
    });
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    let cold = options(Cache::disabled());
    group.bench_function("full collection, cold", |b| {
        b.iter(|| runtime.block_on(collect(&cold)))
    });
    group.finish();
}

criterion_group!(benches, bench_collection);
criterion_main!(benches);
