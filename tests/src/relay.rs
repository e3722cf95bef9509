//! A TCP relay between clients and a server that can lose what the server sends: it stands for a
//! network path that dies while a stream is open. TLS passes through it untouched.
//!
//! [`Relay::hold`] stops forwarding server → client bytes (they are kept back, never delivered);
//! [`Relay::cut`] then closes every open connection, dropping what was held, and relays new
//! connections normally again. A message the server pushed in between was written and leased
//! but never reached the client, exactly as when its frontend is killed mid-stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    holding: AtomicBool,
    accepted: AtomicUsize,
    /// Bumped by every cut; a connection ends when it changes.
    cuts: watch::Sender<u64>,
}

/// A running relay; stops accepting when dropped.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens on `127.0.0.1:0` and relays every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the relay");
        let addr = listener.local_addr().expect("relay address");
        let shared = Arc::new(Shared {
            upstream,
            holding: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            cuts: watch::channel(0).0,
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        Relay { addr, shared, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// From now on, bytes from the server are kept back from the clients.
    pub fn hold(&self) {
        self.shared.holding.store(true, Ordering::SeqCst);
    }

    /// Closes every open connection (what was held is lost) and relays normally again.
    pub fn cut(&self) {
        self.shared.holding.store(false, Ordering::SeqCst);
        self.shared.cuts.send_modify(|n| *n += 1);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let cuts = shared.cuts.subscribe();
        tokio::spawn(pipe(client, shared.clone(), cuts));
    }
}

async fn pipe(client: TcpStream, shared: Arc<Shared>, mut cuts: watch::Receiver<u64>) {
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let up = tokio::io::copy(&mut from_client, &mut to_server);
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from_server.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            if shared.holding.load(Ordering::SeqCst) {
                // Kept back until the cut ends this connection.
                std::future::pending::<()>().await;
            }
            to_client.write_all(&buf[..n]).await?;
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cuts.changed() => {}
    }
}
