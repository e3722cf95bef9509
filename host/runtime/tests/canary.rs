//! A canary over real components (`tag-a` stable, `tag-b` candidate) on a real engine: the
//! version that processed each message is reported and the tag files agree; an overlay stays on
//! top of a reload and follows the file's new stable version; clearing it restores the file's
//! entry; the automatic rollback trips on a trapping candidate and sends everything to stable.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fleetgate_engine::{Engine, EngineConfig, Service, ServiceEntry};
use fleetgate_pb::any;
use fleetgate_pb::fleetspeak::server::ServiceConfig;
use fleetgate_runtime::canary::{Selection, Thresholds, Version, in_share};
use fleetgate_runtime::{
    Canary, Factory, Generation, Generations, HostServices, Overlay, WasmConfig, WasmPreopen,
};
use fleetgate_store::SeaOrmStore;
use fleetgate_types::SystemClock;

fn tag_config(tags: &Path) -> WasmConfig {
    WasmConfig {
        config: b"/tags".to_vec(),
        preopens: vec![WasmPreopen {
            host_path: tags.display().to_string(),
            guest_path: "/tags".into(),
            read_only: false,
        }],
        ..WasmConfig::default()
    }
}

fn file_service(stem: &str, tags: &Path) -> ServiceConfig {
    let mut c = tag_config(tags);
    c.path = Path::new(fleetgate_runtime::bundled::PLUGINS_DIR)
        .join(format!("{stem}.wasm"))
        .display()
        .to_string();
    ServiceConfig {
        name: "Tag".into(),
        factory: "WASM".into(),
        config: Some(any::pack(&c)),
        ..Default::default()
    }
}

fn thresholds() -> Thresholds {
    Thresholds {
        window: Duration::from_secs(30),
        window_calls: 50,
        min_calls: 2,
        error_rate_points: 10.0,
        p99_ratio: 2.0,
    }
}

fn of(g: &Generation) -> Version {
    Version {
        service: g.built.service(),
        component: g.built.component.clone(),
    }
}

async fn setup(tags: &Path) -> (Engine, Generations) {
    let clock = Arc::new(SystemClock);
    let store = Arc::new(
        SeaOrmStore::open("sqlite::memory:", clock.clone())
            .await
            .unwrap(),
    );
    let engine = Engine::new(EngineConfig::default(), store, clock);
    let host = HostServices::new(Arc::new(engine.clone()));
    let factory = Factory::new(support::runtime(), host);
    let g = Generations::install(factory, engine.clone(), &[file_service("test_tag_a", tags)])
        .await
        .unwrap();
    (engine, g)
}

/// A client ID the canary of deployment 1 at 50 % picks (`true`) or not.
fn client(picked: bool) -> Vec<u8> {
    (0u64..)
        .map(|i| i.to_be_bytes().to_vec())
        .find(|c| in_share(c, 1, 50) == picked)
        .unwrap()
}

fn message(client: &[u8], n: u8, message_type: &str) -> fleetgate_pb::fleetspeak::Message {
    let mut m = support::client_message("Tag", message_type, n);
    m.source.as_mut().unwrap().client_id = client.to_vec();
    m
}

fn tag_of(tags: &Path, n: u8) -> String {
    std::fs::read_to_string(tags.join(hex::encode([n; 32]))).unwrap_or_default()
}

#[tokio::test]
async fn the_canary_reports_the_version_that_processed_each_message_and_survives_a_reload() {
    let tags = tempfile::tempdir().unwrap();
    let (engine, generations) = setup(tags.path()).await;
    let factory = generations.factory().clone();
    let b = factory
        .build_component(
            "Tag",
            "test".into(),
            support::plugin("test_tag_b"),
            tag_config(tags.path()),
        )
        .await
        .unwrap();
    let stable = of(&generations.current()["Tag"]);
    let a_digest = stable.digest();
    let canary = Arc::new(Canary::new(
        1,
        stable,
        Version::of(b.clone()),
        Selection::Share(50),
        engine.clone(),
        thresholds(),
        false,
    ));
    let c = canary.clone();
    let overlay: Overlay = Arc::new(move |base: Option<&Generation>| {
        if let Some(g) = base {
            c.set_stable(of(g));
        }
        Some(ServiceEntry::new(c.clone(), 0))
    });
    generations.set_overlay("Tag", Some(overlay)).await.unwrap();

    let (yes, no) = (client(true), client(false));
    let (r, v) = canary.process_versioned(&message(&yes, 1, "m")).await;
    assert_eq!((r, v), (Ok(()), Some(b.digest().to_string())));
    assert_eq!(tag_of(tags.path(), 1), "b");
    let (r, v) = canary.process_versioned(&message(&no, 2, "m")).await;
    assert_eq!((r, v), (Ok(()), Some(a_digest.to_string())));
    assert_eq!(tag_of(tags.path(), 2), "a");
    // No source client: stable.
    let mut admin = message(&yes, 3, "m");
    admin.source.as_mut().unwrap().client_id.clear();
    canary.process_versioned(&admin).await.0.unwrap();
    assert_eq!(tag_of(tags.path(), 3), "a");

    // The file changes to tag-b: the overlay stays, with the new stable version under it.
    generations
        .reload(&[file_service("test_tag_b", tags.path())])
        .await
        .unwrap();
    assert_eq!(canary.stable().digest(), b.digest());
    assert_eq!(generations.overlaid(), vec!["Tag".to_owned()]);
    canary
        .process_versioned(&message(&no, 4, "m"))
        .await
        .0
        .unwrap();
    assert_eq!(tag_of(tags.path(), 4), "b");
    let (s, k) = canary.window_stats();
    assert_eq!((s.calls, k.calls), (3, 1));

    generations.set_overlay("Tag", None).await.unwrap();
    assert!(generations.overlaid().is_empty());
}

#[tokio::test]
async fn a_trapping_candidate_trips_the_automatic_rollback() {
    let tags = tempfile::tempdir().unwrap();
    let (engine, generations) = setup(tags.path()).await;
    let trap = generations
        .factory()
        .build_component(
            "Tag",
            "test".into(),
            support::plugin("test_trap"),
            WasmConfig::default(),
        )
        .await
        .unwrap();
    let canary = Canary::new(
        1,
        of(&generations.current()["Tag"]),
        Version::of(trap),
        Selection::Share(50),
        engine,
        thresholds(),
        true,
    );
    let yes = client(true);
    for n in 1..=2 {
        let (r, _) = canary.process_versioned(&message(&yes, n, "trap")).await;
        assert!(r.is_err(), "the candidate traps");
    }
    let reason = canary.tripped().expect("tripped after two traps");
    assert!(reason.contains("automatic rollback"), "{reason}");
    // From now on this server sends the candidate's clients to stable.
    let (r, v) = canary.process_versioned(&message(&yes, 3, "trap")).await;
    assert_eq!(r, Ok(()));
    assert_eq!(v, Some(canary.stable().digest().to_string()));
    assert_eq!(tag_of(tags.path(), 3), "a");
}
