//! A `redis-server` of a test's own, with or without TLS and a password.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::free_port;

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
