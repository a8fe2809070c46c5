//! Opening the system browser (RFC 8252: never an embedded web view).
//!
//! `SALLYPORT_BROWSER` names a program to run with the URL instead (for
//! kiosk setups and end-to-end tests); otherwise the platform's default
//! handler: `xdg-open` on Linux, `open` on macOS, the URL protocol handler
//! on Windows (not `cmd /c start`, which mangles `&` in URLs).

use std::process::{Command, Stdio};

use url::Url;

/// Opens `url` in the user's browser.
pub fn open(url: &Url) -> Result<(), String> {
    let target = url.as_str();
    let mut command = match std::env::var_os("SALLYPORT_BROWSER") {
        Some(program) if !program.is_empty() => Command::new(program),
        _ => platform_command(),
    };
    command
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Do not wait: xdg-open may block until the browser exits.
    let mut child = command
        .spawn()
        .map_err(|err| format!("{:?}: {err}", command.get_program()))?;
    // Reap it in the background so no zombie is left behind.
    std::thread::spawn(move || child.wait());
    Ok(())
}

#[cfg(target_os = "windows")]
fn platform_command() -> Command {
    let mut command = Command::new("rundll32.exe");
    command.arg("url.dll,FileProtocolHandler");
    command
}

#[cfg(target_os = "macos")]
fn platform_command() -> Command {
    Command::new("open")
}

#[cfg(not(any(target_os = "windows", target_os = "macos")))]
fn platform_command() -> Command {
    Command::new("xdg-open")
}
