//! The entry point for the notification listener's fuzz target (`host/frontend/fuzz`, target
//! `notify_request`) and its stable stand-in test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetgate_types::ClientId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::listener::{HEADER_READ_TIMEOUT, serve_connection};
use crate::{Dispatch, Stats};

/// Sends `data` as everything a peer writes on one connection to the listener, then closes its
/// side. The connection must end by itself, and every client id dispatched must be spelled in
/// hex somewhere in `data` (nothing else can name a client).
pub fn notify_request(data: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    let dispatched = Arc::new(Mutex::new(Vec::<ClientId>::new()));
    let record = dispatched.clone();
    let dispatch: Dispatch = Arc::new(move |client| {
        record.lock().expect("not poisoned").push(client);
        true
    });
    let stats = Arc::new(Stats::default());
    runtime.block_on(async {
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(serve_connection(
            ours,
            dispatch,
            stats.clone(),
            None,
            CancellationToken::new(),
            HEADER_READ_TIMEOUT,
        ));
        let exchange = async {
            let (mut rd, mut wr) = tokio::io::split(&mut peer);
            let send = async {
                let _ = wr.write_all(data).await;
                let _ = wr.shutdown().await;
            };
            let mut answer = Vec::new();
            let _ = tokio::join!(send, rd.read_to_end(&mut answer));
            server.await.expect("the connection task does not panic")
        };
        // Paused time would hide a wait; a real one is generous for a few KiB of input.
        let _ = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .expect("the connection ends once the peer has sent everything and closed");
    });
    let text = String::from_utf8_lossy(data).to_ascii_lowercase();
    for client in dispatched.lock().expect("not poisoned").iter() {
        assert!(
            text.contains(&client.to_hex()),
            "dispatched {client} not named in the request"
        );
    }
    assert_eq!(
        stats.received(),
        dispatched.lock().expect("not poisoned").len() as u64
    );
}
