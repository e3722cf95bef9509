//! The bundled `Echo` plugin (a WebAssembly component granted `messaging`) with the real Go
//! client: a daemon service named `Echo` sends messages to server service `Echo`, and each comes
//! back to it once, with the same type and payload, from the plugin through the engine.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::bail;
use fleetgate_tests::grr::{self, Got};
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks, eventually};

const SERVICE: &str = "Echo";
const N: usize = 6;

async fn echo_round_trip(polling: bool) {
    let server = Server::start(ServerOptions {
        polling,
        ..Default::default()
    })
    .await;
    let client = GoClient::start(
        &server,
        ClientOptions {
            streaming: !polling,
            services: vec![SERVICE.into()],
            program: grr::sender(&[(SERVICE, "echo-test", N)]),
            ..Default::default()
        },
    )
    .await;
    let id = client.client_id().await;
    let admin = server.admin().await;

    let sent = eventually(
        Duration::from_secs(30),
        "the daemon to send its messages",
        || async {
            client.check_running()?;
            let s = grr::sent(&client, SERVICE);
            if s.len() < N {
                bail!("{} of {N} sent", s.len());
            }
            Ok(s)
        },
    )
    .await;
    assert_eq!(sent.len(), N, "the daemon sent {sent:?}");

    // Client → Echo (processed inline) → messaging.send-to-client → pending for the client →
    // pushed on the stream (or handed out at the next poll, every 2–3 s) → the daemon.
    let got: Vec<Got> = eventually(
        Duration::from_secs(40),
        &format!("{N} echoes to reach the daemon"),
        || async {
            if let Err(e) = client.check_running() {
                panic!("{e:#}");
            }
            let g = grr::got(&client, SERVICE);
            if g.len() < N {
                bail!("{} of {N} echoes received", g.len());
            }
            Ok(g)
        },
    )
    .await;
    assert_eq!(
        grr::starts(&client, SERVICE),
        1,
        "the client restarted the daemon (it re-sends everything when restarted)"
    );
    assert_eq!(got.len(), N, "more echoes than messages: {got:?}");
    for s in &sent {
        let echoes: Vec<&Got> = got.iter().filter(|g| g.payload == s.payload).collect();
        assert_eq!(
            echoes.len(),
            1,
            "the echo of {:?} (payload {}) arrived {} times: {got:?}",
            String::from_utf8_lossy(&s.source_message_id),
            hex::encode(&s.payload),
            echoes.len()
        );
        let e = echoes[0];
        assert_eq!(e.message_type, s.message_type, "echo message type");
        assert_eq!(e.source, SERVICE, "the echo's source service");
    }
    let reply_ids: BTreeSet<&[u8]> = got.iter().map(|g| g.id.as_slice()).collect();
    assert_eq!(reply_ids.len(), N, "echo message ids repeat: {got:?}");

    // Server side: each client message is stored as processed by the plugin, not failed.
    let ids: Vec<Vec<u8>> = sent
        .iter()
        .map(|s| checks::client_message_id(&id, SERVICE, &s.source_message_id))
        .collect();
    checks::acked(&admin, &ids, Duration::from_secs(30)).await;
    // And each echo the plugin sent is acknowledged by the client.
    let reply_ids: Vec<Vec<u8>> = got.iter().map(|g| g.id.clone()).collect();
    checks::acked(&admin, &reply_ids, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn streaming_echo_round_trip_through_the_plugin() {
    echo_round_trip(false).await;
}

#[tokio::test]
async fn polling_echo_round_trip_through_the_plugin() {
    echo_round_trip(true).await;
}
