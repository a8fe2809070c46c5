//! The access policy's input document (`input.*` in `sallyport.access`),
//! built from typed parts (pure), and its digest for the audit trail.

use std::collections::BTreeMap;

use serde::Serialize;

/// Everything the access policy may weigh, for one user, device, app and moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessInput {
    /// Who asks.
    pub user: UserFacts,
    /// From which device, in which state.
    pub device: DeviceState,
    /// For what.
    pub app: AppFacts,
    /// How and when the user signed in.
    pub sign_in: SignInFacts,
    /// When and from where.
    pub context: Context,
}

/// `input.user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserFacts {
    /// The token's `sub`.
    pub sub: String,
    /// The token's `email`, when it carries one.
    pub email: Option<String>,
    /// The groups claim (`[access] groups_claim`), empty when absent.
    pub groups: Vec<String>,
}

/// `input.device`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceState {
    /// Device id (JWK thumbprint).
    pub id: String,
    /// The latest verdict's outcome.
    pub compliant: bool,
    /// The check ids the verdict found failing.
    pub violations: Vec<String>,
    /// Which store holds the device key (`tpm`, `software`, ...), as attested.
    pub key_assurance: Option<String>,
    /// The attested platform (`linux`, `windows`, `macos`).
    pub platform: Option<String>,
    /// Each measured check's status (`pass` | `fail` | `unknown`).
    pub checks: BTreeMap<String, String>,
    /// Unix seconds.
    pub enrolled_at: i64,
}

/// `input.app`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppFacts {
    /// Catalogue id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Administrator's labels.
    pub labels: BTreeMap<String, String>,
    /// Owners.
    pub owners: Vec<String>,
}

/// `input.sign_in`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignInFacts {
    /// RFC 8176 methods.
    pub amr: Vec<String>,
    /// Authentication context class.
    pub acr: Option<String>,
    /// Unix seconds of the sign-in, when the token says.
    pub auth_time: Option<i64>,
    /// Whether the sign-in shows a second factor by the broker's `[oidc]` rules.
    pub mfa: bool,
    /// Seconds since the sign-in (`now - auth_time`), when known.
    pub mfa_age_seconds: Option<i64>,
    /// The `acr` values this broker counts as MFA (`oidc.required_acr`), for
    /// a step-up's `acr_values`.
    pub mfa_acr_values: Vec<String>,
}

/// `input.context`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Context {
    /// The broker's clock in the organisation's time zone.
    pub time: LocalTime,
    /// The caller's address as the broker sees it (after trusted proxies).
    pub source_ip: Option<String>,
    /// Names of the configured networks that hold `source_ip`.
    pub networks: Vec<String>,
    /// Behavioural signals kept per user.
    pub signals: Signals,
}

/// `input.context.time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalTime {
    /// Unix seconds.
    pub unix: i64,
    /// IANA zone name.
    pub zone: String,
    /// RFC 3339 with the zone's offset.
    pub local: String,
    /// `YYYY-MM-DD`, local.
    pub date: String,
    /// `mon` .. `sun`.
    pub weekday: String,
    /// 0..=23.
    pub hour: i8,
    /// 0..=59.
    pub minute: i8,
    /// Seconds since local midnight.
    pub seconds_of_day: i32,
}

/// `input.context.signals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Signals {
    /// This user never opened an application from this network soon after a
    /// multi-factor sign-in (`[access] known_network_mfa_seconds`).
    pub new_network: bool,
    /// The device was enrolled less than `[access] new_device_seconds` ago.
    pub new_device: bool,
    /// Grants denied to this user within `[access] denials_window_seconds`.
    pub recent_denials: u32,
    /// `recent_denials` reached `[access] denials_threshold`.
    pub denial_burst: bool,
}

impl AccessInput {
    /// The document as JSON (object keys sorted: serde_json's map is ordered).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// SHA-256 (hex) of the canonical JSON of `input`: the same input always
/// gives the same digest, so an auditor can tie a decision to what it was
/// made on (the broker does not keep the input itself in the audit row).
pub fn digest(input: &serde_json::Value) -> String {
    let text = serde_json::to_vec(input).unwrap_or_default();
    crate::server::config::to_hex(ring::digest::digest(&ring::digest::SHA256, &text).as_ref())
}

/// The weekday's three-letter name, as policies and windows spell it.
pub fn weekday_name(day: jiff::civil::Weekday) -> &'static str {
    use jiff::civil::Weekday::*;
    match day {
        Monday => "mon",
        Tuesday => "tue",
        Wednesday => "wed",
        Thursday => "thu",
        Friday => "fri",
        Saturday => "sat",
        Sunday => "sun",
    }
}

/// `input.context.time` for `now` in `tz`.
pub fn local_time(now: i64, tz: &jiff::tz::TimeZone) -> LocalTime {
    let ts = jiff::Timestamp::from_second(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let z = ts.to_zoned(tz.clone());
    LocalTime {
        unix: now,
        zone: tz.iana_name().unwrap_or("UTC").to_owned(),
        local: z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        date: z.date().to_string(),
        weekday: weekday_name(z.weekday()).to_owned(),
        hour: z.hour(),
        minute: z.minute(),
        seconds_of_day: i32::from(z.hour()) * 3600
            + i32::from(z.minute()) * 60
            + i32::from(z.second()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_follows_the_zone_and_dst() {
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        // 2026-07-01T08:42:00Z is 10:42 in Paris (CEST, +02:00).
        let t = local_time(1_782_895_320, &paris);
        assert_eq!((t.hour, t.minute), (10, 42), "{t:?}");
        assert_eq!(t.local, "2026-07-01T10:42:00+02:00");
        assert_eq!(t.weekday, "wed");
        assert_eq!(t.seconds_of_day, 10 * 3600 + 42 * 60);
        // 2026-12-03T09:42:00Z is 10:42 in Paris (CET, +01:00).
        let w = local_time(1_796_290_920, &paris);
        assert_eq!((w.hour, w.minute, w.weekday.as_str()), (10, 42, "thu"));
        assert!(w.local.ends_with("+01:00"), "{}", w.local);
    }

    #[test]
    fn the_digest_is_stable_and_sensitive() {
        let a = serde_json::json!({"b": 1, "a": [1, 2]});
        let b: serde_json::Value = serde_json::from_str(r#"{"a":[1,2],"b":1}"#).unwrap();
        assert_eq!(digest(&a), digest(&b), "key order does not matter");
        assert_ne!(
            digest(&a),
            digest(&serde_json::json!({"b": 2, "a": [1, 2]}))
        );
        assert_eq!(digest(&a).len(), 64);
    }
}
