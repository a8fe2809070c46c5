//! Grant decisions per second on one core: what the broker decides for
//! each `POST /v1/grants` minus storage and the gateway: the verdict's
//! floor (`grants::decide`), the access policy's input document built and
//! digested, `sallyport.access` evaluated (regorus' VM), and the result
//! judged (time window, lifetime). Once with the built-in access policy and
//! once with a policy holding the documented examples (a group gate, a
//! working-hours window in Europe/Paris, a named-network rule).
//!
//! Reference measured in the same run: one bare ES256 signature
//! verification (ring), the unit the attestation bench also reports in.
//!
//! Run: `cargo bench -p broker --bench access`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// The same allocator as the `sallyport-broker` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker::server::access::input::{
    AccessInput, AppFacts, Context, DeviceState, SignInFacts, Signals, UserFacts, digest,
    local_time,
};
use broker::server::access::{AccessPolicy, judge};
use broker::server::grants::{StoredVerdict, decide};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use posture::attestation::DeviceKey;

const EXAMPLES: &str = r#"
package sallyport.access
import rego.v1

default allow := true
fresh_mfa(seconds) if {
	input.sign_in.mfa
	input.sign_in.mfa_age_seconds != null
	input.sign_in.mfa_age_seconds <= seconds
}
allow := false if {
	input.app.labels.team == "finance"
	not "finance" in input.user.groups
}
reasons contains {"message": "This application is for the finance team.",
	"remediation": "Ask IT to add you to the finance group."} if {
	input.app.labels.team == "finance"
	not "finance" in input.user.groups
}
allow := false if {
	input.app.labels.network == "office"
	count(input.context.networks) == 0
}
default step_up := null
step_up := {"acr_values": input.sign_in.mfa_acr_values, "max_age": 3600} if {
	input.app.labels.sensitivity == "high"
	not fresh_mfa(3600)
}
default window := null
window := {"from": "07:00", "to": "20:00", "time_zone": "Europe/Paris",
	"days": ["mon", "tue", "wed", "thu", "fri"]} if input.app.labels.hours == "office"
decision := {"allow": allow, "reasons": reasons, "step_up": step_up, "window": window}
"#;

fn input(now: i64, tz: &jiff::tz::TimeZone) -> AccessInput {
    let checks: BTreeMap<String, String> = [
        "os_version",
        "security_updates",
        "disk_encryption",
        "firewall",
        "screen_lock",
        "antivirus",
        "secure_boot",
    ]
    .iter()
    .map(|c| ((*c).to_owned(), "pass".to_owned()))
    .collect();
    AccessInput {
        user: UserFacts {
            sub: "alice".into(),
            email: Some("alice@example.com".into()),
            groups: vec!["engineering".into(), "finance".into(), "vpn-users".into()],
        },
        device: DeviceState {
            id: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".into(),
            compliant: true,
            violations: vec![],
            key_assurance: Some("tpm".into()),
            platform: Some("linux".into()),
            checks,
            enrolled_at: now - 30 * 86_400,
        },
        app: AppFacts {
            id: "ledger".into(),
            name: "Ledger".into(),
            labels: [
                ("sensitivity", "high"),
                ("team", "finance"),
                ("network", "office"),
                ("hours", "office"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
            owners: vec!["finance-it@example.com".into()],
        },
        sign_in: SignInFacts {
            amr: vec!["pwd".into(), "otp".into()],
            acr: Some("urn:example:acr:mfa".into()),
            auth_time: Some(now - 600),
            mfa: true,
            mfa_age_seconds: Some(600),
            mfa_acr_values: vec!["urn:example:acr:mfa".into()],
        },
        context: Context {
            time: local_time(now, tz),
            source_ip: Some("192.0.2.44".into()),
            networks: vec!["office".into()],
            signals: Signals {
                new_network: false,
                new_device: false,
                recent_denials: 0,
                denial_burst: false,
            },
        },
    }
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let verdict = StoredVerdict {
        compliant: true,
        violations: vec![],
        valid_until: now + 900,
        policy_digest: "ab".repeat(32),
    };
    let built_in = AccessPolicy::default_policy().unwrap();
    let examples = AccessPolicy::from_source("examples.rego", EXAMPLES).unwrap();
    // One grant decision, as `service::access` and `service::grants` run it.
    let decision = |policy: &AccessPolicy| {
        let floor = decide(
            Some(black_box(&verdict)),
            &verdict.policy_digest,
            now + 3600,
            3600,
            now,
        )
        .unwrap();
        let doc = input(now, &tz).to_json();
        let d = digest(&doc);
        let out = policy.evaluate(&doc).unwrap();
        (judge(&out, "Ledger", &tz, floor, now), d)
    };
    // Sanity: both policies decide (the examples' window may refuse at
    // night or at the weekend, which is still a decision).
    assert!(decision(&built_in).0.refusal.is_none());
    let _ = decision(&examples);

    let key = DeviceKey::generate();
    let token = key.sign_compact(br#"{"alg":"ES256"}"#, br#"{"sub":"alice"}"#);
    let (signing_input, sig) = token.rsplit_once('.').unwrap();
    let signing_input = signing_input.as_bytes();
    let sig = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .unwrap()
    };
    let sec1 = key.public_jwk().to_sec1().unwrap().to_vec();

    let mut group = c.benchmark_group("grant decision");
    group
        .throughput(Throughput::Elements(1))
        .measurement_time(Duration::from_secs(8));
    group.bench_function("reference: bare ES256 verify (ring)", |b| {
        b.iter(|| {
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                &sec1,
            )
            .verify(black_box(signing_input), black_box(&sig))
            .unwrap()
        })
    });
    group.bench_function("input document + digest", |b| {
        b.iter(|| digest(&black_box(input(now, &tz)).to_json()))
    });
    group.bench_function("decision, built-in access policy", |b| {
        b.iter(|| decision(black_box(&built_in)))
    });
    group.bench_function("decision, documented examples policy", |b| {
        b.iter(|| decision(black_box(&examples)))
    });
    // What a grant request costs in signatures and decisions together: its
    // DPoP proof's ES256 verification, then the decision.
    group.bench_function("ES256 verify + decision (built-in policy)", |b| {
        b.iter(|| {
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                &sec1,
            )
            .verify(black_box(signing_input), black_box(&sig))
            .unwrap();
            decision(black_box(&built_in))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
