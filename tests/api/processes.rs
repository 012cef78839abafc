//! Real processes a test can kill: a private `redis-server`, and the service binary itself.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// A `redis-server` of the test's own on a free port, keeping nothing on disk, so the test can
/// kill it and start it again on the same port without touching the shared Redis.
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with_password(None)
    }

    pub fn start_with_password(password: Option<&str>) -> Self {
        let port = free_port();
        let mut server = Self {
            port,
            password: password.map(str::to_owned),
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// SIGKILL: no goodbye to connected clients, as when a node dies.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts (again) on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let mut command = Command::new("redis-server");
        command.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--loglevel",
            "warning",
        ]);
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH (the machine's Redis package provides it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `certification-service serve` binary as a child process, killed when dropped.
pub struct ServiceProcess {
    child: Child,
    pub address: String,
}

impl ServiceProcess {
    /// Starts `serve` with exactly these environment variables (besides PATH) and waits for
    /// the address it logs on binding port 0.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_certification-service"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GRPC_LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_sender, lines) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_sender.send(line).is_err() {
                    break;
                }
            }
        });
        let address = loop {
            let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) else {
                let _ = child.kill();
                panic!("the service never logged \"serving gRPC\"");
            };
            if line.contains("serving gRPC")
                && let Some(address) = line.split("address=").nth(1)
            {
                break address.trim().to_owned();
            }
        };
        // Keep draining so the child never blocks on a full pipe.
        std::thread::spawn(move || for _line in lines {});
        Self { child, address }
    }

    /// SIGKILL: the process dies holding whatever it held.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
