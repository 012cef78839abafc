//! PostgreSQL for tests: a database of a test's own (dropped when the test is done), on the
//! server DATABASE_URL names or on a private server started from the machine's PostgreSQL
//! binaries, so no test needs a PostgreSQL already running.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use sea_orm::{ConnectionTrait, Database};

use crate::free_port;

/// A PostgreSQL server of a test's own in a temporary directory, stopped when dropped.
pub struct PostgresServer {
    data: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// Where Debian puts `initdb` and `pg_ctl` (one directory per major version), or PATH.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .collect();
    versions.sort();
    versions.pop().or_else(|| {
        let found = Command::new("pg_ctl").arg("--version").output().ok()?;
        found.status.success().then(PathBuf::new)
    })
}

fn is_root() -> bool {
    std::env::var("USER").is_ok_and(|user| user == "root")
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

impl PostgresServer {
    /// Starts a private server, trust authentication for role `root`, on a free port of
    /// 127.0.0.1. `Err` says why it cannot (no PostgreSQL binaries on this machine, say).
    pub fn start() -> Result<Self, String> {
        let bin = binaries().ok_or("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")?;
        let data = tempfile::Builder::new()
            .prefix("cs-postgres-")
            .tempdir()
            .map_err(|error| error.to_string())?;
        // initdb refuses to run as root: as root, the server runs as the `postgres` user.
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(data.path())
                .status()
                .map_err(|error| error.to_string())?;
            if !status.success() {
                return Err("cannot hand the data directory to the postgres user".into());
            }
        }
        let server = Self {
            data,
            bin,
            port: free_port(),
        };
        let pgdata = server.data.path().join("pgdata");
        server.run(
            as_postgres,
            "initdb",
            &[
                "-A",
                "trust",
                "-U",
                "root",
                "--no-sync",
                "-D",
                &pgdata.display().to_string(),
            ],
        )?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            server.port,
            server.data.path().display()
        );
        server.run(
            as_postgres,
            "pg_ctl",
            &[
                "-D",
                &pgdata.display().to_string(),
                "-o",
                &options,
                "-l",
                &server.data.path().join("log").display().to_string(),
                "-w",
                "start",
            ],
        )?;
        Ok(server)
    }

    fn run(&self, as_postgres: bool, program: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(program);
        let mut command = if as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("{}: {error}", program.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed: {}",
                program.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// The URL of its `postgres` database, as role `root`.
    pub fn admin_url(&self) -> String {
        format!("postgres://root@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let pgdata = self.data.path().join("pgdata").display().to_string();
        let _ = self.run(
            is_root(),
            "pg_ctl",
            &["-D", &pgdata, "-m", "immediate", "-w", "stop"],
        );
    }
}

/// A database of one test's own: created on the server `admin_url` names, dropped (with any
/// connections still open to it) when this is dropped.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    pub async fn create(admin_url: &str) -> Self {
        let name = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(admin_url)
            .await
            .expect("the PostgreSQL admin URL must reach a server");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("CREATE DATABASE");
        let _ = admin.close().await;
        let (base, query) = match admin_url.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (admin_url, String::new()),
        };
        let server = base.rsplit_once('/').map_or(base, |(server, _database)| server);
        Self {
            url: format!("{server}/{name}{query}"),
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime, which must not block on itself: a thread of
        // its own with a runtime of its own does the drop.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = tokio::time::timeout(Duration::from_secs(10), Database::connect(&admin_url))
                    .await
                    .ok()?
                    .ok()?;
                let result = admin.execute_unprepared(&statement).await;
                let _ = admin.close().await;
                result.ok()
            })
        });
        let _ = dropped.join();
    }
}
