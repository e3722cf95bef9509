//! A router component re-addresses, annotates, fans out and drops.
#![allow(clippy::unwrap_used)]

mod support;

use fleetgate_pb::fleetspeak::annotations::Entry;
use fleetgate_runtime::{Capability, ComponentRouter, Grants};
use support::{client_message, host, runtime, spec};

fn router() -> ComponentRouter {
    // `clients`: the example reads client labels for its rules.
    let grants = Grants::basic().with(Capability::Clients);
    let mut spec = spec("router", "router_example", grants);
    spec.config = b"Archive".to_vec();
    ComponentRouter::load(&runtime(), spec, host().0).unwrap()
}

#[tokio::test]
async fn re_addresses_and_annotates_keeping_the_payload() {
    let m = client_message("GRR", "Report", 1);
    let out = router().route(&m).await.unwrap();
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(r.destination.as_ref().unwrap().service_name, "Archive");
    assert_eq!(r.data, m.data);
    assert_eq!(r.message_id, m.message_id);
    assert_eq!(
        r.annotations.as_ref().unwrap().entries,
        vec![Entry {
            key: "routed-by".into(),
            value: "router-example".into()
        }]
    );
}

#[tokio::test]
async fn fans_out_and_drops() {
    let router = router();
    let out = router
        .route(&client_message("GRR", "fanout", 2))
        .await
        .unwrap();
    let names: Vec<_> = out
        .iter()
        .map(|m| m.destination.as_ref().unwrap().service_name.as_str())
        .collect();
    assert_eq!(names, ["Archive", "Archive-audit"]);
    assert!(
        router
            .route(&client_message("GRR", "drop", 3))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(router.stats().calls, 2);
}

#[tokio::test]
async fn a_service_component_is_not_a_router() {
    let err = ComponentRouter::load(
        &runtime(),
        spec("r", "test_trap", Grants::basic()),
        host().0,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("`router` world"), "{err}");
}
