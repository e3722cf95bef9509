//! The distributed deployment of Fleetspeak's scaling guide (docs/DISTRIBUTED.md): MariaDB, two
//! Fleetgate frontends (mTLS, `proxy_protocol: true`, HTTP notification listeners) behind
//! haproxy with `send-proxy-v2` and with `send-proxy`, one admin-only Fleetgate with
//! `notification_use_http_notifier: true`, and real Go clients.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use fleetgate_tests::daemon::{Received, message_ids};
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::haproxy::SOURCE_IP;
use fleetgate_tests::node::Flavor;
use fleetgate_tests::ports::client_ports_to;
use fleetgate_tests::{Admin, eventually};

/// Streams last 10 minutes; without a notification a message would wait for the next one.
/// Anything delivered well inside this came through a notification.
const PROMPT: Duration = Duration::from_secs(20);

/// Waits until every client streams to a frontend of the fleet with a recent contact, and
/// returns the index of the frontend each one streams to.
async fn streaming_frontends(
    fleet: &Fleet,
    admin: &Admin,
    ids: &[Vec<u8>],
    exclude: Option<usize>,
) -> Vec<usize> {
    eventually(
        Duration::from_secs(60),
        "every client to stream to a live frontend",
        || async {
            let all = admin.list_clients(&[]).await?;
            let mut at = Vec::new();
            for id in ids {
                let c = all
                    .iter()
                    .find(|c| &c.client_id == id)
                    .ok_or_else(|| anyhow!("{} not enrolled yet", hex::encode(id)))?;
                let f = fleet
                    .frontend_by_address(&c.last_contact_streaming_to)
                    .ok_or_else(|| {
                        anyhow!(
                            "{} streams to {:?}",
                            hex::encode(id),
                            c.last_contact_streaming_to
                        )
                    })?;
                if Some(f) == exclude {
                    bail!("{} still recorded on the killed frontend", hex::encode(id));
                }
                at.push(f);
            }
            Ok(at)
        },
    )
    .await
}

/// The recorded address of each client is its own socket towards haproxy (PROXY worked), not
/// haproxy's connection to the frontend (which comes from [`SOURCE_IP`]).
async fn addresses_are_the_clients_own(
    fleet: &Fleet,
    admin: &Admin,
    ids: &[Vec<u8>],
    proxy_of: &[usize],
) {
    eventually(
        Duration::from_secs(30),
        "recorded addresses to be the clients' own",
        || async {
            let all = admin.list_clients(&[]).await?;
            for (id, &p) in ids.iter().zip(proxy_of) {
                let c = all
                    .iter()
                    .find(|c| &c.client_id == id)
                    .ok_or_else(|| anyhow!("not listed"))?;
                let addr = &c.last_contact_address;
                if addr.starts_with(SOURCE_IP) {
                    panic!(
                        "{} recorded haproxy's address {addr}: the PROXY header was ignored",
                        hex::encode(id)
                    );
                }
                let port: u16 = addr
                    .strip_prefix("127.0.0.1:")
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| anyhow!("unexpected address {addr:?}"))?;
                let own = client_ports_to(fleet.proxies[p].listen.port());
                if !own.contains(&port) {
                    bail!(
                        "{} recorded {addr}, not one of the client ports to haproxy {own:?}",
                        hex::encode(id)
                    );
                }
            }
            Ok(())
        },
    )
    .await;
}

/// How many message ids the daemon recorded more than once.
fn duplicates(records: &[Received]) -> usize {
    let mut seen = BTreeSet::new();
    message_ids(records)
        .into_iter()
        .filter(|id| !seen.insert(id.clone()))
        .count()
}

async fn insert_one_each(admin: &Admin, ids: &[Vec<u8>], tag: &str) -> Vec<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for id in ids {
        let m = admin
            .insert(id, "TestService", "plain", tag.as_bytes())
            .await
            .expect("InsertMessage on the admin server");
        out.push(vec![m]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_server_notifies_frontends_behind_haproxy() {
    let mut fleet = Fleet::start("dist", 2).await;
    let proxy_of = [0, 0, 0, 1, 1, 1];
    for &p in &proxy_of {
        fleet.start_client(p);
    }
    let mut ids = Vec::new();
    for c in &fleet.clients {
        ids.push(c.client_id().await);
    }
    let admin = fleet.admin().await;

    // Both frontends hold streams (haproxy balances by least connections).
    let at = streaming_frontends(&fleet, &admin, &ids, None).await;
    let used: BTreeSet<usize> = at.iter().copied().collect();
    assert_eq!(
        used.len(),
        2,
        "haproxy put every stream on one frontend: {at:?}"
    );
    addresses_are_the_clients_own(&fleet, &admin, &ids, &proxy_of).await;

    // Messages inserted on the admin-only server reach every client promptly, through HTTP
    // notifications to the frontend holding each stream.
    let start = Instant::now();
    let sent = insert_one_each(&admin, &ids, "first").await;
    for (c, m) in fleet.clients.iter_mut().zip(&sent) {
        c.wait_delivered(m, PROMPT).await;
    }
    let took = start.elapsed();
    assert!(took < PROMPT, "delivery took {took:?}");
    let notified = fleet.admin_node.log_lines("notification sent");
    assert!(
        notified.len() >= ids.len(),
        "admin log shows {} notifications sent",
        notified.len()
    );
    for (i, f) in fleet.frontends.iter().enumerate() {
        let got = f.node.log_lines("notification received").len();
        let holds = at.iter().filter(|&&x| x == i).count();
        assert!(
            got >= holds,
            "{} received {got} notifications for {holds} streams",
            f.node.name
        );
    }
    eprintln!("{} messages via notifications in {took:?}", ids.len());

    // Fault: SIGKILL frontend 0 while clients stream and messages keep being inserted.
    let flowing = Arc::new(AtomicBool::new(true));
    let sent: Arc<Mutex<Vec<Vec<Vec<u8>>>>> = Arc::new(Mutex::new(vec![Vec::new(); ids.len()]));
    let inserter = {
        let (admin, ids, flowing, sent) =
            (admin.clone(), ids.clone(), flowing.clone(), sent.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while flowing.load(Ordering::Relaxed) {
                for (i, id) in ids.iter().enumerate() {
                    let payload = format!("flow {n}");
                    let m = admin
                        .insert(id, "TestService", "plain", payload.as_bytes())
                        .await;
                    let m = m.expect("InsertMessage must succeed while a frontend is down");
                    sent.lock().unwrap_or_else(|p| p.into_inner())[i].push(m);
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    fleet.frontends[0].node.kill().await;
    let killed_at = Instant::now();
    // Some of these were pushed to streams on frontend 0 and never acked: the clients' new
    // streams on frontend 1 supersede those contacts, so they come back within seconds instead
    // of after the 15-minute lease.
    let before_kill = sent.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let at = streaming_frontends(&fleet, &admin, &ids, Some(0)).await;
    let back = killed_at.elapsed();
    eprintln!("every client back on a live frontend {back:?} after the kill: {at:?}");
    for (c, m) in fleet.clients.iter_mut().zip(&before_kill) {
        c.wait_delivered(m, Duration::from_secs(90)).await;
    }
    let delivered = killed_at.elapsed();
    // One line per new stream that found unacknowledged leases of a superseded contact.
    let superseding = fleet.frontends[1]
        .node
        .log_lines("superseded contacts due again")
        .len();
    eprintln!(
        "redelivery: the {} messages inserted before the kill all delivered {delivered:?} after it ({:?} after the clients were back); {superseding} new stream(s) made lost leases due again",
        before_kill.iter().map(Vec::len).sum::<usize>(),
        delivered.saturating_sub(back)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    flowing.store(false, Ordering::Relaxed);
    inserter.await.expect("inserter task");
    let flowed = sent.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let last = insert_one_each(&admin, &ids, "after").await;
    for (i, c) in fleet.clients.iter_mut().enumerate() {
        let mut all = flowed[i].clone();
        all.extend(last[i].iter().cloned());
        c.wait_delivered(&all, Duration::from_secs(90)).await;
    }
    // Delivery is at least once, and not asserted to be exactly once here: a message whose
    // MessageAck was in a frame frontend 0 never acknowledged is re-sent by the client on its new
    // stream, usually in the first frame, which the grace waits for; one that arrives later
    // than the grace (a loaded machine) gets the message a second time. The count is printed so
    // the runs recorded in docs/DISTRIBUTED.md show how often that happens.
    let dups: usize = fleet
        .clients
        .iter()
        .map(|c| duplicates(&c.received()))
        .sum();
    eprintln!(
        "all {} messages inserted around the kill delivered; {dups} delivered twice",
        flowed.iter().map(Vec::len).sum::<usize>() + ids.len()
    );
    assert!(
        !fleet.admin_node.log_lines("notification failed").is_empty(),
        "notifications to the killed frontend should have failed (and been logged)"
    );
    fleet.frontends[1].node.check_running();
    fleet.admin_node.check_running();
    for p in &mut fleet.proxies {
        p.check_running();
    }
}

/// Mixed fleets on one database: a notification crosses between a Go server and Fleetgate.
async fn notification_crosses(admin: Flavor, frontend: Flavor) -> Fleet {
    let mut fleet = Fleet::start_mixed("mixed", admin, &[frontend]).await;
    fleet.start_client(0);
    fleet.start_client(1);
    let ids = vec![
        fleet.clients[0].client_id().await,
        fleet.clients[1].client_id().await,
    ];
    let admin = fleet.admin().await;
    streaming_frontends(&fleet, &admin, &ids, None).await;
    // Let the streams settle past their first fetch, so only a notification can deliver.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = Instant::now();
    let sent = insert_one_each(&admin, &ids, "mixed").await;
    for (c, m) in fleet.clients.iter_mut().zip(&sent) {
        c.wait_delivered(m, PROMPT).await;
    }
    eprintln!(
        "{admin_flavor:?} admin → {frontend:?} frontend: delivered in {:?}",
        start.elapsed(),
        admin_flavor = fleet.admin_node.flavor
    );
    fleet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_admin_server_notifies_a_fleetgate_frontend() {
    let fleet = notification_crosses(Flavor::Go, Flavor::Fleetgate).await;
    let got = fleet.frontends[0]
        .node
        .log_lines("notification received")
        .len();
    assert!(
        got >= 2,
        "the Fleetgate frontend logged {got} notifications from the Go admin server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleetgate_admin_server_notifies_a_go_frontend() {
    let fleet = notification_crosses(Flavor::Fleetgate, Flavor::Go).await;
    let sent = fleet.admin_node.log_lines("notification sent").len();
    assert!(
        sent >= 2,
        "the Fleetgate admin server logged {sent} notifications to the Go frontend"
    );
    assert!(fleet.admin_node.log_lines("notification failed").is_empty());
}

/// Restarts the machine's MariaDB: every other test using it fails meanwhile, so this one runs
/// only on request (`cargo test -p fleetgate-tests --test distributed -- --ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the shared MariaDB server; run alone with --ignored"]
async fn mariadb_restart_is_survived() {
    let mut fleet = Fleet::start("restart", 2).await;
    fleet.start_client(0);
    fleet.start_client(1);
    let ids = vec![
        fleet.clients[0].client_id().await,
        fleet.clients[1].client_id().await,
    ];
    let admin = fleet.admin().await;
    streaming_frontends(&fleet, &admin, &ids, None).await;

    fleetgate_tests::mariadb::shutdown_server().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    fleetgate_tests::mariadb::start_server().await;

    for f in &mut fleet.frontends {
        f.node.check_running();
    }
    fleet.admin_node.check_running();
    // The first calls after the restart may meet dead pooled connections; the caller retries,
    // as GRR's connector does.
    let mut sent = Vec::new();
    for id in &ids {
        let m = eventually(
            Duration::from_secs(60),
            "InsertMessage after the restart",
            || admin.insert(id, "TestService", "plain", b"after restart"),
        )
        .await;
        sent.push(vec![m]);
    }
    for (c, m) in fleet.clients.iter_mut().zip(&sent) {
        c.wait_delivered(m, Duration::from_secs(90)).await;
    }
}
