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

/// Three clients, 1,000 messages each, inserted concurrently: each client gets exactly its own
/// messages, once, and all are acked. (Also exercises SQLite write contention; the number of
/// failed stream fetches is printed.)
#[tokio::test]
async fn three_clients_thousand_each_concurrently() {
    let server = Server::start(ServerOptions::default()).await;
    let admin = server.admin().await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let c = GoClient::start(&server, ClientOptions::default()).await;
        let id = c.client_id().await;
        checks::enrolled(&admin, &id, Duration::from_secs(30)).await;
        clients.push((c, id));
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (_, id) in &clients {
        let (admin, id) = (admin.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(N);
            for i in 0..N {
                ids.push(
                    admin
                        .insert(&id, "TestService", "bulk", format!("bulk {i}").as_bytes())
                        .await
                        .expect("InsertMessage"),
                );
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.expect("insert task"));
    }
    eprintln!("inserted 3×{N} in {:.1?}", start.elapsed());
    for ((c, _), ids) in clients.iter().zip(&all) {
        let got = checks::delivered(c, ids, Duration::from_secs(180)).await;
        checks::assert_no_duplicates(&got);
        // Nothing meant for another client.
        let mine: BTreeSet<&[u8]> = ids.iter().map(Vec::as_slice).collect();
        let stray = message_ids(&got)
            .iter()
            .filter(|id| !mine.contains(id.as_slice()))
            .count();
        assert_eq!(stray, 0, "{stray} message(s) of other clients delivered");
    }
    eprintln!("delivered after {:.1?}", start.elapsed());
    for ids in &all {
        checks::acked(&admin, ids, Duration::from_secs(120)).await;
    }
    eprintln!("acked after {:.1?}", start.elapsed());
    let log = server.log_text();
    let retries = log.lines().filter(|l| l.contains("retrying")).count();
    let failed_fetches = log
        .lines()
        .filter(|l| l.contains("fetching messages for a stream failed"))
        .count();
    eprintln!(
        "store retries logged: {retries}; stream fetches failed after all retries: {failed_fetches}"
    );
}
