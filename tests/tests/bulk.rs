//! 1,000 messages in a row: all delivered exactly once and all acked.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fleetgate_tests::daemon::message_ids;
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks};

const N: usize = 1000;

#[tokio::test]
async fn thousand_messages_arrive_once_and_are_acked() {
    let server = Server::start(ServerOptions::default()).await;
    let client = GoClient::start(&server, ClientOptions::default()).await;
    let id = client.client_id().await;
    let admin = server.admin().await;
    checks::enrolled(&admin, &id, Duration::from_secs(30)).await;

    let start = Instant::now();
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        ids.push(
            admin
                .insert(&id, "TestService", "bulk", format!("bulk {i}").as_bytes())
                .await
                .expect("InsertMessage"),
        );
    }
    let inserted = start.elapsed();
    // The inbox takes 100 at a time; each round trip needs the daemon to process and the client
    // to return tokens, so allow generously for 2 loaded cores.
    let got = checks::delivered(&client, &ids, Duration::from_secs(120)).await;
    let delivered = start.elapsed();
    checks::acked(&admin, &ids, Duration::from_secs(60)).await;
    eprintln!(
        "inserted {N} in {inserted:.1?}, delivered after {delivered:.1?}, acked after {:.1?}",
        start.elapsed()
    );

    // Every id exactly once, and nothing that was not sent — re-read after the acks, so a
    // late re-send would show up too.
    let got_after = client.received();
    assert!(got_after.len() >= got.len());
    checks::assert_no_duplicates(&got_after);
    let want: BTreeSet<Vec<u8>> = ids.iter().cloned().collect();
    let have: BTreeSet<Vec<u8>> = message_ids(&got_after).into_iter().collect();
    assert_eq!(want.len(), N, "random ids collided");
    assert_eq!(have, want, "the received set differs from the inserted set");
}
