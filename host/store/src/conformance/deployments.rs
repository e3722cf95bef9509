//! Plugin deployments (Fleetgate's own tables): components stored once, the canary invariants,
//! promotion superseding the previous promotion, rollback with its reason, what servers serve.

use std::sync::Arc;

use fleetgate_types::FakeClock;
use sha2::{Digest, Sha256};

use super::{Case, ok, secs};
use crate::{
    DeploymentState, NewDeployment, Selection, ServingRecord, Store, StoreError, Thresholds,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "deployment_lifecycle",
            checks: "ext-deployments",
            run: |s, c| Box::pin(deployment_lifecycle(s, c)),
        },
        Case {
            name: "deployment_invariants",
            checks: "ext-deployments",
            run: |s, c| Box::pin(deployment_invariants(s, c)),
        },
        Case {
            name: "deployment_race",
            checks: "ext-deployments",
            run: |s, c| Box::pin(one_canary_under_concurrency(s, c)),
        },
        Case {
            name: "deployment_serving",
            checks: "ext-deployments",
            run: |s, c| Box::pin(deployment_serving(s, c)),
        },
    ]
}

fn new(service: &str, wasm: &[u8], selection: Selection) -> NewDeployment {
    NewDeployment {
        service: service.into(),
        digest: hex::encode(Sha256::digest(wasm)),
        wasm: wasm.to_vec(),
        config: b"\x12\x05hello".to_vec(),
        selection,
        shadow: false,
        auto_rollback: true,
        thresholds: Thresholds::default(),
        requested_by: "alice".into(),
    }
}

fn conflict<T: std::fmt::Debug>(step: &str, r: Result<T, StoreError>) -> String {
    match r {
        Err(StoreError::Conflict(m)) => m,
        other => panic!("{step}: expected a conflict, got {other:?}"),
    }
}

async fn deployment_lifecycle(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(100);
    let one = ok(
        "create",
        s.create_deployment(&new("Tag", b"component one", Selection::Share(50)))
            .await,
    );
    assert_eq!(one.state, DeploymentState::Canary);
    assert_eq!(one.selection, Selection::Share(50));
    assert_eq!(one.requested_by, "alice");
    assert_eq!(one.config, b"\x12\x05hello");
    assert!(one.auto_rollback && !one.shadow);
    assert_eq!(one.thresholds, Thresholds::default());
    assert_eq!((one.created, one.updated), (secs(100), secs(100)));
    assert_eq!(
        ok("component", s.get_component(&one.digest).await),
        b"component one"
    );
    assert!(
        s.get_component("00").await.is_err_and(|e| e.is_not_found()),
        "an unknown digest is not found"
    );
    clock.set_seconds(110);
    let promoted = ok("promote", s.promote_deployment("Tag", Some(one.id)).await);
    assert_eq!(promoted.state, DeploymentState::Promoted);
    assert_eq!(promoted.updated, secs(110));
    assert_eq!(promoted.created, secs(100));

    // A second deployment by labels; promoting it supersedes the first.
    let labels = Selection::Labels(vec!["canary".into(), "linux".into()]);
    let two = ok(
        "create two",
        s.create_deployment(&new("Tag", b"component two", labels.clone()))
            .await,
    );
    assert_eq!(two.selection, labels);
    assert!(two.id > one.id);
    let active = ok("active", s.active_deployments().await);
    assert_eq!(
        active.iter().map(|d| (d.id, d.state)).collect::<Vec<_>>(),
        vec![
            (one.id, DeploymentState::Promoted),
            (two.id, DeploymentState::Canary)
        ]
    );
    ok("promote two", s.promote_deployment("Tag", None).await);
    let history = ok("history", s.list_deployments(Some("Tag")).await);
    assert_eq!(
        history.iter().map(|d| (d.id, d.state)).collect::<Vec<_>>(),
        vec![
            (two.id, DeploymentState::Promoted),
            (one.id, DeploymentState::Superseded)
        ]
    );

    // A third is rolled back with its reason; the promoted one keeps serving.
    clock.set_seconds(120);
    let three = ok(
        "create three",
        s.create_deployment(&new("Tag", b"component one", Selection::Share(10)))
            .await,
    );
    assert_eq!(three.digest, one.digest, "same bytes, same digest");
    let rolled = ok(
        "rollback",
        s.rollback_deployment("Tag", Some(three.id), "traps: 40% over stable's 0%")
            .await,
    );
    assert_eq!(rolled.state, DeploymentState::RolledBack);
    assert_eq!(rolled.reason, "traps: 40% over stable's 0%");
    assert_eq!(rolled.updated, secs(120));
    let active = ok("active after rollback", s.active_deployments().await);
    assert_eq!(
        active.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![two.id]
    );
    assert_eq!(ok("all", s.list_deployments(None).await).len(), 3);
    assert!(ok("other service", s.list_deployments(Some("Other")).await).is_empty());
}

async fn deployment_invariants(s: Arc<dyn Store>, _clock: Arc<FakeClock>) {
    let one = ok(
        "create",
        s.create_deployment(&new("Tag", b"one", Selection::Share(0)))
            .await,
    );
    // At most one canary per service; another service is independent.
    let m = conflict(
        "second canary",
        s.create_deployment(&new("Tag", b"two", Selection::Share(100)))
            .await,
    );
    assert!(m.contains("already has deployment"), "{m}");
    ok(
        "other service",
        s.create_deployment(&new("Other", b"two", Selection::Share(100)))
            .await,
    );
    // Promote and rollback only of the current canary.
    conflict(
        "promote another id",
        s.promote_deployment("Tag", Some(one.id + 100)).await,
    );
    conflict(
        "rollback another id",
        s.rollback_deployment("Tag", Some(one.id + 100), "x").await,
    );
    conflict(
        "promote unknown",
        s.promote_deployment("Nothing", None).await,
    );
    ok(
        "rollback",
        s.rollback_deployment("Tag", None, "by hand").await,
    );
    conflict(
        "rollback twice",
        s.rollback_deployment("Tag", Some(one.id), "again").await,
    );
    conflict(
        "promote rolled back",
        s.promote_deployment("Tag", None).await,
    );
    // After the rollback a new canary is allowed.
    ok(
        "new canary",
        s.create_deployment(&new("Tag", b"three", Selection::Share(5)))
            .await,
    );
    // Refused input changes nothing.
    let mut bad = new("Tag2", b"x", Selection::Share(101));
    assert!(matches!(
        s.create_deployment(&bad).await,
        Err(StoreError::Invalid(_))
    ));
    bad.selection = Selection::Share(5);
    bad.digest = "0".repeat(64);
    assert!(matches!(
        s.create_deployment(&bad).await,
        Err(StoreError::Invalid(_))
    ));
    bad = new("Tag2", b"x", Selection::Labels(Vec::new()));
    assert!(matches!(
        s.create_deployment(&bad).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(ok("Tag2", s.list_deployments(Some("Tag2")).await).is_empty());
}

async fn deployment_serving(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(200);
    let rec = |server: &str, candidate: &str| ServingRecord {
        server: server.into(),
        service: "Tag".into(),
        stable: "aa".repeat(32),
        candidate: candidate.into(),
        deployment: 7,
        since: Some(secs(150)),
        updated: None,
        stats: r#"{"calls":1}"#.into(),
        failure: String::new(),
    };
    ok("record a", s.record_serving(&rec("a", "")).await);
    ok(
        "record b",
        s.record_serving(&rec("b", &"bb".repeat(32))).await,
    );
    clock.set_seconds(210);
    // Replacing a record keeps one row per server and service.
    let mut again = rec("a", &"bb".repeat(32));
    again.failure = "compile error".into();
    ok("record a again", s.record_serving(&again).await);
    let mut other = rec("a", "");
    other.service = "Other".into();
    ok("other service", s.record_serving(&other).await);
    let got = ok("list", s.list_serving(Some("Tag")).await);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].server, "a");
    assert_eq!(got[0].candidate, "bb".repeat(32));
    assert_eq!(got[0].failure, "compile error");
    assert_eq!(got[0].since, Some(secs(150)));
    assert_eq!(got[0].updated, Some(secs(210)));
    assert_eq!(got[1].server, "b");
    assert_eq!(got[1].stats, r#"{"calls":1}"#);
    assert_eq!(got[1].updated, Some(secs(200)));
    assert_eq!(ok("all", s.list_serving(None).await).len(), 3);
}

/// Eight deploys of one service at once: exactly one becomes the canary, the others are
/// conflicts, whatever the backend's isolation level.
async fn one_canary_under_concurrency(s: Arc<dyn Store>, _clock: Arc<FakeClock>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0u8..8 {
        let s = s.clone();
        tasks.spawn(async move {
            s.create_deployment(&new("Race", &[i; 16], Selection::Share(10)))
                .await
        });
    }
    let (mut won, mut conflicts) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(_) => won += 1,
            Err(StoreError::Conflict(_)) => conflicts += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((won, conflicts), (1, 7));
    let active = ok("active", s.active_deployments().await);
    assert_eq!(active.len(), 1, "{active:?}");
}
