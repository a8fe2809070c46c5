//! Idle resources of the agent: the real `sallyport run` process with three
//! tunnels open and no traffic, sampled for 5 minutes (issue 6; goals under
//! 0.5 % of one core and under 40 MB resident).
//!
//! ```text
//! scripts/bench-idle                          # builds the binaries, runs 300 s
//! SALLYPORT_IDLE_SECS=30 scripts/bench-idle   # quick look
//! ```
//!
//! `scripts/bench-idle` builds `sallyport` and `sallyport-broker` (release),
//! then runs `cargo bench -p sallyport-e2e --bench idle`. The bench finds
//! them next to its own binary (`target/release/`), or at `SALLYPORT_BIN` /
//! `SALLYPORT_BROKER_BIN`.
//!
//! What runs, each a process of its own:
//! - the npm `oidc-provider` test IdP (node);
//! - `sallyport-broker --config FILE`: the reference broker and its gateway,
//!   catalogue `app1`..`app3` (TCP echo targets in this process), the lenient
//!   test policy (the OS must be identified), shipped verdict and grant
//!   lifetimes (900 s, 3600 s);
//! - `keyctl session - sallyport run --broker URL --socket PATH`: the agent
//!   as shipped (default timing: posture every 60 s, all checks, posture
//!   cache under a private `XDG_CACHE_HOME`). It keeps its tokens in the
//!   kernel keyring (keyutils), in a private session keyring that `keyctl
//!   session -` creates, so no other keyring is touched. `keyctl` execs the
//!   agent, so the child's pid is the agent's.
//!
//! The bench signs the agent in through its control socket with a device
//! code (`sign_in_device`, as the tray app does on a headless machine). It
//! plays the user in the IdP (password + TOTP), then runs `sallyport connect
//! appN` three times. It waits until the agent reports three tunnels up and
//! an echo flows through each, waits 2 s more, then samples once a second
//! for `SALLYPORT_IDLE_SECS` (default 300):
//! - CPU: `utime + stime` from `/proc/PID/stat`, its change over the window
//!   as a percentage of one core. `cutime + cstime` (the posture commands
//!   the agent ran and reaped) are shown separately.
//! - Memory: `VmRSS` at the end and its maximum over the window, and `VmHWM`
//!   (peak since the process started) from `/proc/PID/status`.
//!
//! Nothing touches the agent during the window. After it, the bench checks
//! that three tunnels are up and carry an echo, and exits non-zero if not.
//! It also prints the agent's own decisions from the window. The test IdP's
//! access tokens live 300 s and a grant ends with its token, so a 5-minute
//! window holds one session refresh, re-attestation and a renewal of each
//! grant: each tunnel is replaced once. The window measures that routine
//! work too, not only the sleeping in between.
//!
//! **References**, sampled the same way over the same window: the broker
//! process, which serves the other end of the same three tunnels plus the
//! agent's API calls and event stream, and an idle `sleep` as the floor.
//! The agent's figures are also given as ratios to the broker's.

// A bench binary: it prints its table, and a setup failure must abort loudly.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::process::ExitCode;

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // a 5-minute measurement has no place in a test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("idle: a benchmark; run it with scripts/bench-idle");
        return ExitCode::SUCCESS;
    }
    #[cfg(target_os = "linux")]
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        match rt.block_on(linux::bench()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("idle: cannot measure: {e}");
                ExitCode::FAILURE
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        eprintln!("idle: reads /proc; Linux only");
        ExitCode::FAILURE
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant, SystemTime};

    use agent::control::view::{DeviceCodeView, StatusView, TunnelState};
    use agent::control::{Reply, Request};
    use support::broker::{BrokerConfig, LENIENT};
    use support::echo::{echo_through, tcp_echo};
    use support::{free_port, idp};

    const APPS: [&str; 3] = ["app1", "app2", "app3"];
    const CPU_GOAL_PERCENT: f64 = 0.5;
    const RSS_GOAL_MB: f64 = 40.0;

    /// A child process killed (by its pid) when dropped.
    struct Proc {
        name: &'static str,
        child: Child,
    }

    impl Proc {
        fn pid(&self) -> u32 {
            self.child.id()
        }

        /// Sends `signal` to this process only, then waits up to 10 s.
        fn stop(&mut self, signal: &str) {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &self.pid().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }

        fn exited(&mut self) -> Option<String> {
            match self.child.try_wait() {
                Ok(Some(status)) => Some(format!("{} exited: {status}", self.name)),
                _ => None,
            }
        }
    }

    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// One reading of a process's counters.
    #[derive(Debug, Clone, Copy)]
    struct Reading {
        at: Instant,
        /// utime + stime, clock ticks.
        own_ticks: u64,
        /// cutime + cstime (reaped children), clock ticks.
        child_ticks: u64,
        rss_kb: u64,
        hwm_kb: u64,
    }

    fn read(pid: u32) -> Result<Reading, String> {
        let at = Instant::now();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
        // Fields after the command name (which may hold spaces), from field 3.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or("malformed /proc/PID/stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> Result<u64, String> {
            // Field n (1-based, man 5 proc) is fields[n - 3].
            fields
                .get(n - 3)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("/proc/{pid}/stat: no field {n}"))
        };
        let own_ticks = field(14)? + field(15)?;
        let child_ticks = field(16)? + field(17)?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        let kb = |key: &str| -> Result<u64, String> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("/proc/{pid}/status: no {key}"))
        };
        Ok(Reading {
            at,
            own_ticks,
            child_ticks,
            rss_kb: kb("VmRSS:")?,
            hwm_kb: kb("VmHWM:")?,
        })
    }

    /// What the window showed for one process.
    struct Usage {
        name: String,
        cpu_percent: f64,
        child_cpu_percent: f64,
        rss_end_mb: f64,
        rss_max_mb: f64,
        hwm_mb: f64,
    }

    fn usage(name: &str, readings: &[Reading], ticks_per_second: f64) -> Usage {
        let (first, last) = (readings[0], readings[readings.len() - 1]);
        let secs = last.at.duration_since(first.at).as_secs_f64();
        let percent = |ticks: u64| ticks as f64 / ticks_per_second / secs * 100.0;
        Usage {
            name: name.to_owned(),
            cpu_percent: percent(last.own_ticks - first.own_ticks),
            child_cpu_percent: percent(last.child_ticks - first.child_ticks),
            rss_end_mb: last.rss_kb as f64 / 1024.0,
            rss_max_mb: readings.iter().map(|r| r.rss_kb).max().unwrap_or(0) as f64 / 1024.0,
            hwm_mb: last.hwm_kb as f64 / 1024.0,
        }
    }

    fn binary(env: &str, name: &str) -> Result<PathBuf, String> {
        let path = match std::env::var_os(env) {
            Some(p) => PathBuf::from(p),
            None => {
                // target/<profile>/deps/idle-HASH -> target/<profile>/NAME
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                exe.parent()
                    .and_then(Path::parent)
                    .map(|dir| dir.join(name))
                    .ok_or("cannot locate the target directory")?
            }
        };
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{} is missing: build it first (scripts/bench-idle does: cargo build --release -p sallyport --bin sallyport -p broker --features broker/server --bin sallyport-broker) or set {env}",
                path.display()
            ))
        }
    }

    async fn control(socket: &Path, request: &Request) -> Result<serde_json::Value, String> {
        match agent::control::unix::request(socket, request)
            .await
            .map_err(|e| e.to_string())?
        {
            Reply::Ok { data } => Ok(data),
            Reply::Error { message } => Err(format!("the agent refused {request:?}: {message}")),
        }
    }

    async fn status(socket: &Path) -> Result<StatusView, String> {
        serde_json::from_value(control(socket, &Request::Status).await?).map_err(|e| e.to_string())
    }

    /// The local forward address of every app whose tunnel is up.
    fn up(status: &StatusView) -> Vec<(String, String)> {
        status
            .tunnels
            .iter()
            .filter(|t| t.state == TunnelState::Up)
            .filter_map(|t| t.forwards.first().map(|f| (t.app.clone(), f.local.clone())))
            .collect()
    }

    fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".to_owned())
    }

    fn clock_ticks() -> Result<f64, String> {
        let out = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .map_err(|e| format!("getconf CLK_TCK: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("getconf CLK_TCK: {e}"))
    }

    pub async fn bench() -> Result<(), String> {
        let secs: u64 = match std::env::var("SALLYPORT_IDLE_SECS") {
            Ok(v) => v
                .parse()
                .ok()
                .filter(|s| *s > 0)
                .ok_or("SALLYPORT_IDLE_SECS must be a positive number of seconds")?,
            Err(_) => 300,
        };
        let agent_bin = binary("SALLYPORT_BIN", "sallyport")?;
        let broker_bin = binary("SALLYPORT_BROKER_BIN", "sallyport-broker")?;
        let ticks_per_second = clock_ticks()?;
        let keyctl_ok = Command::new("keyctl")
            .args(["session", "-", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !keyctl_ok {
            return Err(
                "`keyctl session - true` failed: install keyutils (the agent's tokens go to a private session keyring)"
                    .to_owned(),
            );
        }

        let idp = idp::Idp::start(&idp::Options::default())
            .ok_or("the test IdP cannot start (see the SKIP line above)")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut apps = Vec::new();
        for (i, app) in APPS.iter().enumerate() {
            apps.push((
                *app,
                ["Echo one", "Echo two", "Echo three"][i],
                tcp_echo().await,
            ));
        }
        let policy = dir.path().join("policy.rego");
        std::fs::write(&policy, LENIENT).map_err(|e| e.to_string())?;
        let db = dir.path().join("broker.sqlite");
        let http_port = free_port();
        let config = apps
            .iter()
            .fold(
                BrokerConfig::new(&idp.issuer, &db)
                    .policy(&policy)
                    .http_port(http_port)
                    .udp_port(free_port())
                    .verdict_ttl(900)
                    .max_grant(3600),
                |config, (id, name, target)| config.app(id, name, *target),
            )
            .toml();
        let config_path = dir.path().join("broker.toml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log = |name: &str| -> Result<std::fs::File, String> {
            std::fs::File::create(dir.path().join(name)).map_err(|e| e.to_string())
        };
        let mut broker = Proc {
            name: "sallyport-broker",
            child: Command::new(&broker_bin)
                .arg("--config")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log("broker.out")?)
                .stderr(log("broker.log")?)
                .spawn()
                .map_err(|e| format!("{}: {e}", broker_bin.display()))?,
        };
        let broker_url = format!("http://127.0.0.1:{http_port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http
                .get(format!("{broker_url}{}", broker::api::paths::CONFIG))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if let Some(why) = broker.exited() {
                return Err(format!("{why}; see its log in {}", dir.path().display()));
            }
            if Instant::now() > deadline {
                return Err("the broker did not answer within 30 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let socket = dir.path().join("run").join("agent.sock");
        let config_home = dir.path().join("config");
        std::fs::create_dir_all(config_home.join("sallyport")).map_err(|e| e.to_string())?;
        let mut agent = Proc {
            name: "sallyport run",
            child: Command::new("keyctl")
                .args(["session", "-"])
                .arg(&agent_bin)
                .args(["run", "--broker", &broker_url, "--socket"])
                .arg(&socket)
                .env("SALLYPORT_ISSUER", &idp.issuer)
                .env("SALLYPORT_CLIENT_ID", idp::CLIENT_ID)
                .env("SALLYPORT_RESOURCE", idp::BROKER_RESOURCE)
                .env("XDG_CONFIG_HOME", &config_home)
                .env("XDG_CACHE_HOME", dir.path().join("cache"))
                // Kernel keyutils in the private session keyring, never a
                // Secret Service on some session bus.
                .env_remove("DBUS_SESSION_BUS_ADDRESS")
                .env_remove("SALLYPORT_LOG")
                .env_remove("SALLYPORT_BROKER")
                .stdin(Stdio::null())
                .stdout(log("agent.out")?)
                .stderr(log("agent.log")?)
                .spawn()
                .map_err(|e| format!("keyctl session - {}: {e}", agent_bin.display()))?,
        };
        let mut floor = Proc {
            name: "sleep",
            child: Command::new("sleep")
                .arg(format!("{}", secs + 600))
                .stdin(Stdio::null())
                .spawn()
                .map_err(|e| format!("sleep: {e}"))?,
        };

        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            if let Some(why) = agent.exited() {
                return Err(format!(
                    "{why}; see {}",
                    dir.path().join("agent.log").display()
                ));
            }
            if Instant::now() > deadline {
                return Err("the agent's control socket did not appear within 30 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Sign in: a device code from the agent, confirmed by "the user".
        let code: DeviceCodeView =
            serde_json::from_value(control(&socket, &Request::SignInDevice).await?)
                .map_err(|e| e.to_string())?;
        let uri = code
            .verification_uri_complete
            .ok_or("the IdP gave no verification_uri_complete")?;
        idp::complete_device_login(&uri).await;
        for app in APPS {
            let out = Command::new(&agent_bin)
                .args(["--socket"])
                .arg(&socket)
                .args(["connect", app])
                .output()
                .map_err(|e| format!("sallyport connect {app}: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "sallyport connect {app}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let s = status(&socket).await?;
            let tunnels = up(&s);
            let mut flowing = tunnels.len() == APPS.len();
            for (_, local) in &tunnels {
                flowing &= echo_through(local).await.is_ok();
            }
            if flowing {
                break;
            }
            if Instant::now() > deadline {
                let history = control(&socket, &Request::History { since: None }).await?;
                return Err(format!(
                    "three tunnels did not come up within 90 s; status: {s:#?}\nagent decisions: {history:#}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;

        // The window: nothing talks to the agent.
        let load_before = loadavg();
        let window_start = SystemTime::now();
        let procs = [
            ("agent (sallyport run)", agent.pid()),
            ("broker + gateway (reference)", broker.pid()),
            ("sleep (floor)", floor.pid()),
        ];
        let mut readings: Vec<Vec<_>> = vec![Vec::new(); procs.len()];
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        eprintln!(
            "idle: 3 tunnels up; sampling for {secs} s (agent pid {})",
            agent.pid()
        );
        loop {
            tick.tick().await;
            for (i, (_, pid)) in procs.iter().enumerate() {
                readings[i].push(read(*pid)?);
            }
            if let Some(why) = agent.exited().or_else(|| broker.exited()) {
                return Err(format!(
                    "{why} during the window; logs in {}",
                    dir.path().display()
                ));
            }
            if start.elapsed() >= Duration::from_secs(secs) {
                break;
            }
        }
        let load_after = loadavg();
        let window = start.elapsed();
        let window_end = SystemTime::now();

        // After the window: still three tunnels, and they carry traffic.
        let s = status(&socket).await?;
        let tunnels = up(&s);
        let mut flowing = 0;
        for (_, local) in &tunnels {
            if echo_through(local).await.is_ok() {
                flowing += 1;
            }
        }
        let history = control(&socket, &Request::History { since: None }).await?;
        // What the agent did during the window, from its decision history.
        let decided: Vec<(time::OffsetDateTime, String)> = history
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| {
                        let at = time::OffsetDateTime::parse(
                            e["at"].as_str()?,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .ok()?;
                        let what = e["what"].as_str()?.to_owned();
                        (SystemTime::from(at) >= window_start && SystemTime::from(at) <= window_end)
                            .then_some((at, what))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let count = |what: &str| decided.iter().filter(|(_, w)| w.contains(what)).count();
        let (starts, stops) = (count("tunnel up"), count("tunnel closed"));

        let usages: Vec<Usage> = procs
            .iter()
            .zip(&readings)
            .map(|((name, _), r)| usage(name, r, ticks_per_second))
            .collect();
        agent.stop("INT");
        broker.stop("TERM");
        floor.stop("TERM");

        let (a, b) = (&usages[0], &usages[1]);
        println!();
        println!(
            "Agent idle: {:.0} s window, {} samples, 3 tunnels, no traffic; load average {load_before} before, {load_after} after.",
            window.as_secs_f64(),
            readings[0].len()
        );
        println!();
        println!(
            "| process | CPU, % of one core | + reaped children | RSS at end | RSS max in window | VmHWM (peak since start) |"
        );
        println!("|---|---|---|---|---|---|");
        for u in &usages {
            println!(
                "| {} | {:.3} % | {:.3} % | {:.1} MB | {:.1} MB | {:.1} MB |",
                u.name, u.cpu_percent, u.child_cpu_percent, u.rss_end_mb, u.rss_max_mb, u.hwm_mb
            );
        }
        println!();
        println!("| agent figure | value | goal | met | agent / broker |\n|---|---|---|---|---|");
        let met = |ok: bool| if ok { "yes" } else { "no" };
        println!(
            "| CPU, own | {:.3} % | < {CPU_GOAL_PERCENT} % | {} | {:.2} |",
            a.cpu_percent,
            met(a.cpu_percent < CPU_GOAL_PERCENT),
            a.cpu_percent / b.cpu_percent
        );
        let with_children = a.cpu_percent + a.child_cpu_percent;
        println!(
            "| CPU, own + posture commands | {with_children:.3} % | < {CPU_GOAL_PERCENT} % | {} | {:.2} |",
            met(with_children < CPU_GOAL_PERCENT),
            with_children / (b.cpu_percent + b.child_cpu_percent)
        );
        println!(
            "| RSS, max in window | {:.1} MB | < {RSS_GOAL_MB} MB | {} | {:.2} |",
            a.rss_max_mb,
            met(a.rss_max_mb < RSS_GOAL_MB),
            a.rss_max_mb / b.rss_max_mb
        );
        println!(
            "| RSS, peak since start (VmHWM) | {:.1} MB | < {RSS_GOAL_MB} MB | {} | {:.2} |",
            a.hwm_mb,
            met(a.hwm_mb < RSS_GOAL_MB),
            a.hwm_mb / b.hwm_mb
        );
        println!(
            "| tunnels up at end (echo flows) | {}/{} ({flowing}) | 3 | {} | |",
            tunnels.len(),
            APPS.len(),
            met(tunnels.len() == APPS.len() && flowing == APPS.len())
        );
        println!("| tunnel (re)starts / closes in window | {starts} / {stops} | | | |");
        println!();
        println!(
            "CPU resolution: 1 clock tick = {:.1} ms.",
            1000.0 / ticks_per_second
        );
        println!();
        println!(
            "The agent's decisions during the window ({}; posture collections that change nothing are not recorded):",
            decided.len()
        );
        for (at, what) in &decided {
            println!(
                "- {:02}:{:02}:{:02} UTC {what}",
                at.hour(),
                at.minute(),
                at.second()
            );
        }

        if tunnels.len() != APPS.len() || flowing != APPS.len() {
            return Err(format!(
                "{} of 3 tunnels up at the end, {flowing} carrying an echo; agent decisions: {history:#}",
                tunnels.len()
            ));
        }
        Ok(())
    }
}
