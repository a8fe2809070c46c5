//! The network-change trigger on a real network: the agent's own prober
//! (`triggers::probe`, sysinfo's interface list) and watcher run in a child
//! process inside a network namespace this test creates, and the test
//! changes that namespace's network from outside with `ip`:
//! traffic alone must not count (packet counters change all the time), a new
//! interface and a new address on an existing one must.
//!
//! The child is this test binary re-run inside the namespace
//! (`ip netns exec … <this binary> --exact network_watch_inner --ignored`);
//! it talks to the test over its stdout, one line per step. Needs root and
//! `ip`; skips with the reason otherwise, unless
//! `SALLYPORT_REQUIRE_NETNS_TEST=1` (CI sets it), in which case it fails.

#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code: a failed step should stop the test loudly"
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agent::triggers::probe::Prober;
use agent::triggers::{Trigger, Watcher};

/// Set in the child that watches the namespace's network.
const INNER_ENV: &str = "SALLYPORT_TEST_NETWORK_WATCH_INNER";
/// How long the child polls with only traffic going on.
const QUIET_FOR: Duration = Duration::from_secs(3);
/// Between two snapshots (the runtime uses 5 s; faster here).
const POLL: Duration = Duration::from_millis(200);
/// The longest the child waits for a change it was promised.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Polls until a trigger shows up, sending loopback traffic in between so
/// that counters keep changing. Returns the triggers, or none after `limit`.
fn watch(prober: &Prober, watcher: &mut Watcher, limit: Duration) -> Vec<Trigger> {
    let noise = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        for _ in 0..20 {
            noise
                .send_to(&[0u8; 512], sink.local_addr().unwrap())
                .unwrap();
        }
        std::thread::sleep(POLL);
        let triggers = watcher.observe(prober.snapshot());
        if !triggers.is_empty() {
            return triggers;
        }
    }
    Vec::new()
}

/// The child: reports each step on stdout; waits for the test's go-ahead
/// (a line on stdin) before each change it expects.
#[test]
#[ignore = "run by network_changes_in_a_namespace_are_seen_and_traffic_is_not inside its namespace"]
fn network_watch_inner() {
    if std::env::var_os(INNER_ENV).is_none() {
        return;
    }
    let prober = Prober::new(Vec::new());
    let mut watcher = Watcher::default();
    assert!(watcher.observe(prober.snapshot()).is_empty());
    let quiet = watch(&prober, &mut watcher, QUIET_FOR);
    say(&format!("QUIET {quiet:?}"));
    let mut go = String::new();
    for step in ["interface", "address"] {
        say(&format!("READY {step}"));
        go.clear();
        std::io::stdin().lock().read_line(&mut go).unwrap();
        let seen = watch(&prober, &mut watcher, CHANGE_TIMEOUT);
        say(&format!("SEEN {step} {seen:?}"));
        // Nothing more may follow on its own, so the next step's trigger
        // can only come from the next change.
        let after = watch(&prober, &mut watcher, QUIET_FOR);
        say(&format!("SETTLED {step} {after:?}"));
    }
}

/// A namespace of our own with loopback up, removed on drop.
struct Netns(String);

impl Netns {
    fn create() -> Result<Netns, String> {
        let name = format!("sp-trig-{}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("cannot run ip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`ip netns add` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        Ok(ns)
    }

    /// `ip -n <ns> <args>`, which must succeed.
    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip -n {} {args:?}: {}",
            self.0,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn skip_or_fail(reason: &str) {
    assert!(
        std::env::var_os("SALLYPORT_REQUIRE_NETNS_TEST").is_none(),
        "SALLYPORT_REQUIRE_NETNS_TEST is set but {reason}"
    );
    support::prereq::missing(reason);
}

#[test]
fn network_changes_in_a_namespace_are_seen_and_traffic_is_not() {
    // Only root may create namespaces here.
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|v| v.split_whitespace().next().map(str::to_owned))
        })
        .flatten()
        .unwrap_or_default();
    if uid != "0" {
        skip_or_fail("needs root to create a network namespace");
        return;
    }
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(reason) => {
            skip_or_fail(&reason);
            return;
        }
    };

    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "network_watch_inner", "--ignored", "--nocapture"])
        .env(INNER_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let from_child = BufReader::new(child.stdout.take().unwrap());
    let _child = Killed(child);
    // Read the child's lines on a thread so every wait has a deadline.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in from_child.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let expect = |prefix: &str| -> String {
        let deadline = Instant::now() + 2 * QUIET_FOR + CHANGE_TIMEOUT + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {} // libtest's own lines
                Err(e) => panic!("no {prefix:?} line from the child: {e}"),
            }
        }
    };

    // Traffic over loopback changes counters, not the network.
    assert_eq!(
        expect("QUIET"),
        "QUIET []",
        "traffic alone must not trigger"
    );

    // A new interface (a VPN coming up, a dock plugged in).
    expect("READY interface");
    // A veth pair (this kernel has no `dummy`), both ends in the namespace,
    // without IPv6 link-local addresses, which would arrive on their own
    // a moment later.
    ns.ip(&[
        "link", "add", "sp-veth0", "type", "veth", "peer", "name", "sp-veth1",
    ]);
    for end in ["sp-veth0", "sp-veth1"] {
        ns.ip(&["link", "set", end, "addrgenmode", "none"]);
        ns.ip(&["link", "set", end, "up"]);
    }
    writeln!(to_child, "go").unwrap();
    assert_eq!(expect("SEEN interface"), "SEEN interface [NetworkChanged]");
    assert_eq!(expect("SETTLED interface"), "SETTLED interface []");

    // A new address on an interface that was already there (DHCP lease on
    // another network).
    expect("READY address");
    ns.ip(&["addr", "add", "10.77.0.1/24", "dev", "sp-veth0"]);
    writeln!(to_child, "go").unwrap();
    assert_eq!(expect("SEEN address"), "SEEN address [NetworkChanged]");
    assert_eq!(expect("SETTLED address"), "SETTLED address []");
}
