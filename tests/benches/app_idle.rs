//! Idle resources of the tray app (issue 20): the release `sallyport-app`
//! with its in-process agent signed in and holding three tunnels, its whole
//! process tree (the app and the WebKit processes behind its window)
//! sampled for 120 s with the window open and 120 s after it was closed.
//! The reference is a `sallyport run` agent in the same run, with the same
//! setup and its own three tunnels. Goals: window closed, under 100 MB PSS
//! and 0.3 % of one core, no WebKit process; window open, under 0.5 %.
//!
//! ```text
//! scripts/bench-app-idle                              # builds everything, 2 × 120 s
//! SALLYPORT_APP_IDLE_SECS=20 scripts/bench-app-idle   # quick look
//! ```
//!
//! `scripts/bench-app-idle` builds the UI, then `sallyport-app`, `sallyport`
//! and `sallyport-broker` (release), then runs `cargo bench -p sallyport-e2e
//! --bench app_idle`, which finds them next to its own binary or at
//! `SALLYPORT_APP_BIN` / `SALLYPORT_BIN` / `SALLYPORT_BROKER_BIN`.
//!
//! What runs: the npm `oidc-provider` test IdP; `sallyport-broker` with
//! catalogue `app1`..`app3` (TCP echo targets in this process) and the
//! lenient test policy; the app under a private Xvfb display and D-Bus
//! session bus (`support::desktop`: nothing activatable, so no Secret
//! Service; each agent keeps its tokens in a private session keyring,
//! `keyctl session -`), configured with only `broker_url` in a throwaway
//! home, so it hosts the agent in-process; and `sallyport run` as in
//! `scripts/bench-idle`. Both agents are signed in by device code and
//! connect `app1`..`app3`; the bench waits until every tunnel carries an
//! echo.
//!
//! Sampling, every 2 s: for every process of the app's tree, `utime +
//! stime` (`/proc/PID/stat`) and PSS (`/proc/PID/smaps_rollup`); CPU is the
//! tree's change over the window (a process that appears counts from zero;
//! what the app reaped, its `cutime + cstime`, counts too) as a percentage
//! of one core; PSS is summed over the tree per sample. The app process
//! and its WebKit processes are shown apart from the commands its agent
//! runs (posture checks, which `sallyport run` runs the same way): the
//! goals are checked both without and with them. The window is closed the
//! way a window manager closes it (`WM_DELETE_WINDOW`).
//!
//! Last, the cost of one `status` request (what the app's watcher asks
//! every 2 s with the window open, 10 s without: `src-tauri/src/watch.rs`)
//! is measured as the app's CPU over 500 requests.

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
    // a 4-minute measurement has no place in a test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("app_idle: a benchmark; run it with scripts/bench-app-idle");
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
                eprintln!("app_idle: cannot measure: {e}");
                ExitCode::FAILURE
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        eprintln!("app_idle: reads /proc and runs Xvfb; Linux only");
        ExitCode::FAILURE
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use agent::control::view::{DeviceCodeView, StatusView, TunnelState};
    use agent::control::{Reply, Request};
    use support::broker::{BrokerConfig, LENIENT};
    use support::desktop::{self, Desktop};
    use support::echo::{echo_through, tcp_echo};
    use support::{free_port, idp};

    const APPS: [&str; 3] = ["app1", "app2", "app3"];
    const TITLE: &str = "Sallyport";
    const SAMPLE: Duration = Duration::from_secs(2);
    const CLOSED_PSS_GOAL_MB: f64 = 100.0;
    const CLOSED_CPU_GOAL: f64 = 0.3;
    const OPEN_CPU_GOAL: f64 = 0.5;
    /// Status requests for the cost of one.
    const REQUESTS: u32 = 2000;

    /// The app's watcher cadence, seconds (`src-tauri/src/watch.rs`
    /// `POLL_OPEN`, `POLL_CLOSED`; the bench does not link the app).
    mod sallyport_poll {
        pub const OPEN: u64 = 2;
        pub const CLOSED: u64 = 10;
    }

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

    /// One reading of a process tree.
    #[derive(Debug, Clone)]
    struct Sample {
        at: Instant,
        /// Per pid: name, CPU ticks, PSS KiB.
        procs: BTreeMap<u32, (String, u64, u64)>,
        /// What the root reaped, clock ticks.
        reaped: u64,
        /// The root's pid.
        root: u32,
    }

    fn sample(root: u32) -> Sample {
        let at = Instant::now();
        let tree = desktop::tree(root);
        let reaped = tree
            .iter()
            .find(|p| p.pid == root)
            .map_or(0, |p| p.child_ticks);
        let procs = tree
            .into_iter()
            .map(|p| {
                let pss = desktop::pss_kib(p.pid).unwrap_or(0);
                (p.pid, (p.name, p.ticks, pss))
            })
            .collect();
        Sample {
            at,
            procs,
            reaped,
            root,
        }
    }

    /// What one window showed for one tree.
    struct Usage {
        secs: f64,
        /// The whole tree, commands the agent ran (posture checks) included.
        cpu_percent: f64,
        pss_max_mb: f64,
        /// The app (or agent) process and its WebKit processes only.
        own_cpu_percent: f64,
        own_pss_mean_mb: f64,
        own_pss_max_mb: f64,
        /// Mean PSS per process name, MB.
        by_name: BTreeMap<String, f64>,
        /// CPU per process name (the root's reaped children with the root),
        /// % of one core.
        cpu_by_name: BTreeMap<String, f64>,
        names: BTreeSet<String>,
    }

    fn usage(samples: &[Sample], ticks_per_second: f64) -> Usage {
        let (first, last) = (&samples[0], &samples[samples.len() - 1]);
        let secs = last.at.duration_since(first.at).as_secs_f64();
        let percent = |ticks: u64| ticks as f64 / ticks_per_second / secs * 100.0;
        // The process itself and its WebKit helpers; anything else below it
        // is a command the agent ran (and what the root reaped is too).
        let is_own = |pid: u32, name: &str| pid == last.root || name.starts_with("WebKit");
        let reaped = last.reaped.saturating_sub(first.reaped);
        let mut ticks = reaped;
        let mut own_ticks = 0;
        let mut cpu_by_name: BTreeMap<String, f64> = BTreeMap::new();
        for (pid, (name, t, _)) in &last.procs {
            let before = first.procs.get(pid).map_or(0, |(_, t, _)| *t);
            let own = t.saturating_sub(before) + if *pid == last.root { reaped } else { 0 };
            ticks += t.saturating_sub(before);
            if is_own(*pid, name) {
                own_ticks += t.saturating_sub(before);
            }
            *cpu_by_name.entry(name.clone()).or_default() += percent(own);
        }
        let totals: Vec<u64> = samples
            .iter()
            .map(|s| s.procs.values().map(|(_, _, pss)| pss).sum())
            .collect();
        let own_totals: Vec<u64> = samples
            .iter()
            .map(|s| {
                s.procs
                    .iter()
                    .filter(|(pid, (name, _, _))| is_own(**pid, name))
                    .map(|(_, (_, _, pss))| pss)
                    .sum()
            })
            .collect();
        let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len() as f64 / 1024.0;
        let max = |v: &[u64]| v.iter().copied().max().unwrap_or(0) as f64 / 1024.0;
        let mut by_name: BTreeMap<String, f64> = BTreeMap::new();
        for s in samples {
            for (name, _, pss) in s.procs.values() {
                *by_name.entry(name.clone()).or_default() += *pss as f64;
            }
        }
        for v in by_name.values_mut() {
            *v = *v / samples.len() as f64 / 1024.0;
        }
        Usage {
            secs,
            cpu_percent: percent(ticks),
            own_cpu_percent: percent(own_ticks),
            cpu_by_name,
            pss_max_mb: max(&totals),
            own_pss_mean_mb: mean(&own_totals),
            own_pss_max_mb: max(&own_totals),
            names: samples
                .iter()
                .flat_map(|s| s.procs.values().map(|(n, _, _)| n.clone()))
                .collect(),
            by_name,
        }
    }

    /// Samples the app's tree and the reference agent for `secs`.
    async fn window(
        secs: u64,
        app: &mut Proc,
        reference: &mut Proc,
    ) -> Result<(Vec<Sample>, Vec<Sample>), String> {
        let (mut a, mut r) = (Vec::new(), Vec::new());
        let start = Instant::now();
        let mut tick = tokio::time::interval(SAMPLE);
        loop {
            tick.tick().await;
            a.push(sample(app.pid()));
            r.push(sample(reference.pid()));
            if let Some(why) = app.exited().or_else(|| reference.exited()) {
                return Err(format!("{why} during the window"));
            }
            if start.elapsed() >= Duration::from_secs(secs) {
                return Ok((a, r));
            }
        }
    }

    fn binary(env: &str, name: &str) -> Result<PathBuf, String> {
        let path = match std::env::var_os(env) {
            Some(p) => PathBuf::from(p),
            None => {
                // target/<profile>/deps/app_idle-HASH -> target/<profile>/NAME
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
                "{} is missing: build it first (scripts/bench-app-idle does) or set {env}",
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

    /// How many tunnels are up and carry an echo.
    async fn flowing(socket: &Path) -> Result<usize, String> {
        let s = status(socket).await?;
        let mut n = 0;
        for t in s.tunnels.iter().filter(|t| t.state == TunnelState::Up) {
            if let Some(f) = t.forwards.first()
                && echo_through(&f.local).await.is_ok()
            {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn wait_for_socket(socket: &Path, who: &mut Proc, log: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while status(socket).await.is_err() {
            if let Some(why) = who.exited() {
                return Err(format!("{why}; see {}", log.display()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not answer on {} within 60 s; see {}",
                    who.name,
                    socket.display(),
                    log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Device-code sign-in confirmed by "the user", then app1..app3.
    async fn sign_in_and_connect(socket: &Path) -> Result<(), String> {
        let code: DeviceCodeView =
            serde_json::from_value(control(socket, &Request::SignInDevice).await?)
                .map_err(|e| e.to_string())?;
        let uri = code
            .verification_uri_complete
            .ok_or("the IdP gave no verification_uri_complete")?;
        idp::complete_device_login(&uri).await;
        // The catalogue is known once the sign-in went through.
        let deadline = Instant::now() + Duration::from_secs(60);
        for app in APPS {
            loop {
                match control(socket, &Request::Connect { app: app.into() }).await {
                    Ok(_) => break,
                    Err(e) if Instant::now() > deadline => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        }
        Ok(())
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

    fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".to_owned())
    }

    /// A home of its own: settings, state, cache, runtime dir (0700).
    fn home(dir: &Path, name: &str) -> Result<PathBuf, String> {
        let home = dir.join(name);
        for sub in ["config/sallyport", "cache", "state", "data", "run"] {
            std::fs::create_dir_all(home.join(sub)).map_err(|e| e.to_string())?;
        }
        std::fs::set_permissions(
            home.join("run"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(|e| e.to_string())?;
        Ok(home)
    }

    fn with_home<'c>(command: &'c mut Command, home: &Path) -> &'c mut Command {
        command
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_STATE_HOME", home.join("state"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_RUNTIME_DIR", home.join("run"))
            .env_remove("SALLYPORT_LOG")
            .env_remove("SALLYPORT_BROKER")
            .env_remove("SALLYPORT_ISSUER")
    }

    pub async fn bench() -> Result<(), String> {
        let secs: u64 = match std::env::var("SALLYPORT_APP_IDLE_SECS") {
            Ok(v) => v
                .parse()
                .ok()
                .filter(|s| *s > 0)
                .ok_or("SALLYPORT_APP_IDLE_SECS must be a positive number of seconds")?,
            Err(_) => 120,
        };
        let app_bin = binary("SALLYPORT_APP_BIN", "sallyport-app")?;
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
            return Err("`keyctl session - true` failed: install keyutils".to_owned());
        }
        let desktop = Desktop::start().ok_or("no desktop session (see the SKIP line above)")?;
        let idp = idp::Idp::start(&idp::Options::default())
            .ok_or("the test IdP cannot start (see the SKIP line above)")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let log = |name: &str| -> Result<std::fs::File, String> {
            std::fs::File::create(dir.path().join(name)).map_err(|e| e.to_string())
        };

        // The broker, as in tests/benches/idle.rs.
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
        let http_port = free_port();
        let config = apps
            .iter()
            .fold(
                BrokerConfig::new(&idp.issuer, &dir.path().join("broker.sqlite"))
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

        // The reference: `sallyport run`, as scripts/bench-idle runs it.
        let ref_home = home(dir.path(), "reference")?;
        let ref_socket = ref_home.join("run").join("agent.sock");
        let mut reference = Proc {
            name: "sallyport run",
            child: with_home(
                Command::new("keyctl")
                    .args(["session", "-"])
                    .arg(&agent_bin)
                    .args(["run", "--broker", &broker_url, "--socket"])
                    .arg(&ref_socket),
                &ref_home,
            )
            .env("SALLYPORT_ISSUER", &idp.issuer)
            .env("SALLYPORT_CLIENT_ID", idp::CLIENT_ID)
            .env("SALLYPORT_RESOURCE", idp::BROKER_RESOURCE)
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(log("reference.out")?)
            .stderr(log("reference.log")?)
            .spawn()
            .map_err(|e| format!("keyctl session - {}: {e}", agent_bin.display()))?,
        };

        // The app: only broker_url configured, so it hosts the agent; the
        // window opens (a user's launch, not a login one).
        let app_home = home(dir.path(), "app")?;
        std::fs::write(
            app_home.join("config/sallyport/config.toml"),
            format!("broker_url = \"{broker_url}\"\n"),
        )
        .map_err(|e| e.to_string())?;
        let app_socket = app_home.join("run").join("sallyport").join("agent.sock");
        let mut app = Proc {
            name: "sallyport-app",
            child: with_home(
                desktop
                    .command("keyctl")
                    .args(["session", "-"])
                    .arg(&app_bin),
                &app_home,
            )
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log("app.out")?)
            .stderr(log("app.log")?)
            .spawn()
            .map_err(|e| format!("keyctl session - {}: {e}", app_bin.display()))?,
        };

        wait_for_socket(
            &ref_socket,
            &mut reference,
            &dir.path().join("reference.log"),
        )
        .await?;
        wait_for_socket(&app_socket, &mut app, &dir.path().join("app.log")).await?;
        sign_in_and_connect(&ref_socket).await?;
        sign_in_and_connect(&app_socket).await?;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (r, a) = (flowing(&ref_socket).await?, flowing(&app_socket).await?);
            if r == APPS.len() && a == APPS.len() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "tunnels carrying an echo after 90 s: reference {r}/3, app {a}/3; logs in {}",
                    dir.path().display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let win = desktop
            .wait_window(TITLE, Duration::from_secs(30))
            .ok_or("the app's window did not appear")?;
        // Let the window render and settle.
        tokio::time::sleep(Duration::from_secs(5)).await;
        eprintln!(
            "app_idle: 3 + 3 tunnels up; window open, sampling for {secs} s (app pid {}, reference pid {})",
            app.pid(),
            reference.pid()
        );
        let load_open = loadavg();
        let (app_open, ref_open) = window(secs, &mut app, &mut reference).await?;

        // Close the window as a window manager does; the app stays.
        desktop.close(win);
        if !desktop.wait_no_window(TITLE, Duration::from_secs(20)) {
            return Err("the window did not close within 20 s".to_owned());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !desktop::webkit(app.pid()).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        eprintln!("app_idle: window closed, sampling for {secs} s");
        let load_closed = loadavg();
        let (app_closed, ref_closed) = window(secs, &mut app, &mut reference).await?;
        let webkit_while_closed: BTreeSet<String> = app_closed
            .iter()
            .flat_map(|s| s.procs.values().map(|(n, _, _)| n.clone()))
            .filter(|n| n.starts_with("WebKit"))
            .collect();

        // One status request, as the watcher asks it, measured in bulk.
        let before = sample(app.pid());
        let started = Instant::now();
        for _ in 0..REQUESTS {
            status(&app_socket).await?;
        }
        let after = sample(app.pid());
        let bulk = usage(&[before, after], ticks_per_second);
        let request_ms = bulk.cpu_percent / 100.0 * started.elapsed().as_secs_f64() * 1000.0
            / f64::from(REQUESTS);

        // Still three tunnels each, carrying traffic.
        let (ref_flowing, app_flowing) = (flowing(&ref_socket).await?, flowing(&app_socket).await?);
        let open = (
            usage(&app_open, ticks_per_second),
            usage(&ref_open, ticks_per_second),
        );
        let closed = (
            usage(&app_closed, ticks_per_second),
            usage(&ref_closed, ticks_per_second),
        );
        app.stop("TERM");
        reference.stop("INT");
        broker.stop("TERM");
        drop(desktop);

        println!();
        println!(
            "Tray app idle: {secs} s with the window open, then {secs} s after closing it; samples every {} s; 3 tunnels each, no traffic; load average {load_open} (open), {load_closed} (closed).",
            SAMPLE.as_secs()
        );
        println!();
        println!(
            "| process tree | window | CPU, % of one core | + commands the agent ran | PSS mean | PSS max | PSS max + commands | processes |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for (label, usage, window) in [
            ("sallyport-app + in-process agent", &open.0, "open"),
            ("sallyport-app + in-process agent", &closed.0, "closed"),
            ("sallyport run (reference)", &open.1, "(same time as open)"),
            (
                "sallyport run (reference)",
                &closed.1,
                "(same time as closed)",
            ),
        ] {
            println!(
                "| {label} | {window} | {:.3} % | {:.3} % | {:.1} MB | {:.1} MB | {:.1} MB | {} |",
                usage.own_cpu_percent,
                usage.cpu_percent,
                usage.own_pss_mean_mb,
                usage.own_pss_max_mb,
                usage.pss_max_mb,
                usage.names.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        println!();
        println!(
            "By process, window open (mean PSS, CPU): {}.",
            open.0
                .by_name
                .iter()
                .map(|(n, mb)| format!(
                    "{n} {mb:.1} MB, {:.3} %",
                    open.0.cpu_by_name.get(n).copied().unwrap_or(0.0)
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
        println!();
        println!("| figure | app | reference | app / reference | goal | met |");
        println!("|---|---|---|---|---|---|");
        let met = |ok: bool| if ok { "yes" } else { "no" };
        let row = |figure: &str, app: f64, reference: f64, unit: &str, goal: Option<f64>| {
            let (goal, ok) = match goal {
                Some(g) => (format!("< {g} {unit}"), met(app < g)),
                None => (String::new(), ""),
            };
            let digits = if unit == "%" { 3 } else { 1 };
            println!(
                "| {figure} | {app:.digits$} {unit} | {reference:.digits$} {unit} | {:.2} | {goal} | {ok} |",
                app / reference
            );
        };
        let (a, r) = (&closed.0, &closed.1);
        row(
            "CPU, window closed",
            a.own_cpu_percent,
            r.own_cpu_percent,
            "%",
            Some(CLOSED_CPU_GOAL),
        );
        row(
            "CPU + commands the agent ran, window closed",
            a.cpu_percent,
            r.cpu_percent,
            "%",
            Some(CLOSED_CPU_GOAL),
        );
        row(
            "PSS max, window closed",
            a.own_pss_max_mb,
            r.own_pss_max_mb,
            "MB",
            Some(CLOSED_PSS_GOAL_MB),
        );
        row(
            "PSS max + commands, window closed",
            a.pss_max_mb,
            r.pss_max_mb,
            "MB",
            Some(CLOSED_PSS_GOAL_MB),
        );
        println!(
            "| WebKit processes, window closed | {} | | | none | {} |",
            if webkit_while_closed.is_empty() {
                "none".to_owned()
            } else {
                webkit_while_closed
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            met(webkit_while_closed.is_empty())
        );
        let (a, r) = (&open.0, &open.1);
        row(
            "CPU, window open",
            a.own_cpu_percent,
            r.own_cpu_percent,
            "%",
            Some(OPEN_CPU_GOAL),
        );
        row(
            "CPU + commands the agent ran, window open",
            a.cpu_percent,
            r.cpu_percent,
            "%",
            Some(OPEN_CPU_GOAL),
        );
        row(
            "PSS max, window open",
            a.own_pss_max_mb,
            r.own_pss_max_mb,
            "MB",
            None,
        );
        println!(
            "| tunnels carrying an echo at the end | {app_flowing}/3 | {ref_flowing}/3 | | 3 | {} |",
            met(app_flowing == APPS.len() && ref_flowing == APPS.len())
        );
        println!();
        println!(
            "One status request (the watcher's poll: every {} s with the window open, {} s without) costs the app {request_ms:.3} ms of CPU ({REQUESTS} requests in {:.2} s): {:.4} % of one core with the window closed. CPU resolution: 1 clock tick = {:.1} ms; windows of {:.0} s and {:.0} s.",
            sallyport_poll::OPEN,
            sallyport_poll::CLOSED,
            bulk.secs,
            request_ms / 1000.0 / sallyport_poll::CLOSED as f64 * 100.0,
            1000.0 / ticks_per_second,
            open.0.secs,
            closed.0.secs,
        );

        if ref_flowing != APPS.len() || app_flowing != APPS.len() {
            return Err(format!(
                "tunnels carrying an echo at the end: reference {ref_flowing}/3, app {app_flowing}/3; logs in {}",
                dir.path().display()
            ));
        }
        Ok(())
    }
}
