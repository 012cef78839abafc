//! The service binary itself as a child process, that a test can kill.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use certification_service::grpc::proto::certification_service_client::CertificationServiceClient;
pub use certification_testkit::{RedisServer, free_port};

use crate::helpers::{READY_POLL, READY_WITHIN};

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
        Self::start_with(&[], env)
    }

    /// Starts `serve` with these flags too (`--sandbox`, say).
    pub fn start_with(flags: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_certification-service"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GRPC_LISTEN_ADDR", "127.0.0.1:0")
            // Tests run in parallel: no fixed port.
            .env("METRICS_LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            // Tests listen on 127.0.0.1 only; a test about authentication sets its own.
            .env("ALLOW_UNAUTHENTICATED", "true")
            // Verify straight from the sandbox's fixtures, as a caller with its own merchant_uids.
            .env("REQUIRE_SESSION", "false")
            .envs(env.iter().copied())
            .arg("serve")
            .args(flags)
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

    /// A channel to its gRPC port.
    pub fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.address))
            .unwrap()
            .connect_lazy()
    }

    /// A client of its CertificationService.
    pub fn client(&self) -> CertificationServiceClient<tonic::transport::Channel> {
        CertificationServiceClient::new(self.channel())
    }

    /// Waits until health reports the named service SERVING (migrations applied).
    pub async fn wait_serving(&self) {
        certification_testkit::wait_for_serving(&self.address, READY_WITHIN, READY_POLL)
            .await
            .unwrap();
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
