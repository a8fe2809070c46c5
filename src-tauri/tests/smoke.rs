//! Smoke test: the real app, built as it ships (ui/dist embedded), starts
//! under Xvfb with a private D-Bus session, shows its window, and a
//! screenshot is kept under `target/ui-smoke/` (CI keeps it as an artifact).
//! With no agent running, the window must say so (the screenshot shows it).
//! It also checks the desktop behaviour that needs a real session: a second
//! launch hands over to the first (single instance) and start-at-login is
//! registered with `--minimized`.
//!
//! Skips with the reason when `xvfb-run`, `xdotool` or ImageMagick's
//! `import` is missing, unless `SALLYPORT_REQUIRE_UI_SMOKE=1` (CI sets it),
//! in which case it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)] // test: failures abort with the reason

use std::path::{Path, PathBuf};
use std::process::Command;

const APP: &str = env!("CARGO_BIN_EXE_sallyport-app");

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `<target>/ui-smoke`, next to the `debug/` folder holding the binary.
fn out_dir() -> PathBuf {
    let target = Path::new(APP)
        .parent()
        .and_then(Path::parent)
        .expect("the app binary lives in <target>/<profile>/");
    target.join("ui-smoke")
}

// Runs inside xvfb-run: start the app, wait for its window, screenshot it,
// launch a second instance (which must hand over and exit), then stop.
const SCRIPT: &str = r#"
set -u
"$APP" >"$OUT/app.log" 2>&1 &
pid=$!
win=""
for _ in $(seq 1 120); do
  win=$(xdotool search --name '^Sallyport$' 2>/dev/null | head -n 1)
  [ -n "$win" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "app exited early"; exit 3; }
  sleep 0.25
done
[ -n "$win" ] || { echo "no window named Sallyport"; kill "$pid"; exit 4; }
echo "window=$win"
xdotool getwindowgeometry "$win"
# Let the page ask the (absent) agent and render its answer.
sleep 4
import -window root "$OUT/screenshot.png"
import -window "$win" "$OUT/window.png"
xwininfo -root -tree > "$OUT/windows.txt" 2>&1 || true
# A second launch must exit at once and leave the first running.
timeout 20 "$APP" >"$OUT/second.log" 2>&1
echo "second=$?"
kill -0 "$pid" 2>/dev/null && echo "first=alive"
kill "$pid"
wait "$pid" 2>/dev/null
exit 0
"#;

#[test]
fn app_starts_under_xvfb_shows_its_window_and_is_screenshotted() {
    let missing: Vec<&str> = ["xvfb-run", "xdotool", "import", "identify"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        let reason = format!(
            "UI smoke test needs {} (apt-get install xvfb xauth xdotool imagemagick x11-utils)",
            missing.join(", ")
        );
        if std::env::var_os("SALLYPORT_REQUIRE_UI_SMOKE").is_some() {
            panic!("{reason}, and SALLYPORT_REQUIRE_UI_SMOKE is set");
        }
        support::prereq::missing(&reason);
        return;
    }

    let out = out_dir();
    std::fs::create_dir_all(&out).unwrap();
    for stale in ["screenshot.png", "window.png"] {
        let _ = std::fs::remove_file(out.join(stale));
    }
    // A throwaway home: the autostart entry, config and the (absent)
    // agent socket live there, not in the real user's.
    let home = tempfile::tempdir().unwrap();
    let runtime = home.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();

    let mut command = if have("dbus-run-session") {
        let mut c = Command::new("dbus-run-session");
        c.args(["--", "xvfb-run"]);
        c
    } else {
        Command::new("xvfb-run")
    };
    let output = command
        .args(["-a", "-s", "-screen 0 1280x800x24", "bash", "-c", SCRIPT])
        .env("APP", APP)
        .env("OUT", &out)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join(".config"))
        .env("XDG_DATA_HOME", home.path().join(".local/share"))
        .env("XDG_CACHE_HOME", home.path().join(".cache"))
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let log = std::fs::read_to_string(out.join("app.log")).unwrap_or_default();
    let context = format!(
        "stdout:\n{stdout}\nstderr:\n{}\napp log:\n{log}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "xvfb run failed\n{context}");
    assert!(stdout.contains("window="), "no window found\n{context}");
    assert!(
        stdout.contains("Geometry: 980x720"),
        "window has the configured size\n{context}"
    );

    // The screenshots exist, are PNGs, and the window is not blank: a
    // rendered page has many colours (text antialiasing), an empty or
    // failed webview has one or two.
    for name in ["screenshot.png", "window.png"] {
        let bytes = std::fs::read(out.join(name)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{name} is not a PNG");
        assert!(bytes.len() > 5_000, "{name} is suspiciously small");
    }
    let colours = Command::new("identify")
        .args(["-format", "%k"])
        .arg(out.join("window.png"))
        .output()
        .unwrap();
    let colours: u32 = String::from_utf8_lossy(&colours.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        colours > 50,
        "the window looks blank ({colours} colours)\n{context}"
    );

    // Single instance: the second launch handed over and exited cleanly
    // while the first kept running.
    assert!(stdout.contains("second=0"), "second launch\n{context}");
    assert!(stdout.contains("first=alive"), "first instance\n{context}");

    // Start at login: registered (default settings ask for it) and
    // starting in the tray.
    let entry = std::fs::read_dir(home.path().join(".config/autostart"))
        .unwrap_or_else(|e| panic!("no autostart folder ({e})\n{context}"))
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "desktop"))
        .unwrap_or_else(|| panic!("no autostart entry\n{context}"));
    let entry = std::fs::read_to_string(entry.path()).unwrap();
    assert!(
        entry.contains("--minimized") && entry.contains(APP),
        "autostart entry: {entry}"
    );
    eprintln!("screenshot: {}", out.join("screenshot.png").display());
}
