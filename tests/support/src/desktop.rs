//! A private desktop session for the tray app's tests and benchmark: an
//! Xvfb display and a private D-Bus session bus, both ended with the value.
//!
//! The bus serves no activatable services (its own configuration, no
//! service directories), so nothing starts a Secret Service or an
//! accessibility bus behind the test's back: the app's agent keeps its
//! tokens in the kernel keyring, as on a headless machine.
//!
//! What a person does to the app goes through the same channels a desktop
//! uses: [`Desktop::close`] sends the window the `WM_DELETE_WINDOW` request
//! a window manager sends for its close button, and [`TrayMenu`] reads and
//! clicks the tray menu over D-Bus (`com.canonical.dbusmenu`, which the
//! app's StatusNotifierItem exports on the session bus whether or not a
//! tray host shows it), as a panel's tray does.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{
    AtomEnum, ClientMessageEvent, ConnectionExt as _, EventMask, MapState, Window,
};
use x11rb::rust_connection::RustConnection;

use crate::keyring::Killed;
use crate::prereq;

/// A bus configuration with nothing to activate.
const BUS_CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#;

/// The programs a desktop session needs.
pub const PROGRAMS: &[&str] = &["Xvfb", "dbus-daemon", "gdbus"];

/// A running private display and session bus.
#[derive(Debug)]
pub struct Desktop {
    /// `DISPLAY`, e.g. `:7`.
    pub display: String,
    /// `DBUS_SESSION_BUS_ADDRESS`.
    pub bus: String,
    x: RustConnection,
    _bus: Killed,
    _xvfb: Killed,
    _dir: tempfile::TempDir,
}

impl Desktop {
    /// Starts one (1280×800, 24-bit), or returns `None` where a program is
    /// missing (a failure instead where prerequisites are required).
    pub fn start() -> Option<Desktop> {
        for program in PROGRAMS {
            if !prereq::have(program) {
                prereq::missing(&format!(
                    "{program} is not installed (apt-get install xvfb dbus-daemon libglib2.0-bin)"
                ));
                return None;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let mut xvfb = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1280x800x24"])
            .args(["-nolisten", "tcp", "-noreset"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(xvfb.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let xvfb = Killed(xvfb);
        let display = format!(":{}", line.trim());
        assert!(line.trim().parse::<u32>().is_ok(), "Xvfb said {line:?}");

        let config = dir.path().join("bus.conf");
        std::fs::write(&config, BUS_CONFIG).unwrap();
        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--print-address=1", "--nofork"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let bus_child = Killed(bus);
        let address = line.trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus address {address:?}");

        let (x, _) = x11rb::connect(Some(&display)).unwrap();
        Some(Desktop {
            display,
            bus: address,
            x,
            _bus: bus_child,
            _xvfb: xvfb,
            _dir: dir,
        })
    }

    /// `program` with this session's `DISPLAY` and bus, and nothing of the
    /// caller's own session (Wayland, X authority).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env("DISPLAY", &self.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("GDK_BACKEND", "x11")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("XAUTHORITY");
        command
    }

    /// The top-level windows on screen (mapped) titled `title`.
    pub fn windows(&self, title: &str) -> Vec<Window> {
        let root = self.x.setup().roots[0].root;
        let Ok(tree) = self.x.query_tree(root).map(|c| c.reply()) else {
            return vec![];
        };
        let Ok(tree) = tree else { return vec![] };
        tree.children
            .into_iter()
            .filter(|w| {
                self.x
                    .get_window_attributes(*w)
                    .ok()
                    .and_then(|c| c.reply().ok())
                    .is_some_and(|a| a.map_state == MapState::VIEWABLE)
            })
            .filter(|w| self.title(*w).as_deref() == Some(title))
            .collect()
    }

    fn atom(&self, name: &str) -> u32 {
        self.x
            .intern_atom(false, name.as_bytes())
            .unwrap()
            .reply()
            .unwrap()
            .atom
    }

    /// `_NET_WM_NAME`, else `WM_NAME`.
    pub fn title(&self, window: Window) -> Option<String> {
        let utf8 = self.atom("UTF8_STRING");
        for (property, kind) in [
            (self.atom("_NET_WM_NAME"), utf8),
            (AtomEnum::WM_NAME.into(), AtomEnum::STRING.into()),
        ] {
            let reply = self
                .x
                .get_property(false, window, property, kind, 0, 1024)
                .ok()?
                .reply()
                .ok()?;
            if !reply.value.is_empty() {
                return Some(String::from_utf8_lossy(&reply.value).into_owned());
            }
        }
        None
    }

    /// The window's size.
    pub fn size(&self, window: Window) -> Option<(u16, u16)> {
        let g = self.x.get_geometry(window).ok()?.reply().ok()?;
        Some((g.width, g.height))
    }

    /// Waits up to `within` for exactly one window titled `title`.
    pub fn wait_window(&self, title: &str, within: Duration) -> Option<Window> {
        let deadline = Instant::now() + within;
        loop {
            if let [one] = self.windows(title)[..] {
                return Some(one);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits up to `within` until no window is titled `title`.
    pub fn wait_no_window(&self, title: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.windows(title).is_empty() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        true
    }

    /// Asks `window` to close, as a window manager does for its close
    /// button (ICCCM `WM_DELETE_WINDOW`). The app decides what closing does.
    pub fn close(&self, window: Window) {
        let protocols = self.atom("WM_PROTOCOLS");
        let delete = self.atom("WM_DELETE_WINDOW");
        let event = ClientMessageEvent::new(
            32,
            window,
            protocols,
            [delete, x11rb::CURRENT_TIME, 0, 0, 0],
        );
        self.x
            .send_event(false, window, EventMask::NO_EVENT, event)
            .unwrap();
        self.x.flush().unwrap();
    }

    /// Screenshot of the whole screen (ImageMagick `import`) into `path`.
    pub fn screenshot(&self, path: &Path) -> bool {
        self.command("import")
            .args(["-window", "root"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The tray menu of the process `pid`, read over D-Bus.
    pub fn tray_menu(&self, pid: u32) -> Result<TrayMenu, String> {
        let names = self.gdbus(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.ListNames",
            &[],
        )?;
        for name in quoted(&names).into_iter().filter(|n| n.starts_with(':')) {
            let owner = self.gdbus(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.GetConnectionUnixProcessID",
                &[&name],
            );
            if !owner.is_ok_and(|o| o.contains(&format!("uint32 {pid},"))) {
                continue;
            }
            let base = "/org/ayatana/NotificationItem";
            let Ok(found) = self.gdbus(
                &name,
                base,
                "org.freedesktop.DBus.Introspectable.Introspect",
                &[],
            ) else {
                continue;
            };
            // `<node name="ITEM"/>` (gdbus may escape the quotes).
            let Some(item) = found.split("<node name=").nth(1).and_then(|rest| {
                rest.trim_start_matches(['\\', '"'])
                    .split(['\\', '"'])
                    .next()
            }) else {
                continue;
            };
            return Ok(TrayMenu {
                bus: self.bus.clone(),
                name,
                path: format!("{base}/{item}/Menu"),
            });
        }
        Err(format!(
            "no StatusNotifierItem of pid {pid} on the session bus"
        ))
    }

    fn gdbus(&self, dest: &str, path: &str, method: &str, args: &[&str]) -> Result<String, String> {
        gdbus(&self.bus, dest, path, method, args)
    }
}

fn gdbus(bus: &str, dest: &str, path: &str, method: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("gdbus")
        .args([
            "call",
            "--address",
            bus,
            "--dest",
            dest,
            "--object-path",
            path,
        ])
        .args(["--method", method, "--timeout", "10", "--"])
        .args(args)
        .output()
        .map_err(|e| format!("gdbus: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The single-quoted strings of a `gdbus` answer.
fn quoted(text: &str) -> Vec<String> {
    text.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// An app's tray menu as the tray host sees it (`com.canonical.dbusmenu`).
#[derive(Debug, Clone)]
pub struct TrayMenu {
    bus: String,
    name: String,
    path: String,
}

impl TrayMenu {
    /// Every entry's label and id, top level and submenus (`GetLayout`).
    pub fn entries(&self) -> Result<BTreeMap<String, i32>, String> {
        let layout = gdbus(
            &self.bus,
            &self.name,
            &self.path,
            "com.canonical.dbusmenu.GetLayout",
            &["0", "-1", "[]"],
        )?;
        // Entries read `<(ID, {... 'label': <'TEXT'> ...}, [...])>`.
        let mut entries = BTreeMap::new();
        for part in layout.split("<(").skip(1) {
            let Some((id, rest)) = part.split_once(", {") else {
                continue;
            };
            let Ok(id) = id.trim().parse::<i32>() else {
                continue;
            };
            let props = rest.split("}, [").next().unwrap_or_default();
            if let Some(label) = props
                .split_once("'label': <'")
                .and_then(|(_, l)| l.split_once("'>"))
                .map(|(l, _)| l.replace('_', ""))
            {
                entries.insert(label, id);
            }
        }
        if entries.is_empty() {
            return Err(format!("no entries in the tray menu: {layout}"));
        }
        Ok(entries)
    }

    /// Clicks the entry labelled `label`, as the tray host does.
    pub fn click(&self, label: &str) -> Result<(), String> {
        let entries = self.entries()?;
        let id = entries
            .get(label)
            .ok_or_else(|| format!("no tray menu entry {label:?} in {entries:?}"))?;
        gdbus(
            &self.bus,
            &self.name,
            &self.path,
            "com.canonical.dbusmenu.Event",
            &[&id.to_string(), "clicked", "<0>", "0"],
        )
        .map(drop)
    }
}

/// One process of a tree, from `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// Its pid.
    pub pid: u32,
    /// Its parent's.
    pub parent: u32,
    /// `comm` (at most 15 bytes: `WebKitWebProces`).
    pub name: String,
    /// `utime + stime`, clock ticks.
    pub ticks: u64,
    /// `cutime + cstime` (children it reaped), clock ticks.
    pub child_ticks: u64,
}

/// Every live process, from `/proc/PID/stat`.
pub fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_owned();
            // Fields from 3 on (man 5 proc): fields[n - 3] is field n.
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
            Some(Proc {
                pid,
                parent: u32::try_from(num(4)?).ok()?,
                name,
                ticks: num(14)? + num(15)?,
                child_ticks: num(16)? + num(17)?,
            })
        })
        .collect()
}

/// `root` and all its descendants (empty when `root` is gone).
pub fn tree(root: u32) -> Vec<Proc> {
    let all = processes();
    let mut out: Vec<Proc> = all.iter().filter(|p| p.pid == root).cloned().collect();
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].pid;
        out.extend(all.iter().filter(|p| p.parent == parent).cloned());
        i += 1;
    }
    out
}

/// The WebKit processes under `root`.
pub fn webkit(root: u32) -> Vec<Proc> {
    tree(root)
        .into_iter()
        .filter(|p| p.name.starts_with("WebKit"))
        .collect()
}

/// Proportional set size of `pid` in KiB (`/proc/PID/smaps_rollup`).
pub fn pss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
