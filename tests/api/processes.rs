//! Real processes a test can kill: a private `redis-server`, and the service binary itself.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

/// A `redis-server` of the test's own on a free port, keeping nothing on disk, so the test can
/// kill it and start it again on the same port without touching the shared Redis.
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    tls: Option<RedisTls>,
    child: Option<Child>,
}

/// A private CA and a server certificate for `localhost`, written where redis-server reads them.
pub struct RedisTls {
    dir: tempfile::TempDir,
    pub ca_pem: String,
}

impl RedisTls {
    pub fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), server_cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
        Self {
            dir,
            ca_pem: ca_cert.pem(),
        }
    }

    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }
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
            tls: None,
            child: None,
        };
        server.restart();
        server
    }

    /// TLS only (`rediss://localhost:…`), with a password, certificates from a private CA.
    pub fn start_tls(password: &str) -> Self {
        let mut server = Self {
            port: free_port(),
            password: Some(password.to_owned()),
            tls: Some(RedisTls::generate()),
            child: None,
        };
        server.restart();
        server
    }

    pub fn tls(&self) -> Option<&RedisTls> {
        self.tls.as_ref()
    }

    pub fn url(&self) -> String {
        let (scheme, host) = match self.tls {
            Some(_) => ("rediss", "localhost"),
            None => ("redis", "127.0.0.1"),
        };
        match &self.password {
            Some(password) => format!("{scheme}://:{password}@{host}:{}", self.port),
            None => format!("{scheme}://{host}:{}", self.port),
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
        let port = self.port.to_string();
        match &self.tls {
            Some(tls) => {
                let file = |name: &str| tls.dir.path().join(name).display().to_string();
                command.args(["--port", "0", "--tls-port", &port]);
                command.args(["--tls-cert-file", &file("server.pem")]);
                command.args(["--tls-key-file", &file("server.key")]);
                command.args(["--tls-ca-cert-file", &file("ca.pem")]);
                command.args(["--tls-auth-clients", "no"]);
            }
            None => {
                command.args(["--port", &port]);
            }
        }
        command.args([
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
        let client = match &self.tls {
            Some(tls) => redis::Client::build_with_tls(
                self.url(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(tls.ca_pem.clone().into_bytes()),
                },
            ),
            None => redis::Client::open(self.url()),
        };
        client.unwrap().get_multiplexed_async_connection().await.unwrap()
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
    logged: Arc<Mutex<Vec<String>>>,
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
            // Tests run in parallel: no fixed port.
            .env("METRICS_LISTEN_ADDR", "127.0.0.1:0")
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
        let logged = Arc::new(Mutex::new(Vec::new()));
        let address = loop {
            let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) else {
                let _ = child.kill();
                panic!("the service never logged \"serving gRPC\"");
            };
            let address = line
                .contains("serving gRPC")
                .then(|| logged_address(&line))
                .flatten();
            logged.lock().unwrap().push(line);
            if let Some(address) = address {
                break address;
            }
        };
        // Keep draining so the child never blocks on a full pipe, and keep every line.
        let keeper = logged.clone();
        std::thread::spawn(move || {
            for line in lines {
                keeper.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            address,
            logged,
        }
    }

    /// Waits until health reports the named service SERVING (migrations applied).
    pub async fn wait_serving(&self) {
        wait_for_serving(&self.address).await;
    }

    /// Waits (up to 10 s) until a logged line contains `needle`: lines reach us through a pipe
    /// and a reader thread, a moment after the call that caused them has returned.
    pub async fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if logs.contains(needle) || Instant::now() > deadline {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every line logged so far.
    pub fn logs(&self) -> String {
        self.logged.lock().unwrap().join("\n")
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

/// Waits until plain-text health at `address` reports the named service SERVING (migrations
/// applied, database answering).
pub async fn wait_for_serving(address: &str) {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_lazy();
    let mut health = HealthClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let request = HealthCheckRequest {
            service: certification_service::startup::SERVICE_NAME.into(),
        };
        if let Ok(answer) = health.check(request).await
            && answer.into_inner().status == 1
        {
            return;
        }
        assert!(Instant::now() < deadline, "{address} never reported SERVING");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The `address` field of a log line, in text (`address=…`) or JSON (`"address":"…"`) format.
fn logged_address(line: &str) -> Option<String> {
    let text = line
        .split("address=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next());
    let json = line
        .split("\"address\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next());
    json.or(text).map(str::to_owned)
}
