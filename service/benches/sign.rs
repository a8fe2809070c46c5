//! What a signature costs with the key in a TPM against the software key:
//! `sign_es256` on the persisted TPM key (swtpm over loopback TCP: TCTI,
//! ESAPI marshalling, the simulated TPM's ECDSA) and ES256 with the
//! software P-256 key (posture's `DeviceKey`), over a DPoP-sized signing
//! input. The ratio is printed at the end (mean of a separate timed loop),
//! since every EAT and DPoP proof pays it.
//!
//! Run: `cargo bench -p sallyport-service --features tpm --bench sign`
//! (needs swtpm: Debian `swtpm swtpm-tools`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use posture::attestation::DeviceKey;
use service::keys::KeyBackend;
use service::keys::tpm::{DEFAULT_PERSISTENT_HANDLE, TpmKey};
use support::tpm::Swtpm;

/// A DPoP proof's signing input is about this long.
const INPUT: &[u8] = &[b'a'; 420];

fn mean(mut f: impl FnMut(), n: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

fn bench(c: &mut Criterion) {
    let Some(tpm) = Swtpm::start() else { return };
    let key = TpmKey::load_or_create(&tpm.tcti(), DEFAULT_PERSISTENT_HANDLE).unwrap();
    let software = DeviceKey::generate();

    let mut group = c.benchmark_group("sign_es256");
    group.bench_function("tpm (swtpm)", |b| {
        b.iter(|| key.sign_es256(black_box(INPUT)).unwrap())
    });
    group.bench_function("software p256", |b| {
        b.iter(|| software.sign_compact(black_box(b"e30"), black_box(INPUT)))
    });
    group.finish();

    let tpm_mean = mean(|| _ = black_box(key.sign_es256(INPUT).unwrap()), 200);
    let sw_mean = mean(|| _ = black_box(software.sign_compact(b"e30", INPUT)), 2000);
    eprintln!(
        "sign_es256: tpm (swtpm) {tpm_mean:?}, software p256 {sw_mean:?}, ratio {:.1}x",
        tpm_mean.as_secs_f64() / sw_mean.as_secs_f64()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
