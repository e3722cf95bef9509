//! Resource usage checks 36–39.

use std::sync::Arc;
use std::time::Duration;

use fleetgate_types::pb::fleetspeak::monitoring::{AggregatedResourceUsage, ResourceUsageData};
use fleetgate_types::time::{from_timestamp, to_timestamp};
use fleetgate_types::{Clock, FakeClock};

use super::{Case, client, ok, ts};
use crate::Store;

pub fn cases() -> Vec<Case> {
    vec![Case {
        name: "resource_usage",
        checks: "36-39",
        run: |s, c| Box::pin(resource_usage(s, c)),
    }]
}

async fn resource_usage(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set(super::secs(1_700_000_000) + Duration::from_nanos(123_456_789));
    super::messages::add_client(&*s, 1).await;
    let mib = 1024.0 * 1024.0;
    let rud = ResourceUsageData {
        scope: "test-scope".into(),
        pid: 1234,
        process_start_time: ts(1234567890, 98765),
        data_timestamp: ts(1234567891, 98765),
        process_terminated: true,
        resource_usage: Some(AggregatedResourceUsage {
            mean_user_cpu_rate: 50.0,
            max_user_cpu_rate: 60.0,
            mean_system_cpu_rate: 70.0,
            max_system_cpu_rate: 80.0,
            mean_resident_memory: 190.0 * mib,
            max_resident_memory: 200 * 1024 * 1024,
            mean_num_fds: 13.4,
            max_num_fds: 42,
        }),
        ..Default::default()
    };
    let before = clock.now();
    clock.advance(Duration::from_nanos(1));
    ok(
        "record_resource_usage_data",
        s.record_resource_usage_data(client(1), &rud).await,
    );
    // 36
    let got = ok(
        "fetch",
        s.fetch_resource_usage_records(client(1), before, before + Duration::from_secs(60))
            .await,
    );
    assert_eq!(got.len(), 1);
    let r = got[0].clone();
    let server_ts = r.server_timestamp.unwrap_or_default();
    assert_eq!(server_ts, to_timestamp(clock.now()));
    let want = fleetgate_types::pb::fleetspeak::server::ClientResourceUsageRecord {
        scope: "test-scope".into(),
        pid: 1234,
        process_start_time: ts(1234567890, 98765),
        client_timestamp: ts(1234567891, 98765),
        server_timestamp: Some(server_ts),
        mean_user_cpu_rate: 50.0,
        max_user_cpu_rate: 60.0,
        mean_system_cpu_rate: 70.0,
        max_system_cpu_rate: 80.0,
        mean_resident_memory_mib: 190,
        max_resident_memory_mib: 200,
        process_terminated: true,
        mean_num_fds: 13,
        max_num_fds: 42,
    };
    assert_eq!(r, want);
    let exact =
        from_timestamp(&server_ts).unwrap_or_else(|| panic!("bad server timestamp {server_ts:?}"));
    let ns = Duration::from_nanos(1);
    // 37
    assert_eq!(
        ok(
            "fetch before",
            s.fetch_resource_usage_records(client(1), exact - ns, exact)
                .await
        )
        .len(),
        0
    );
    // 38
    assert!(
        s.fetch_resource_usage_records(client(1), exact, exact - ns)
            .await
            .is_err()
    );
    // 39
    assert_eq!(
        ok(
            "fetch at",
            s.fetch_resource_usage_records(client(1), exact, exact + ns)
                .await
        )
        .len(),
        1
    );
    // Missing timestamps are refused.
    let bad = ResourceUsageData {
        process_start_time: None,
        ..rud
    };
    assert!(s.record_resource_usage_data(client(1), &bad).await.is_err());
}
