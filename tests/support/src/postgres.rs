//! A throwaway PostgreSQL cluster per test: `initdb` in a temporary
//! directory, `pg_ctl start` with TCP off (`listen_addresses=''`) and the
//! Unix socket in that directory, stopped and deleted on drop. No system
//! service, no port, nothing shared with another test or the machine's own
//! clusters.
//!
//! Debian: `postgresql` (binaries in `/usr/lib/postgresql/<version>/bin`,
//! not on `PATH`; `SALLYPORT_PG_BIN` names another folder). A missing
//! PostgreSQL fails the test loudly: there is no skip, scripts/test
//! installs it.
//!
//! As root (CI), `initdb` and `postgres` refuse to run ("cannot be run as
//! root"), so both run as the `postgres` system user the Debian package
//! creates, through [`std::os::unix::process::CommandExt::uid`] (no `su`
//! or `runuser`, whose PAM sessions differ between distributions), with the
//! temporary directory handed to that user. Not as `nobody`: its primary
//! group differs between distributions, and a cluster owned by the
//! package's own user is what an operator would run. As any other user the
//! cluster runs as that user.
//!
//! Suites that start many brokers share one cluster per test process
//! ([`shared`], a fresh database per broker state: [`database_for`]);
//! `SALLYPORT_TEST_DATABASE=postgres` makes every broker the suites start
//! keep its state there ([`selected`], read by `support::broker`). A shared
//! cluster lives in a static, which is never dropped: a watchdog process
//! stops it (SIGQUIT, PostgreSQL's immediate shutdown) and deletes its
//! directory once the test process has exited.
//!
//! The cluster's superuser is `sallyport` (`initdb -U`), with `trust`
//! authentication: only the socket's owner can reach the socket directory.
//! `fsync=off`: a throwaway cluster need not survive a power cut, and tests
//! run faster without the flushes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

/// The superuser the cluster is made with.
const SUPERUSER: &str = "sallyport";

/// The environment variable that runs the broker suites on PostgreSQL.
pub const SELECT_VAR: &str = "SALLYPORT_TEST_DATABASE";

/// Whether brokers started by the suites keep their state in PostgreSQL
/// (`SALLYPORT_TEST_DATABASE=postgres`) rather than SQLite (unset, empty or
/// `sqlite`). Any other value panics: a typo must not fall back silently.
pub fn selected() -> bool {
    match std::env::var(SELECT_VAR).unwrap_or_default().as_str() {
        "" | "sqlite" => false,
        "postgres" => true,
        other => panic!("{SELECT_VAR}={other:?}: expected postgres or sqlite"),
    }
}

/// The cluster this test process shares, started on first use and stopped
/// by its watchdog when the process exits.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        let cluster = Cluster::start();
        cluster.watch(std::process::id());
        cluster
    })
}

/// The connection string of the shared cluster's database for the broker
/// state `key` names (the SQLite path the test would have used): created
/// on first use, the same database again for the same key (a restarted
/// broker finds its state).
pub fn database_for(key: &Path) -> String {
    shared().url_of(&database_name(key))
}

/// Runs `sql` with `psql` in the shared cluster's database for `key`
/// ([`database_for`]): for tests that change the database next to a
/// running broker (a fault put in by trigger).
pub fn psql_for(key: &Path, sql: &str) -> Result<String, String> {
    shared().psql(&database_name(key), sql)
}

/// A new database `name` in the shared cluster, a copy of the one for
/// `key` (`CREATE DATABASE … TEMPLATE`: no one may be connected to that
/// one meanwhile); returns the copy's name.
pub fn copy_database(key: &Path, name: &str) -> String {
    let source = database_name(key);
    let copy = format!("{source}_{name}");
    shared()
        .psql(
            "postgres",
            &format!("CREATE DATABASE \"{copy}\" TEMPLATE \"{source}\""),
        )
        .unwrap();
    copy
}

/// The shared cluster's database for `key`, created on first use.
fn database_name(key: &Path) -> String {
    static NAMES: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    let cluster = shared();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(name) = names.get(key) {
        return name.clone();
    }
    let name = format!("broker_{}", names.len() + 1);
    cluster.create_database(&name);
    names.insert(key.to_owned(), name.clone());
    name
}

/// A running throwaway cluster; stopped (`pg_ctl stop -m immediate`) and its
/// directory deleted on drop.
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    owner: Option<Owner>,
    /// The loopback TCP port it also listens on, with TLS
    /// ([`Cluster::start_with_tls`]).
    tls_port: Option<u16>,
}

/// Who the cluster's processes run as when the test runs as root.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl Cluster {
    /// Makes and starts a cluster. Panics, saying what is missing, when
    /// PostgreSQL is not installed or does not start.
    pub fn start() -> Cluster {
        let bin = bin_dir();
        let owner = owner();
        let dir = tempfile::Builder::new()
            .prefix("sallyport-pg-")
            .tempdir()
            .unwrap();
        let cluster = Cluster {
            dir,
            bin,
            owner,
            tls_port: None,
        };
        for sub in ["data", "socket"] {
            std::fs::create_dir(cluster.dir.path().join(sub)).unwrap();
        }
        cluster.hand_over(cluster.dir.path());
        cluster.hand_over(&cluster.data());
        cluster.hand_over(&cluster.socket_dir());
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                cluster.data().as_os_str(),
                "-U".as_ref(),
                SUPERUSER.as_ref(),
                "--auth=trust".as_ref(),
                "--no-sync".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--locale=C".as_ref(),
            ],
        );
        cluster.pg_ctl("start");
        cluster
    }

    /// [`Cluster::start`], also listening on a loopback TCP port with TLS
    /// on (`ssl=on`, the server certificate and key given as PEM files),
    /// for the tests of the store's TLS. Returns the cluster and its port.
    pub fn start_with_tls(cert: &Path, key: &Path) -> (Cluster, u16) {
        let mut cluster = Cluster::start();
        for (from, name) in [(cert, "server.crt"), (key, "server.key")] {
            let to = cluster.data().join(name);
            std::fs::copy(from, &to).unwrap();
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            cluster.hand_over(&to);
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        cluster.tls_port = Some(port);
        cluster.pg_ctl("restart");
        (cluster, port)
    }

    /// Stops the server (fast: sessions are cut) and starts it again, as a
    /// database restart or failover does to the broker's connections.
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }

    /// `pg_ctl start` or `restart`, waiting until the server accepts
    /// connections: TCP off, the socket in the cluster's directory.
    fn pg_ctl(&self, action: &str) {
        let tcp = match self.tls_port {
            Some(port) => format!(
                "-c listen_addresses='127.0.0.1' -p {port} -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
            ),
            None => "-c listen_addresses=''".to_owned(),
        };
        let options = format!(
            "{tcp} -k {} -c fsync=off -c max_connections=200",
            self.socket_dir().display()
        );
        self.run(
            "pg_ctl",
            &[
                action.as_ref(),
                "-w".as_ref(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-D".as_ref(),
                self.data().as_os_str(),
                "-l".as_ref(),
                self.log().as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
            ],
        );
    }

    /// The connection string of the `postgres` database (key=value form,
    /// over the Unix socket), as libpq and `tokio-postgres` read it.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The connection string of database `name`.
    pub fn url_of(&self, name: &str) -> String {
        let port = self
            .tls_port
            .map(|p| format!(" port={p}"))
            .unwrap_or_default();
        format!(
            "host={}{port} user={SUPERUSER} dbname={name}",
            self.socket_dir().display()
        )
    }

    /// Creates an empty database `name` and returns its connection string.
    pub fn create_database(&self, name: &str) -> String {
        self.run(
            "createdb",
            &[
                "-h".as_ref(),
                self.socket_dir().as_os_str(),
                "-U".as_ref(),
                SUPERUSER.as_ref(),
                name.as_ref(),
            ],
        );
        self.url_of(name)
    }

    /// Runs `sql` with `psql` in database `name`, returning its unaligned,
    /// tuples-only output (for tests that look behind the store's back).
    pub fn psql(&self, name: &str, sql: &str) -> Result<String, String> {
        let out = self
            .command("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.socket_dir())
            .args(["-U", SUPERUSER, "-d", name, "-c", sql])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Starts a process that, once process `pid` is gone, stops the server
    /// (SIGQUIT: immediate shutdown) and deletes the cluster's directory:
    /// for a cluster held where no drop runs (a static).
    // Never waited for: the watchdog is meant to outlive this process (it
    // is then init's to reap); the one in the watchdog's own test is reaped
    // when that test process ends.
    #[allow(clippy::zombie_processes)]
    fn watch(&self, pid: u32) {
        let postmaster = self.postmaster_pid().expect("the server's pid file");
        Command::new("sh")
            .args([
                "-c",
                "while kill -0 \"$1\" 2>/dev/null; do sleep 0.2; done; \
                 kill -QUIT \"$2\" 2>/dev/null; \
                 for _ in $(seq 100); do kill -0 \"$2\" 2>/dev/null || break; sleep 0.1; done; \
                 rm -rf \"$3\"",
                "sallyport-pg-watchdog",
                &pid.to_string(),
                &postmaster.to_string(),
            ])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The server's process id, from the first line of `postmaster.pid`.
    fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Gives `path` to the cluster's user (as root).
    fn hand_over(&self, path: &Path) {
        if let Some(owner) = self.owner {
            std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid)).unwrap();
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        // initdb and pg_ctl look for their siblings next to themselves, and
        // a locale from the test's environment must not leak in.
        command.env("LC_ALL", "C").env_remove("PGDATA");
        // The socket's name carries the port (createdb and psql read it here).
        match self.tls_port {
            Some(port) => command.env("PGPORT", port.to_string()),
            None => command.env_remove("PGPORT"),
        };
        if let Some(owner) = self.owner {
            use std::os::unix::process::CommandExt as _;
            command.uid(owner.uid).gid(owner.gid);
        }
        command
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Output {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        if !out.status.success() {
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            panic!(
                "{program} failed ({}):\n{}{}\nserver log:\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pid = self.postmaster_pid();
        // Immediate: nothing in a throwaway cluster is worth a checkpoint.
        // The directory goes with `dir` after this.
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-w", "-m", "immediate", "-D"])
            .arg(self.data())
            .output();
        // `pg_ctl stop -w` returns once the pid file is gone, which the
        // postmaster removes just before it exits: wait (a little) for the
        // exit itself, so no server outlives its cluster's directory.
        if let Some(pid) = pid {
            for _ in 0..100 {
                if !running(pid) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

/// Whether process `pid` is alive: neither gone nor exited and waiting to
/// be reaped (a zombie). Linux reads `/proc`; elsewhere it is not known,
/// and taken as exited.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
        })
        .is_some_and(|state| !matches!(state, 'Z' | 'X'))
}

/// Where `initdb`, `pg_ctl` and `postgres` are: `SALLYPORT_PG_BIN`, else the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian), else `PATH`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SALLYPORT_PG_BIN") {
        return PathBuf::from(dir);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    if let Some((_, bin)) = newest {
        return bin;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists());
    on_path.unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed: no initdb in /usr/lib/postgresql/*/bin, SALLYPORT_PG_BIN or PATH \
             (Debian: apt-get install postgresql; scripts/test installs it)"
        )
    })
}

/// The `postgres` user when running as root (PostgreSQL refuses root).
fn owner() -> Option<Owner> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("postgres")
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "running as root, and PostgreSQL refuses root: the `postgres` user (made by Debian's postgresql package) is missing"
            )
        });
    Some(Owner {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_cluster_answers_on_its_socket_and_is_gone_after_drop() {
        let cluster = Cluster::start();
        let url = cluster.create_database("probe");
        assert!(url.contains("dbname=probe"), "{url}");
        assert_eq!(cluster.psql("probe", "SELECT 40 + 2").unwrap(), "42");
        assert_eq!(
            cluster.psql("probe", "SHOW listen_addresses").unwrap(),
            "",
            "no TCP listener"
        );
        assert!(cluster.psql("probe", "SELECT * FROM missing").is_err());
        let dir = cluster.dir.path().to_owned();
        let pid = cluster.postmaster_pid().unwrap();
        assert!(running(pid), "the postmaster runs");
        drop(cluster);
        assert!(!dir.exists(), "the cluster's directory is deleted");
        assert!(!running(pid), "the postmaster is stopped");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_watchdog_stops_a_cluster_whose_process_is_gone() {
        let cluster = Cluster::start();
        let mut owner = Command::new("sleep").arg("0.3").spawn().unwrap();
        cluster.watch(owner.id());
        let dir = cluster.dir.path().to_owned();
        let pid = cluster.postmaster_pid().unwrap();
        owner.wait().unwrap();
        // Bounded: the watchdog polls every 0.2 s.
        for _ in 0..300 {
            if !dir.exists() && !running(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(!running(pid), "the postmaster is stopped");
        assert!(!dir.exists(), "the cluster's directory is deleted");
    }

    #[test]
    fn one_database_per_key_in_the_shared_cluster() {
        let a = database_for(Path::new("/nonexistent/a/broker.db"));
        let b = database_for(Path::new("/nonexistent/b/broker.db"));
        assert_ne!(a, b);
        assert_eq!(a, database_for(Path::new("/nonexistent/a/broker.db")));
        let name = a.rsplit_once("dbname=").unwrap().1;
        assert_eq!(
            shared().psql(name, "SELECT current_database()").unwrap(),
            name
        );
    }
}
