//! The agent's outside inputs: the broker's event stream (SSE), control
//! socket lines, managed and user settings files (TOML, the macOS plist as
//! JSON, Windows `reg query` text), and the loopback sign-in callback.

use agent::broker_client::sse::SseParser;
use agent::config::{self, Source, plist, registry};
use agent::control;
use agent::identity::callback;
use agent::secrets::Secret;

use super::{files_under, text, tokens, workspace};
use crate::Target;

fn sse_target() -> Target {
    let seeds = tokens(&[
        "event: grant-revoked\ndata: {\"type\":\"grant-revoked\",\"grant_id\":\"g\",\"device_id\":\"d\",\"reason\":\"r\"}\nid: 1\n\n",
        ": keep-alive\n\n",
        "event: session-revoked\r\ndata: {\"type\":\"session-revoked\",\"user\":\"alice\",\"reason\":\"r\"}\r\n\r\n",
        "data: a\ndata: b\ndata\nid\nretry: 1000\nevent\n\n",
        "id: \0\nevent: x\rdata: y\r\r",
    ]);
    Target {
        name: "SSE parser (broker_client::sse)",
        weight: 60,
        seeds,
        dict: tokens(&[
            "event:", "data:", "id:", "retry:", ":", "\n\n", "\r\n", "\r",
        ]),
        run: Box::new(|input| {
            // Split the input into chunks where its bytes say, so events
            // straddle reads the way a network delivers them.
            let mut parser = SseParser::new(4096);
            let cut = input.first().map_or(1, |b| usize::from(*b % 17) + 1);
            for chunk in input.chunks(cut) {
                match parser.feed(chunk) {
                    Ok(events) => {
                        for e in events {
                            let _ = serde_json::from_str::<broker::api::Event>(&e.data);
                        }
                    }
                    Err(_) => break,
                }
            }
        }),
        note: None,
    }
}

fn control_target() -> Target {
    let seeds = tokens(&[
        r#"{"request":"status"}"#,
        r#"{"request":"connect","app":"wiki"}"#,
        r#"{"request":"disconnect","app":"wiki"}"#,
        r#"{"request":"export_diagnostics","path":"/tmp/x.zip"}"#,
        r#"{"request":"sign_in_device"}"#,
        r#"{"reply":"ok","data":{"a":[1,2,3]}}"#,
        r#"{"reply":"error","message":"no"}"#,
    ]);
    Target {
        name: "control socket lines (control::parse_request)",
        weight: 60,
        seeds,
        dict: tokens(&[
            "\"request\"",
            "\"reply\"",
            "\"app\"",
            "\"path\"",
            "\"data\"",
        ]),
        run: Box::new(|input| {
            let _ = control::parse_request(input);
            let _ = serde_json::from_slice::<control::Reply>(input);
        }),
        note: None,
    }
}

fn config_target() -> Target {
    let root = workspace();
    let mut seeds = files_under(&root.join("settings/tests/fixtures/config"));
    if let Ok(t) = std::fs::read(root.join("installers/linux/managed.toml")) {
        seeds.push(t);
    }
    seeds.extend(tokens(&[
        "broker_url = \"https://broker.example\"\nautostart = true\n[identity]\nissuer = \"https://idp.example\"\nclient_id = \"agent\"\nacr_values = [\"mfa\"]\nmax_auth_age_secs = 3600\n",
        "[posture]\ninterval_secs = 300\n[tunnel]\nsocks = true\n",
        r#"{"broker_url":"https://b","identity":{"acr_values":["a","b"],"max_auth_age_secs":60},"identity.client_id":"c","PayloadUUID":"x","autostart":true}"#,
        "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Sallyport\r\n    broker_url    REG_SZ    https://b\r\n    autostart    REG_DWORD    0x1\r\n\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Sallyport\\identity\r\n    acr_values    REG_MULTI_SZ    a\\0b\r\n    max_auth_age_secs    REG_QWORD    0xffffffffffffffff\r\n",
    ]));
    Target {
        name: "settings files (config: TOML, plist, reg query)",
        weight: 40,
        seeds,
        dict: tokens(&[
            "REG_SZ",
            "REG_EXPAND_SZ",
            "REG_DWORD",
            "REG_QWORD",
            "REG_MULTI_SZ",
            "REG_BINARY",
            "0x",
            "0xffffffffffffffff",
            "HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Sallyport",
            "\\identity",
            "    ",
            "[identity]",
            "[[x]]",
            "broker_url",
            "identity.acr_values",
            "max_auth_age_secs",
            "autostart",
            "\"\"\"",
            "'''",
            "1979-05-27T07:32:00Z",
            "inf",
            "nan",
        ]),
        run: Box::new(|input| {
            let text = text(input);
            let toml = Source::from_toml("fuzz.toml", &text).ok();
            let plist = plist::parse_plist_json(&text).ok().map(|table| Source {
                name: "plist".into(),
                table,
            });
            let reg = registry::parse_reg_query(&text).ok().map(|table| Source {
                name: "reg".into(),
                table,
            });
            for managed in [&toml, &plist, &reg] {
                let _ = config::merge(toml.as_ref(), managed.as_ref());
            }
        }),
        note: None,
    }
}

fn callback_target() -> Target {
    let seeds = tokens(&[
        "GET /callback?code=abc&state=s3cr3t&iss=https%3A%2F%2Fidp.example HTTP/1.1",
        "GET /callback?error=access_denied&error_description=no%20way&state=s3cr3t HTTP/1.1",
        "GET /callback?state=other&code=x HTTP/1.1",
        "GET /favicon.ico HTTP/1.1",
        "POST /callback HTTP/1.1",
    ]);
    let state = Secret::new("s3cr3t".into());
    Target {
        name: "sign-in callback (identity::callback::decide)",
        weight: 40,
        seeds,
        dict: tokens(&[
            "?", "&", "=", "%", "%2", "%zz", "+", "#", "code=", "state=", "iss=", "error=",
        ]),
        run: Box::new(move |input| {
            let line = text(input);
            for require_iss in [false, true] {
                let d = callback::decide(
                    &line,
                    "/callback",
                    &state,
                    "https://idp.example",
                    require_iss,
                );
                let _ = callback::response_for(&d);
            }
        }),
        note: None,
    }
}

fn step_up_target() -> Target {
    let seeds = tokens(&[
        r#"Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="urn:a urn:b", max_age=5"#,
        r#"DPoP algs="ES256", error="insufficient_user_authentication", acr_values="mfa""#,
        r#"Bearer realm="x", error="invalid_token""#,
    ]);
    Target {
        name: "WWW-Authenticate step-up (session::parse_step_up)",
        weight: 40,
        seeds,
        dict: tokens(&[
            "\\",
            "\"",
            "=",
            ",",
            "max_age=",
            "acr_values=",
            "error=",
            "Bearer ",
            "DPoP ",
        ]),
        run: Box::new(|input| {
            let _ = agent::identity::session::parse_step_up(&text(input));
        }),
        note: None,
    }
}

pub(super) fn targets() -> Vec<Target> {
    vec![
        sse_target(),
        control_target(),
        config_target(),
        callback_target(),
        step_up_target(),
    ]
}
