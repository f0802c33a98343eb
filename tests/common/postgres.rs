//! A private PostgreSQL server for one test, for running real dbt-postgres against.
//!
//! The server lives in a temp dir, listens on a Unix socket there and on 127.0.0.1 at
//! a free port, trusts local connections only, and has a `dbt` role owning a `dbt`
//! database. PostgreSQL refuses to run as root, so as root the server runs as
//! `nobody`. Dropping the handle stops the server, kills whatever is left of it and
//! removes the dir, also when the test panics.
//!
//! dbt connects over TCP (host 127.0.0.1 and the port), the harness's own queries go
//! through the socket as the bootstrap superuser, so they never count as dbt's.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The role and database dbt uses, and the schema its profile points at.
pub const DBT_USER: &str = "dbt";
pub const DBT_DB: &str = "dbt";
pub const SCHEMA: &str = "herd";
/// The bootstrap superuser the harness itself connects as.
const ADMIN: &str = "herd_admin";

#[derive(Clone, Copy)]
pub struct PgOptions {
    /// Server-wide. Superuser connections (the harness's queries and samplers) count
    /// too, and 3 slots are kept for superusers only, so dbt gets at most
    /// `max_connections - 3 - harness connections`. For an exact cap on dbt alone:
    /// `sql("alter role dbt connection limit N")`.
    pub max_connections: u32,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 50,
        }
    }
}

pub struct Postgres {
    /// For clients such as dbt: 127.0.0.1 (the socket dir works as `host` too).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub socket_dir: PathBuf,
    bin: PathBuf,
    client: Client,
    data: PathBuf,
    log: PathBuf,
    /// (uid, gid) the server runs as when we are root.
    run_as: Option<(u32, u32)>,
    server: Option<Child>,
    opts: PgOptions,
    /// Last field: removed after `drop` has stopped the server.
    dir: tempfile::TempDir,
}

/// How the harness runs SQL: `psql`, or the dbt venv's python with psycopg2.
enum Client {
    Psql(PathBuf),
    Python(PathBuf),
}

impl Postgres {
    pub fn start() -> Self {
        Self::start_with(PgOptions::default())
    }

    pub fn start_with(opts: PgOptions) -> Self {
        let bin = server_bin_dir();
        let dir = tempfile::tempdir().expect("temp dir for postgres");
        let run_as = unprivileged_ids();
        let socket_dir = dir.path().join("sock");
        std::fs::create_dir(&socket_dir).expect("socket dir");
        if let Some((uid, gid)) = run_as {
            // The server user must own its dirs; others may only traverse to the socket.
            for d in [dir.path(), socket_dir.as_path()] {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).expect("chown to nobody");
                set_mode(d, 0o711);
            }
        }
        let mut pg = Postgres {
            host: "127.0.0.1".into(),
            port: 0,
            user: DBT_USER.into(),
            dbname: DBT_DB.into(),
            socket_dir,
            client: find_client(&bin),
            data: dir.path().join("data"),
            log: dir.path().join("server.log"),
            bin,
            run_as,
            server: None,
            opts,
            dir,
        };
        pg.initdb();
        // A free port can be taken by someone else before the server binds it: try again.
        for attempt in 1..=5 {
            pg.port = free_port();
            if pg.spawn_server(&opts) {
                break;
            }
            assert!(attempt < 5, "postgres did not start\n{}", pg.log_tail());
        }
        pg.sql_in("postgres", &format!("create role {DBT_USER} login"));
        pg.sql_in(
            "postgres",
            &format!("create database {DBT_DB} owner {DBT_USER}"),
        );
        pg
    }

    /// Runs `sql` as the superuser in the dbt database; the rows of its last
    /// statement, as text (NULL is ""). Panics with the server log on an error.
    pub fn sql(&self, sql: &str) -> Vec<Vec<String>> {
        self.sql_in(&self.dbname, sql)
    }

    fn sql_in(&self, db: &str, sql: &str) -> Vec<Vec<String>> {
        let out = match &self.client {
            // Unaligned, tuples only: one row per line, fields split by 0x1f.
            Client::Psql(psql) => Command::new(psql)
                .args(["-X", "-q", "-A", "-t", "-F", "\x1f"])
                .args(["-v", "ON_ERROR_STOP=1"])
                .args(self.conn_args(db))
                .args(["-c", sql])
                .output(),
            Client::Python(py) => Command::new(py)
                .args(["-c", PY_SQL])
                .args(self.py_conn_args(db))
                .arg(sql)
                .output(),
        }
        .unwrap_or_else(|e| panic!("cannot run the SQL client: {e}"));
        self.check(&out, &format!("SQL failed: {sql}"));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\x1f').map(str::to_string).collect())
            .collect()
    }

    /// Starts sampling, every 50 ms, how many client backends `who` holds.
    /// Returns once the first sample is in.
    pub fn sample_connections(&self, who: Who) -> Sampler<'_> {
        let filter = match who {
            Who::DbtRole => format!("usename = {}", quote(&self.user)),
            Who::Application(app) => format!("application_name = {}", quote(app)),
        };
        // Our own connection is a superuser's, and excluded by pid too.
        let query = format!(
            "select count(*) from pg_stat_activity where backend_type = 'client backend' \
             and pid <> pg_backend_pid() and {filter}"
        );
        // One session re-running the query: no connection per sample.
        let (mut cmd, script) = match &self.client {
            Client::Psql(psql) => {
                let mut c = Command::new(psql);
                c.args(["-X", "-q", "-A", "-t"])
                    .args(self.conn_args(&self.dbname));
                (c, format!("{query} \\watch 0.05\n"))
            }
            Client::Python(py) => {
                let mut c = Command::new(py);
                c.args(["-c", PY_SAMPLER])
                    .args(self.py_conn_args(&self.dbname));
                (c, format!("{query}\n"))
            }
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the connection sampler: {e}"));
        // Dropping stdin after the script is fine: the loop does not read it again.
        child
            .stdin
            .take()
            .expect("sampler stdin")
            .write_all(script.as_bytes())
            .expect("write the sampler script");
        let stdout = child.stdout.take().expect("sampler stdout");
        let (peak, samples) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let thread = {
            let (peak, samples) = (peak.clone(), samples.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Ok(n) = line.trim().parse::<u32>() {
                        peak.fetch_max(n, Ordering::Relaxed);
                        samples.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        let sampler = Sampler {
            child,
            thread: Some(thread),
            peak,
            samples,
            _server: std::marker::PhantomData,
        };
        let end = Instant::now() + Duration::from_secs(10);
        while sampler.samples() == 0 {
            assert!(
                Instant::now() < end,
                "the connection sampler took no sample\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        sampler
    }

    /// Writes `dir/profiles.yml` with one dbt-postgres target, `pg`, on this server.
    pub fn write_profiles(&self, dir: &Path, profile: &str, threads: u32) -> PathBuf {
        let path = dir.join("profiles.yml");
        let yml = format!(
            "{profile}:\n  target: pg\n  outputs:\n    pg:\n      type: postgres\n      \
             host: {host}\n      port: {port}\n      user: {user}\n      \
             password: \"\"  # trust auth; dbt-postgres requires the field\n      \
             dbname: {db}\n      schema: {SCHEMA}\n      threads: {threads}\n",
            host = self.host,
            port = self.port,
            user = self.user,
            db = self.dbname,
        );
        std::fs::write(&path, yml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("--- server log ({}) ---\n{tail}", self.log.display())
    }

    fn conn_args(&self, db: &str) -> Vec<String> {
        let sock = self.socket_dir.display().to_string();
        let port = self.port.to_string();
        ["-h", &sock, "-p", &port, "-U", ADMIN, "-d", db]
            .map(String::from)
            .to_vec()
    }

    /// The first arguments of the python scripts below.
    fn py_conn_args(&self, db: &str) -> Vec<String> {
        let sock = self.socket_dir.display().to_string();
        vec![sock, self.port.to_string(), ADMIN.into(), db.into()]
    }

    /// A server binary, run as the unprivileged user when we are root.
    fn server_cmd(&self, name: &str) -> Command {
        let mut c = Command::new(self.bin.join(name));
        // Its cwd must be readable by the server user.
        c.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.run_as {
            // std drops the supplementary groups (setgroups(0)) before setuid.
            c.uid(uid).gid(gid);
        }
        c
    }

    fn check(&self, out: &Output, what: &str) {
        assert!(
            out.status.success(),
            "{what} ({})\n{}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
    }

    fn initdb(&self) {
        let out = self
            .server_cmd("initdb")
            .arg("-D")
            .arg(&self.data)
            .args(["-U", ADMIN, "-A", "trust", "--no-sync"])
            .args(["-E", "UTF8", "--locale=C"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        self.check(&out, "initdb failed");
        // Trust only the socket and loopback (initdb's default also trusts ::1).
        let hba = "local all all trust\nhost all all 127.0.0.1/32 trust\n";
        std::fs::write(self.data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    }

    /// Starts the server on `self.port`; false when another process took the port.
    fn spawn_server(&mut self, opts: &PgOptions) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log");
        let settings = [
            "listen_addresses=127.0.0.1".to_string(),
            format!("port={}", self.port),
            format!("unix_socket_directories={}", self.socket_dir.display()),
            format!("max_connections={}", opts.max_connections),
            // A throwaway server: no durability, little memory.
            "fsync=off".into(),
            "synchronous_commit=off".into(),
            "full_page_writes=off".into(),
            "shared_buffers=16MB".into(),
            // Dynamic shared memory in the data dir, so even a SIGKILL leaves nothing in /dev/shm.
            "dynamic_shared_memory_type=mmap".into(),
        ];
        let mut cmd = self.server_cmd("postgres");
        cmd.arg("-D").arg(&self.data);
        for s in &settings {
            cmd.args(["-c", s]);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("server log"))
            .stderr(log);
        // SAFETY: prctl is async-signal-safe. If the test process dies without unwinding
        // (SIGKILL), the postmaster is killed too, and its backends exit on their own.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start postgres: {e}"));
        self.server = Some(child);
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if self.server_ready() {
                return true;
            }
            let child = self.server.as_mut().expect("server child");
            if let Ok(Some(status)) = child.try_wait() {
                self.server = None;
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                assert!(
                    log.contains("could not bind") || log.contains("in use"),
                    "postgres exited at start ({status})\n{}",
                    self.log_tail()
                );
                return false;
            }
            assert!(
                Instant::now() < end,
                "postgres not ready after 30 s\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The postmaster writes "ready" as the 8th line of postmaster.pid once it accepts
    /// connections (what `pg_ctl start -w` waits for).
    fn server_ready(&self) -> bool {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .is_ok_and(|s| s.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
    }
}

impl Postgres {
    /// `pg_ctl restart -m fast` as an operator does it: every connection is
    /// cut ("terminating connection due to administrator command"), and the
    /// server is back on the same port a moment later.
    pub fn restart(&mut self) {
        let out = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "fast", "-w", "-t", "30"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_ctl: {e}"));
        self.check(&out, "pg_ctl stop failed");
        if let Some(mut old) = self.server.take() {
            let _ = old.wait();
        }
        let opts = self.opts;
        assert!(
            self.spawn_server(&opts),
            "postgres did not come back on port {}\n{}",
            self.port,
            self.log_tail()
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        // Immediate: no checkpoint, the data is thrown away anyway.
        let _ = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "immediate", "-w", "-t", "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // If it is still up, kill it and its children. They are not in its process
        // group (each backend calls setsid), so find them by parent pid, before killing
        // the postmaster re-parents them. The unreaped postmaster keeps its pid.
        if let Ok(None) = server.try_wait() {
            let pm = i32::try_from(server.id()).unwrap();
            for pid in children_of(pm).into_iter().chain([pm]) {
                // SAFETY: kill(2) on the postmaster we started and its children.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let _ = server.wait();
    }
}

/// Whose connections a [`Sampler`] counts.
#[derive(Clone, Copy)]
pub enum Who<'a> {
    /// Every connection of the dbt role.
    DbtRole,
    /// Connections with this `application_name` (dbt sets "dbt").
    Application(&'a str),
}

/// Counts a set of connections every 50 ms on a thread and keeps the peak.
/// Borrows the server, so it always stops first.
pub struct Sampler<'a> {
    child: Child,
    thread: Option<std::thread::JoinHandle<()>>,
    peak: Arc<AtomicU32>,
    samples: Arc<AtomicU32>,
    _server: std::marker::PhantomData<&'a Postgres>,
}

impl Sampler<'_> {
    pub fn peak(&self) -> u32 {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn samples(&self) -> u32 {
        self.samples.load(Ordering::Relaxed)
    }

    /// Stops sampling; the peak over the whole time it ran.
    pub fn stop(mut self) -> u32 {
        self.halt();
        self.peak()
    }

    fn halt(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sampler<'_> {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Pids whose parent is `parent`, from /proc.
fn children_of(parent: i32) -> Vec<i32> {
    let ppid = |pid: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the ")" that ends the command name: state, then ppid.
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| ppid(pid) == Some(parent))
        .collect()
}

/// A SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The dir holding initdb, pg_ctl and postgres: on PATH, else Debian's
/// /usr/lib/postgresql/<version>/bin (newest version first).
fn server_bin_dir() -> PathBuf {
    let has_all = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    debian.sort_by_key(|(v, _)| std::cmp::Reverse(*v));
    path_dirs()
        .into_iter()
        .chain(debian.into_iter().map(|(_, d)| d))
        .find(|d| has_all(d))
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in \
                 /usr/lib/postgresql/*/bin; the postgres tests need them \
                 (Debian/Ubuntu: apt-get install postgresql)"
            )
        })
}

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

/// `psql` beside the server (same version), else on PATH, else the dbt venv's
/// python, which has psycopg2 (dbt-postgres depends on it).
fn find_client(server_bin: &Path) -> Client {
    if let Some(psql) = std::iter::once(server_bin.to_path_buf())
        .chain(path_dirs())
        .map(|d| d.join("psql"))
        .find(|p| p.is_file())
    {
        return Client::Psql(psql);
    }
    let dbt = dbt_herd::venv::ensure(&mut std::io::sink())
        .unwrap_or_else(|e| panic!("no psql, and the dbt venv (for psycopg2) failed: {e}"));
    Client::Python(dbt.with_file_name("python"))
}

/// The ids of `nobody` when we are root (the server refuses to run as root).
fn unprivileged_ids() -> Option<(u32, u32)> {
    // SAFETY: getuid never fails; getpwnam returns a pointer to static storage, read at once.
    unsafe {
        if libc::getuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"nobody".as_ptr());
        assert!(
            !pw.is_null(),
            "running as root and there is no user `nobody` to run postgres as"
        );
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A port nobody listens on right now (the server may still lose a race for it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// argv: socket dir, port, user, db, sql. Prints rows like `psql -A -t -F 0x1f`.
const PY_SQL: &str = r#"
import sys, psycopg2
host, port, user, db, sql = sys.argv[1:6]
conn = psycopg2.connect(host=host, port=int(port), user=user, dbname=db)
conn.autocommit = True
cur = conn.cursor()
cur.execute(sql)
text = lambda v: "" if v is None else ("t" if v is True else "f" if v is False else str(v))
for row in (cur.fetchall() if cur.description else []):
    print("\x1f".join(text(v) for v in row))
"#;

/// argv: socket dir, port, user, db; the query on stdin. Prints its count every 50 ms.
const PY_SAMPLER: &str = r#"
import sys, time, psycopg2
host, port, user, db = sys.argv[1:5]
query = sys.stdin.readline()
conn = psycopg2.connect(host=host, port=int(port), user=user, dbname=db)
conn.autocommit = True
cur = conn.cursor()
while True:
    cur.execute(query)
    print(cur.fetchone()[0], flush=True)
    time.sleep(0.05)
"#;

/// A copy of a project from tests/fixtures/pg_projects in a temp dir (so that
/// dbt's target/ and logs/ never land in the repository): (the temp dir, the
/// project dir in it).
pub fn pg_project(name: &str) -> (tempfile::TempDir, PathBuf) {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let dest = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &dest);
            } else {
                std::fs::copy(entry.path(), dest).unwrap();
            }
        }
    }
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join(name);
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pg_projects")
        .join(name);
    copy_dir(&from, &project);
    (work, project)
}
