//! A TCP proxy for fault tests, put in front of PortOne (the sandbox), PostgreSQL or Redis. It
//! passes bytes through, delays them, cuts every connection (reset; new ones are reset on
//! accept), or blackholes them (connections stay open and nothing crosses, as when packets are
//! dropped on the way). Leaving a blackhole closes the connections it held.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Each chunk waits this long before it is sent on, in both directions.
    Latency(Duration),
    Cut,
    Blackhole,
}

impl Mode {
    fn forwards(self) -> bool {
        matches!(self, Mode::Pass | Mode::Latency(_))
    }
}

pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accepting: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accepting.abort();
        // Connections follow: their handlers end when the mode channel closes.
    }
}

impl FaultProxy {
    /// Starts passing connections to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, watcher) = watch::channel(Mode::Pass);
        let accepting = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(connection(client, upstream, watcher.clone()));
            }
        });
        Self {
            addr,
            mode,
            accepting,
        }
    }

    /// Where clients connect instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    pub fn pass(&self) {
        self.set(Mode::Pass);
    }

    pub fn cut(&self) {
        self.set(Mode::Cut);
    }

    pub fn blackhole(&self) {
        self.set(Mode::Blackhole);
    }
}

/// A reset rather than a polite close: what a crashed server or a dropped route looks like.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn connection(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let _ = client.set_nodelay(true);
    let current = *mode.borrow_and_update();
    match current {
        Mode::Cut => return reset(client),
        Mode::Blackhole => {
            hold_while_blackholed(&mut mode).await;
            return;
        }
        Mode::Pass | Mode::Latency(_) => {}
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return reset(client);
    };
    let _ = server.set_nodelay(true);
    let stopped_by = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let up = pump(&mut client_read, &mut server_write, mode.clone());
        let down = pump(&mut server_read, &mut client_write, mode.clone());
        tokio::select! {
            _ = async { tokio::join!(up, down) } => return,
            changed = mode.wait_for(|mode| !mode.forwards()) => match changed {
                Ok(mode) => *mode,
                Err(_) => return,
            },
        }
    };
    match stopped_by {
        Mode::Blackhole => {
            // Both sockets stay open and silent until the blackhole ends.
            hold_while_blackholed(&mut mode).await;
            drop((client, server));
        }
        _ => {
            reset(client);
            reset(server);
        }
    }
}

async fn hold_while_blackholed(mode: &mut watch::Receiver<Mode>) {
    let _ = mode.wait_for(|mode| *mode != Mode::Blackhole).await;
}

/// Copies one direction until either side closes, delaying each chunk by the current latency.
async fn pump(
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: &mut tokio::net::tcp::WriteHalf<'_>,
    mode: watch::Receiver<Mode>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let latency = match *mode.borrow() {
            Mode::Latency(latency) => latency,
            _ => Duration::ZERO,
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
