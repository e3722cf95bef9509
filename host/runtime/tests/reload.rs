//! Hot reload under traffic: real components (`tag-a`, `tag-b`), a real engine over in-memory
//! SQLite, and simulated clients polling through `ContactHandler::poll` from concurrent tasks
//! while the plugin set is replaced.
//!
//! The tag plugins record each message they process as a file named by its ID holding their
//! tag, and a second processing as `<id>.dup`, so "exactly once, by exactly one build" is read
//! from the directory.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fleetgate_engine::{Engine, EngineConfig};
use fleetgate_pb::any;
use fleetgate_pb::fleetspeak::server::ServiceConfig;
use fleetgate_pb::fleetspeak::{Address, ContactData, Message, WrappedContactData};
use fleetgate_runtime::{Factory, Generations, HostServices, WasmConfig, WasmPreopen};
use fleetgate_store::{SeaOrmStore, Store};
use fleetgate_types::contact::{Contact, ContactHandler};
use fleetgate_types::{ClientId, MessageId, SystemClock};
use prost::Message as _;
use tokio::task::JoinSet;

const SERVICE: &str = "Tag";

struct Env {
    engine: Engine,
    store: Arc<dyn Store>,
    tags: tempfile::TempDir,
    generations: Arc<Generations>,
}

impl Env {
    /// An engine running `first`, whose tag plugins record into `tags`.
    async fn start(tags: tempfile::TempDir, first: &[ServiceConfig]) -> Self {
        let clock = Arc::new(SystemClock);
        let store: Arc<dyn Store> = Arc::new(
            SeaOrmStore::open("sqlite::memory:", clock.clone())
                .await
                .unwrap(),
        );
        let engine = Engine::new(EngineConfig::default(), store.clone(), clock);
        let host = HostServices::new(Arc::new(engine.clone()));
        let factory = Factory::new(support::runtime(), host);
        let generations = Generations::install(factory, engine.clone(), first)
            .await
            .unwrap();
        Self {
            engine,
            store,
            tags,
            generations: Arc::new(generations),
        }
    }

    fn generation(&self) -> u64 {
        self.generations.current()[SERVICE].number
    }
}

/// The `Tag` service running `wasm` (a path), recording into `tags`; `mode` is appended to the
/// plugin config (`fail-init`, `trap-init`).
fn tag_service(wasm: &Path, tags: &Path, mode: &str) -> ServiceConfig {
    let c = WasmConfig {
        path: wasm.display().to_string(),
        config: format!("/tags\n{mode}").into_bytes(),
        preopens: vec![WasmPreopen {
            host_path: tags.display().to_string(),
            guest_path: "/tags".into(),
            read_only: false,
        }],
        ..WasmConfig::default()
    };
    ServiceConfig {
        name: SERVICE.into(),
        factory: "WASM".into(),
        max_parallelism: 8,
        config: Some(any::pack(&c)),
        ..Default::default()
    }
}

fn build(stem: &str) -> PathBuf {
    Path::new(fleetgate_runtime::bundled::PLUGINS_DIR).join(format!("{stem}.wasm"))
}

/// A client as the frontend presents it: a P-256-shaped key, so it enrols on first contact.
struct Client {
    key: Vec<u8>,
    id: ClientId,
}

impl Client {
    fn new(n: u32) -> Self {
        let mut key = hex_decode("3059301306072a8648ce3d020106082a8648ce3d03010703420004");
        key.extend(std::iter::repeat_n(0x5a, 60));
        key.extend(n.to_be_bytes());
        Self {
            id: ClientId::from_public_key(&key),
            key,
        }
    }

    fn contact(&self, messages: Vec<Message>) -> Contact {
        let cd = ContactData {
            messages,
            client_clock: Some(fleetgate_types::time::to_timestamp(
                std::time::SystemTime::now(),
            )),
            ..ContactData::default()
        };
        Contact {
            client_id: self.id,
            public_key: self.key.clone(),
            observed_address: "192.0.2.7:4000".into(),
            wcd: WrappedContactData {
                contact_data: cd.encode_to_vec(),
                ..WrappedContactData::default()
            },
        }
    }

    /// The server's ID for this client's message `n` (SHA-256 over client, service and ID).
    fn message_id(&self, n: u64) -> MessageId {
        MessageId::for_client_message(self.id, "TestService", &n.to_be_bytes())
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn to_service(n: u64) -> Message {
    let addr = |service: &str| Address {
        client_id: Vec::new(),
        service_name: service.into(),
    };
    Message {
        source: Some(addr("TestService")),
        source_message_id: n.to_be_bytes().to_vec(),
        destination: Some(addr(SERVICE)),
        message_type: "Test".into(),
        data: Some(prost_types::Any {
            type_url: "type.googleapis.com/test.Ping".into(),
            value: vec![7; 32],
        }),
        ..Message::default()
    }
}

/// Clients polling `per_poll` fresh messages at a time until `stop` is set (and at least
/// `min_polls` times); every poll must succeed. Returns each client's message count and the
/// latency of every poll.
async fn traffic(
    engine: &Engine,
    clients: u32,
    per_poll: u64,
    min_polls: u64,
    stop: Arc<AtomicBool>,
) -> (Vec<(Client, u64)>, Vec<Duration>) {
    let mut tasks = JoinSet::new();
    for c in 0..clients {
        let (engine, stop) = (engine.clone(), stop.clone());
        tasks.spawn(async move {
            let client = Client::new(c);
            let (mut sent, mut polls, mut latencies) = (0u64, 0u64, Vec::new());
            while polls < min_polls || !stop.load(Ordering::Relaxed) {
                let batch = (sent..sent + per_poll).map(to_service).collect();
                let started = Instant::now();
                engine
                    .poll(client.contact(batch))
                    .await
                    .unwrap_or_else(|e| panic!("poll {polls} of client {c} refused: {e}"));
                latencies.push(started.elapsed());
                sent += per_poll;
                polls += 1;
            }
            (client, sent, latencies)
        });
    }
    let (mut sent, mut latencies) = (Vec::new(), Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (client, n, l) = r.unwrap();
        sent.push((client, n));
        latencies.extend(l);
    }
    (sent, latencies)
}

/// Checks every message was processed exactly once, by one build, and stored as processed.
/// Returns how many messages each tag processed.
async fn check_exactly_once(env: &Env, sent: &[(Client, u64)]) -> BTreeMap<String, usize> {
    let mut tags = BTreeMap::new();
    let mut total = 0;
    for (client, n) in sent {
        for i in 0..*n {
            let id = client.message_id(i);
            let file = env.tags.path().join(id.to_hex());
            let tag = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("message {id} was not processed: {e}"));
            assert!(tag == "a" || tag == "b", "message {id} tagged {tag:?}");
            *tags.entry(tag).or_insert(0) += 1;
            let result = env.store.get_message_result(id).await.unwrap();
            let result = result.unwrap_or_else(|| panic!("message {id} has no result"));
            assert!(!result.failed, "message {id}: {result:?}");
            total += 1;
        }
    }
    let files: Vec<_> = std::fs::read_dir(env.tags.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let dups: Vec<_> = files.iter().filter(|f| f.ends_with(".dup")).collect();
    assert!(dups.is_empty(), "processed more than once: {dups:?}");
    assert_eq!(
        files.len(),
        total,
        "a message was processed that nobody sent"
    );
    tags
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_reloads_under_traffic_lose_and_double_nothing() {
    let tags = tempfile::tempdir().unwrap();
    let (a, b) = (build("test_tag_a"), build("test_tag_b"));
    let first = tag_service(&a, tags.path(), "");
    let env = Env::start(tags, &[first]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let reloader = {
        let (g, stop, dir) = (
            env.generations.clone(),
            stop.clone(),
            env.tags.path().to_owned(),
        );
        tokio::spawn(async move {
            for i in 0..20 {
                tokio::time::sleep(Duration::from_millis(30)).await;
                let wasm = if i % 2 == 0 { &b } else { &a };
                let r = g.reload(&[tag_service(wasm, &dir, "")]).await.unwrap();
                assert_eq!(r.replaced, [SERVICE], "reload {i}");
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let (sent, _) = traffic(&env.engine, 12, 4, 5, stop).await;
    reloader.await.unwrap();
    assert_eq!(env.generation(), 21);
    let tags = check_exactly_once(&env, &sent).await;
    let total: u64 = sent.iter().map(|(_, n)| n).sum();
    assert!(total >= 12 * 4 * 5);
    assert!(
        tags.len() == 2,
        "both builds served traffic ({tags:?} of {total})"
    );
    assert_eq!(env.generations.failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_builds_are_refused_while_traffic_continues() {
    let tags = tempfile::tempdir().unwrap();
    let a = build("test_tag_a");
    let first = tag_service(&a, tags.path(), "");
    let env = Env::start(tags, &[first]).await;
    let dir = env.tags.path().to_owned();
    let scratch = tempfile::tempdir().unwrap();
    let garbage = scratch.path().join("not-a-component.wasm");
    std::fs::write(&garbage, b"this is not a WebAssembly component").unwrap();
    let b = build("test_tag_b");
    let broken = [
        (tag_service(&garbage, &dir, ""), "compiling component"),
        (
            tag_service(&build("router_example"), &dir, ""),
            "does not fit the `service` world",
        ),
        (tag_service(&b, &dir, "fail-init"), "init asked to fail"),
        (tag_service(&b, &dir, "trap-init"), "init rejected"),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (engine, stop) = (env.engine.clone(), stop.clone());
        tokio::spawn(async move { traffic(&engine, 6, 3, 3, stop).await })
    };
    for (i, (config, expect)) in broken.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let err = env
            .generations
            .reload(std::slice::from_ref(config))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(expect), "broken build {i}: {err}");
        assert!(
            err.starts_with("services[0] \"Tag\": "),
            "the error names the service and its place: {err}"
        );
        assert_eq!(env.generation(), 1, "the old generation keeps serving");
        assert_eq!(env.generations.failures(), i as u64 + 1);
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, _) = traffic.await.unwrap();
    let tags = check_exactly_once(&env, &sent).await;
    assert_eq!(
        tags.keys().collect::<Vec<_>>(),
        ["a"],
        "only build a served"
    );

    let good = env.generations.reload(&[tag_service(&b, &dir, "")]).await;
    assert_eq!(good.unwrap().replaced, [SERVICE]);
    assert_eq!(env.generation(), 2);
}

#[tokio::test]
async fn unchanged_kept_removed_unknown_as_in_fleetspeak() {
    let tags = tempfile::tempdir().unwrap();
    let a = tag_service(&build("test_tag_a"), tags.path(), "");
    let env = Env::start(tags, std::slice::from_ref(&a)).await;
    let r = env
        .generations
        .reload(std::slice::from_ref(&a))
        .await
        .unwrap();
    assert_eq!(
        (r.unchanged.as_slice(), r.changed()),
        ([SERVICE.into()].as_slice(), false)
    );
    assert_eq!(env.generation(), 1);

    let r = env.generations.reload(&[]).await.unwrap();
    assert_eq!(r.removed, [SERVICE]);
    assert!(env.generations.current().is_empty());
    // A client message for the removed service is stored failed, as for any unknown service.
    let client = Client::new(99);
    env.engine
        .poll(client.contact(vec![to_service(0)]))
        .await
        .unwrap();
    let result = env
        .store
        .get_message_result(client.message_id(0))
        .await
        .unwrap()
        .unwrap();
    assert!(result.failed && result.failed_reason.contains("unknown service"));
    // A server-bound message for it (another server may run it) stays pending.
    let mut m = to_service(1);
    m.source.as_mut().unwrap().client_id = client.id.to_vec();
    let id = env.engine.insert_message(m).await.unwrap();
    assert_eq!(env.store.get_message_result(id).await.unwrap(), None);

    let r = env.generations.reload(&[a]).await.unwrap();
    assert_eq!(r.added, [SERVICE]);
    assert_eq!(env.generation(), 1, "a re-added service starts again");
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn summary(mut l: Vec<Duration>) -> String {
    l.sort();
    format!(
        "n={} p50={:.2}ms p99={:.2}ms max={:.2}ms",
        l.len(),
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        percentile(&l, 1.0)
    )
}

/// For docs/BENCHMARKS.md: reload time of a 2 MiB component with cached compilation, and poll
/// latency during reloads vs steady state.
/// `cargo test --release -p fleetgate-runtime --test reload -- --ignored --nocapture bench`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run by hand"]
async fn bench_reload_under_load() {
    const SWAPS: usize = 20;
    let tags = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let live = scratch.path().join("tag.wasm");
    let builds = [build("test_tag_a"), build("test_tag_b")];
    println!(
        "component size: {} bytes",
        std::fs::metadata(&builds[0]).unwrap().len()
    );
    let install = |from: &Path| {
        let tmp = scratch.path().join("tag.wasm.tmp");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, &live).unwrap();
    };
    install(&builds[0]);
    let config = tag_service(&live, tags.path(), "");
    let env = Env::start(tags, std::slice::from_ref(&config)).await;
    // Both builds compiled once, so every measured reload finds them in the cache.
    for b in [&builds[1], &builds[0]] {
        install(b);
        env.generations
            .reload(std::slice::from_ref(&config))
            .await
            .unwrap();
    }

    let steady_stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let s = steady_stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            s.store(true, Ordering::Relaxed);
        })
    };
    let (_, steady) = traffic(&env.engine, 8, 4, 1, steady_stop).await;
    timer.await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (engine, stop) = (env.engine.clone(), stop.clone());
        tokio::spawn(async move { traffic(&engine, 8, 4, 1, stop).await })
    };
    let (mut took, mut serving) = (Vec::new(), Vec::new());
    for i in 0..SWAPS {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let tag = if i % 2 == 0 { "b" } else { "a" };
        install(&builds[(i + 1) % 2]);
        let changed = Instant::now();
        let r = env
            .generations
            .reload(std::slice::from_ref(&config))
            .await
            .unwrap();
        assert_eq!(r.replaced, [SERVICE]);
        took.push(r.took);
        // The first message after the swap is processed by the new build.
        let mut probe = to_service(u64::MAX - i as u64);
        probe.source.as_mut().unwrap().client_id = Client::new(1000).id.to_vec();
        let id = env.engine.insert_message(probe).await.unwrap();
        serving.push(changed.elapsed());
        let got = std::fs::read_to_string(env.tags.path().join(id.to_hex())).unwrap();
        assert_eq!(got, tag);
    }
    stop.store(true, Ordering::Relaxed);
    let (_, during) = load.await.unwrap();
    println!("reload (read + build + swap): {}", summary(took));
    println!(
        "file change -> new generation served a message: {}",
        summary(serving)
    );
    println!(
        "poll latency, steady state (8 clients x 4 msgs): {}",
        summary(steady)
    );
    println!("poll latency, during {SWAPS} reloads: {}", summary(during));
}
