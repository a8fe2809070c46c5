//! Attestation verifications per second on one core: what the broker does
//! for each `POST /v1/attestations` minus storage — parse the EAT, verify the
//! ES256 signature with the enrolled key, check every claim, deserialise the
//! posture report, evaluate the default Rego policy — and verify the call's
//! DPoP proof (parse, signature with the enrolled key, claims, `jti` into a
//! replay cache already holding 500,000 live entries, as at peak load).
//!
//! The policy step is `posture::policy::Policy`, as the broker uses it
//! (regorus' bytecode VM); the same policy under regorus' interpreter is
//! measured alongside, as the reference semantics' cost.
//!
//! Reference measured in the same run: a bare ES256 signature verification
//! (ring) over the same token, so the figure can be read as a ratio; and the
//! same verification in pure Rust (`p256`), the JOSE crate's other backend.
//!
//! Uses the binary's allocator (mimalloc), so the figure is the server's.
//!
//! Run: `cargo bench -p broker --bench attest`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// The same allocator as the `sallyport-broker` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker::server::dpop::{self as dpop_check, Call, JtiCache};
use broker::server::eat::{self, EnrolledKey, Expectations};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use posture::attestation::{DeviceKey, EatClaims};
use posture::check::{Check, CheckId};
use posture::policy::Policy;
use posture::report::{Platform, Report};

/// A report of realistic size: the checks a Linux laptop reports, with
/// evidence lines.
fn report() -> Report {
    let ev = |c: Check, n: usize| {
        (0..n).fold(c, |c, i| {
            c.evidence(format!(
                "command output line {i}: some realistic evidence text"
            ))
        })
    };
    Report {
        collected_at: time::OffsetDateTime::now_utc(),
        platform: Platform::Linux,
        agent_version: "0.1.0".into(),
        duration_ms: 420,
        checks: vec![
            ev(
                Check::pass(CheckId::OsVersion, "Debian 12")
                    .fact("platform_id", "debian")
                    .fact("name", "Debian GNU/Linux")
                    .fact("version", "12")
                    .fact("version_parts", vec![12])
                    .fact("kernel", "6.1.0-18-amd64"),
                3,
            ),
            ev(
                Check::pass(CheckId::SecurityUpdates, "none pending")
                    .fact("pending", 4)
                    .fact("security_pending", 0)
                    .fact("metadata_age_days", 1),
                4,
            ),
            ev(
                Check::pass(CheckId::LastUpdate, "2 days ago").fact("days_since", 2),
                2,
            ),
            ev(
                Check::pass(CheckId::DiskEncryption, "LUKS2 on /dev/nvme0n1p3")
                    .fact("encrypted", true)
                    .fact("method", "luks2"),
                3,
            ),
            ev(
                Check::pass(CheckId::Firewall, "nftables")
                    .fact("enabled", true)
                    .fact("source", "nft"),
                2,
            ),
            ev(
                Check::pass(CheckId::ScreenLock, "300 s")
                    .fact("enabled", true)
                    .fact("timeout_seconds", 300),
                2,
            ),
            ev(
                Check::pass(CheckId::SecureBoot, "on").fact("enabled", true),
                1,
            ),
            ev(
                Check::pass(CheckId::Tpm, "TPM 2.0").fact("present", true),
                1,
            ),
            ev(
                Check::fail(CheckId::Antivirus, "none").fact("present", false),
                1,
            ),
        ],
    }
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let key = DeviceKey::generate();
    let claims = EatClaims::new(
        &key,
        "hW3m2m1YqK1k0s3bQf3V7h8J2c4d5e6f7g8h9i0j1k2",
        "sallyport-broker",
        "alice",
        report(),
        now,
        120,
    );
    let token = key.sign_eat(&claims).unwrap();
    let enrolled = EnrolledKey {
        device_id: key.kid(),
        user: "alice".into(),
        sec1: key.public_jwk().to_sec1().unwrap().to_vec(),
        ueid: key.ueid(),
        revoked: false,
    };
    let expect = Expectations {
        audience: "sallyport-broker",
        caller: "alice",
        now,
        skew: 60,
        max_lifetime: 300,
    };
    let policy = Policy::default_policy().unwrap();
    // Sanity: the pipeline accepts the token and the policy is compliant.
    let verified = eat::verify_claims(&eat::parse(&token).unwrap(), &enrolled, &expect).unwrap();
    assert!(policy.evaluate(&verified.posture).unwrap().compliant);

    let (signing_input, sig) = token.rsplit_once('.').unwrap();
    let sig = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .unwrap()
    };

    // DPoP: a pool of distinct proofs for `POST /v1/attestations` (signing
    // is the agent's work, not measured), a replay cache at peak size, and
    // a fresh `jti` per verification so the cache never refuses.
    let url = url::Url::parse("https://broker.example/v1/attestations").unwrap();
    let access_token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
    let proofs: Vec<String> = (0..1024)
        .map(|_| posture::dpop::proof(&key, "POST", url.as_str(), access_token, now, None).unwrap())
        .collect();
    let call = Call {
        method: "POST",
        url: &url,
        access_token,
        now,
    };
    let prefilled = {
        let mut cache = JtiCache::default();
        let mut c = dpop_check::verify(
            &dpop_check::parse(&proofs[0]).unwrap(),
            &enrolled.sec1,
            &call,
        )
        .unwrap();
        for i in 0..500_000 {
            c.jti = format!("prefill-{i:012}");
            cache.check_and_insert("another-device", &c, now).unwrap();
        }
        cache
    };
    let mut cache = prefilled.clone();
    let mut counter = 0u64;
    let mut verify_dpop = |i: usize| {
        let parsed = dpop_check::parse(black_box(&proofs[i % proofs.len()])).unwrap();
        let mut claims = dpop_check::verify(&parsed, &enrolled.sec1, &call).unwrap();
        counter += 1;
        claims.jti = format!("{counter:022}");
        if cache.len() >= 1_000_000 {
            cache = prefilled.clone();
        }
        cache
            .check_and_insert(&parsed.thumbprint, &claims, now)
            .unwrap();
    };

    let mut group = c.benchmark_group("attestation");
    group
        .throughput(Throughput::Elements(1))
        .measurement_time(Duration::from_secs(8));
    group.bench_function("reference: bare ES256 verify (ring)", |b| {
        b.iter(|| {
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                &enrolled.sec1,
            )
            .verify(black_box(signing_input.as_bytes()), black_box(&sig))
            .unwrap()
        })
    });
    // Why the broker verifies through ring (server::jose) and not the JOSE
    // crate's pure-Rust backend: the same verification with RustCrypto.
    let p256_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&enrolled.sec1).unwrap();
    let p256_sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
    group.bench_function("reference: bare ES256 verify (p256, RustCrypto)", |b| {
        use p256::ecdsa::signature::Verifier as _;
        b.iter(|| {
            p256_key
                .verify(black_box(signing_input.as_bytes()), black_box(&p256_sig))
                .unwrap()
        })
    });
    group.bench_function("EAT verify (parse + signature + claims)", |b| {
        b.iter(|| {
            let parsed = eat::parse(black_box(&token)).unwrap();
            eat::verify_claims(&parsed, &enrolled, &expect).unwrap()
        })
    });
    group.bench_function("policy evaluation only (regorus interpreter)", |b| {
        b.iter(|| {
            policy
                .evaluate_interpreted(black_box(&verified.posture))
                .unwrap()
        })
    });
    group.bench_function("policy evaluation only (regorus VM, as the broker)", |b| {
        b.iter(|| policy.evaluate(black_box(&verified.posture)).unwrap())
    });
    group.bench_function("EAT verify + policy evaluation", |b| {
        b.iter(|| {
            let parsed = eat::parse(black_box(&token)).unwrap();
            let claims = eat::verify_claims(&parsed, &enrolled, &expect).unwrap();
            policy.evaluate(&claims.posture).unwrap()
        })
    });
    let mut i = 0usize;
    group.bench_function(
        "DPoP proof verify (parse + signature + claims + jti cache)",
        |b| {
            b.iter(|| {
                i += 1;
                verify_dpop(i)
            })
        },
    );
    group.bench_function("DPoP verify + EAT verify + policy evaluation", |b| {
        b.iter(|| {
            i += 1;
            verify_dpop(i);
            let parsed = eat::parse(black_box(&token)).unwrap();
            let claims = eat::verify_claims(&parsed, &enrolled, &expect).unwrap();
            policy.evaluate(&claims.posture).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
