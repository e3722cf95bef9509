//! Housekeeping (Fleetgate's own, no checklist number): pending-queue counts and retention
//! pruning in bounded batches, never touching pending messages, cascading contact links.

use std::sync::Arc;
use std::time::Duration;

use fleetgate_types::pb::fleetspeak::monitoring::ResourceUsageData;
use fleetgate_types::{Clock, FakeClock};

use super::messages::{add_client, contact, processed};
use super::{Case, client, mid, ok, secs, to_client, to_server};
use crate::{PendingCounts, Store};

pub fn cases() -> Vec<Case> {
    vec![Case {
        name: "retention",
        checks: "retention",
        run: |s, c| Box::pin(retention(s, c)),
    }]
}

const T0: u64 = 1_700_000_000;
const DAY: u64 = 86_400;

/// One resource-usage record for client 1, received now.
async fn record_usage(s: &dyn Store, scope: &str) {
    let rud = ResourceUsageData {
        scope: scope.into(),
        process_start_time: super::ts(1, 0),
        data_timestamp: super::ts(2, 0),
        ..Default::default()
    };
    ok(
        "record rud",
        s.record_resource_usage_data(client(1), &rud).await,
    );
}

async fn retention(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set(secs(T0));
    add_client(&*s, 1).await;
    let old_contacts = [contact(&*s, 1).await, contact(&*s, 1).await];
    record_usage(&*s, "old").await;

    // Old: one finished client-bound, one pending client-bound, one pending server-bound.
    let mut finished = to_client(
        mid("00000000000000000000000000000001"),
        client(1),
        "svc",
        T0 as i64,
    );
    finished.result = Some(processed(T0 as i64, 0));
    let pending = to_client(
        mid("00000000000000000000000000000002"),
        client(1),
        "svc",
        T0 as i64,
    );
    let backlog = to_server(
        mid("00000000000000000000000000000003"),
        client(1),
        "svc",
        T0 as i64,
    );
    let msgs = [finished.clone(), pending, backlog];
    ok(
        "store old",
        s.store_messages(&msgs, Some(old_contacts[0])).await,
    );

    clock.set(secs(T0 + 10 * DAY));
    let new_contact = contact(&*s, 1).await;
    record_usage(&*s, "new").await;
    let mut recent = to_client(
        mid("00000000000000000000000000000004"),
        client(1),
        "svc",
        (T0 + 10 * DAY) as i64,
    );
    recent.result = Some(processed((T0 + 10 * DAY) as i64, 0));
    ok(
        "store new",
        s.store_messages(std::slice::from_ref(&recent), Some(new_contact))
            .await,
    );
    // A link from a contact that stays to a message that goes.
    let finished_id = mid("00000000000000000000000000000001");
    ok(
        "link",
        s.link_messages_to_contact(new_contact, &[finished_id])
            .await,
    );

    let counts = ok("pending_counts", s.pending_counts().await);
    assert_eq!(
        counts,
        PendingCounts {
            to_clients: 1,
            to_servers: 1
        }
    );

    let cutoff = clock.now() - Duration::from_secs(5 * DAY);
    // Batches are bounded: two old contacts, one per call.
    assert_eq!(ok("prune_contacts", s.prune_contacts(cutoff, 1).await), 1);
    assert_eq!(ok("prune_contacts", s.prune_contacts(cutoff, 1).await), 1);
    assert_eq!(ok("prune_contacts", s.prune_contacts(cutoff, 1).await), 0);
    let left = ok(
        "list_client_contacts",
        s.list_client_contacts(client(1)).await,
    );
    assert_eq!(left.len(), 1, "only the new contact remains: {left:?}");

    // Only the old finished message goes; pending ones of either direction stay.
    assert_eq!(ok("prune_messages", s.prune_messages(cutoff, 10).await), 1);
    assert_eq!(ok("prune_messages", s.prune_messages(cutoff, 10).await), 0);
    let ids: Vec<_> = (1..=4).map(|i| mid(&format!("{i:032}"))).collect();
    let kept = ok(
        "get_existing_messages",
        s.get_existing_messages(&ids, false).await,
    );
    let kept: Vec<_> = kept.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(kept.len(), 3, "pending and recent messages stay");
    assert!(
        !kept.contains(&finished_id.to_vec()),
        "the old finished message is gone"
    );
    let counts = ok("pending_counts", s.pending_counts().await);
    assert_eq!(
        counts,
        PendingCounts {
            to_clients: 1,
            to_servers: 1
        }
    );

    assert_eq!(
        ok(
            "prune_resource_usage",
            s.prune_resource_usage(cutoff, 10).await
        ),
        1
    );
    let recs = ok(
        "fetch_resource_usage_records",
        s.fetch_resource_usage_records(client(1), secs(0), clock.now() + Duration::from_secs(1))
            .await,
    );
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].scope, "new");
}
