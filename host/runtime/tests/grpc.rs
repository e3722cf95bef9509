//! The `GRPC` factory: the bundled forwarder against a real tonic `Processor` on 127.0.0.1:0.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetgate_engine::ServiceError;
use fleetgate_pb::any;
use fleetgate_pb::fleetspeak::grpcservice::Config;
use fleetgate_pb::fleetspeak::grpcservice::processor_server::{Processor, ProcessorServer};
use fleetgate_pb::fleetspeak::server::ServiceConfig;
use fleetgate_pb::fleetspeak::{EmptyMessage, Message};
use fleetgate_runtime::{Factory, RuntimeConfig, RuntimeError};
use support::{client_message, host, runtime_with};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// Answers by message type: `ok` succeeds, `unavailable` and `invalid` fail with that code.
#[derive(Default, Clone)]
struct FakeGrr {
    received: Arc<Mutex<Vec<Message>>>,
}

#[tonic::async_trait]
impl Processor for FakeGrr {
    async fn process(&self, request: Request<Message>) -> Result<Response<EmptyMessage>, Status> {
        let m = request.into_inner();
        self.received.lock().unwrap().push(m.clone());
        match m.message_type.as_str() {
            "unavailable" => Err(Status::unavailable("GRR is restarting")),
            "invalid" => Err(Status::invalid_argument(
                "destination.client_id must be empty",
            )),
            _ => Ok(Response::new(EmptyMessage {})),
        }
    }
}

async fn start_grr() -> (String, FakeGrr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let grr = FakeGrr::default();
    let server = tonic::transport::Server::builder()
        .add_service(ProcessorServer::new(grr.clone()))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    (addr.to_string(), grr)
}

fn grpc_config(target: &str) -> ServiceConfig {
    let config = Config {
        target: target.into(),
        insecure: true,
        cert_file: String::new(),
    };
    ServiceConfig {
        name: "GRR".into(),
        factory: "GRPC".into(),
        max_parallelism: 0,
        config: Some(any::pack(&config)),
        ..Default::default()
    }
}

/// A short forwarding deadline keeps the retry loop (1 s, 2 s, ...) to one retry.
fn factory() -> Factory {
    let rt = runtime_with(RuntimeConfig {
        grpc_deadline: Duration::from_millis(1500),
        ..support::config()
    });
    Factory::new(rt, host().0)
}

#[tokio::test]
async fn forwards_the_stored_message_unchanged() {
    let (target, grr) = start_grr().await;
    let built = factory().build(&grpc_config(&target)).await.unwrap();
    assert_eq!(built.max_parallelism, 0);
    let component = built.component.clone().unwrap();
    assert_eq!(component.origin(), "bundled:grpc-forwarder");

    let mut m = client_message("GRR", "ok", 1);
    m.priority = 2; // not in the WIT record: must still reach GRR
    built.entry().service.process(&m).await.unwrap();
    assert_eq!(
        grr.received.lock().unwrap().as_slice(),
        std::slice::from_ref(&m)
    );
}

#[tokio::test]
async fn unavailable_is_temporary_after_retrying() {
    let (target, grr) = start_grr().await;
    let built = factory().build(&grpc_config(&target)).await.unwrap();
    let t = Instant::now();
    let err = built
        .entry()
        .service
        .process(&client_message("GRR", "unavailable", 2))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServiceError::Temporary(e) if e.contains("Unavailable")),
        "{err:?}"
    );
    // Attempts at 0 s and 1 s; the next (3 s) would not fit in the deadline.
    assert_eq!(grr.received.lock().unwrap().len(), 2);
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn invalid_argument_is_permanent() {
    let (target, _grr) = start_grr().await;
    let built = factory().build(&grpc_config(&target)).await.unwrap();
    let err = built
        .entry()
        .service
        .process(&client_message("GRR", "invalid", 3))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServiceError::Permanent(e) if e.contains("InvalidArgument")),
        "{err:?}"
    );
    let stats = built.component.unwrap().stats();
    assert_eq!((stats.errors, stats.traps), (1, 0));
}

#[tokio::test]
async fn a_backend_that_is_down_does_not_fail_startup_and_is_temporary() {
    // Bind and drop: nothing listens there any more.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let built = factory()
        .build(&grpc_config(&addr.to_string()))
        .await
        .unwrap();
    let err = built
        .entry()
        .service
        .process(&client_message("GRR", "ok", 4))
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Temporary(_)), "{err:?}");
}

#[tokio::test]
async fn config_errors_name_the_service() {
    let f = factory();
    let mut c = grpc_config("127.0.0.1:1");
    c.config = Some(any::pack(&Config {
        target: "127.0.0.1:1".into(),
        insecure: false,
        cert_file: String::new(),
    }));
    let err = f.build(&c).await.err().unwrap();
    assert!(err.to_string().contains("insecure or cert_file"), "{err}");

    c.factory = "CPS".into();
    let err = f.build(&c).await.err().unwrap();
    assert!(
        matches!(&err, RuntimeError::UnknownFactory { service, factory } if service == "GRR" && factory == "CPS")
    );
    assert!(
        err.to_string() == "factory \"CPS\" is not one of GRPC, WASM, NOOP",
        "{err}"
    );

    c.factory = "NOOP".into();
    let noop = f.build(&c).await.unwrap();
    assert!(noop.component.is_none());
    noop.entry()
        .service
        .process(&client_message("GRR", "x", 5))
        .await
        .unwrap();
}

#[tokio::test]
async fn tls_upstream_with_cert_file() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    let dir = tempfile::tempdir().unwrap();
    let cert_file = dir.path().join("grr.pem");
    std::fs::write(&cert_file, &cert_pem).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let grr = FakeGrr::default();
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert_pem, key_pem));
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(ProcessorServer::new(grr.clone()))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);

    let config = Config {
        target: format!("localhost:{port}"),
        insecure: false,
        cert_file: cert_file.display().to_string(),
    };
    let mut c = grpc_config("unused");
    c.config = Some(any::pack(&config));
    let built = factory().build(&c).await.unwrap();
    built
        .entry()
        .service
        .process(&client_message("GRR", "ok", 6))
        .await
        .unwrap();
    assert_eq!(grr.received.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn unix_socket_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("grr.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let grr = FakeGrr::default();
    let server = tonic::transport::Server::builder()
        .add_service(ProcessorServer::new(grr.clone()))
        .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener));
    tokio::spawn(server);

    let built = factory()
        .build(&grpc_config(&format!("unix://{}", socket.display())))
        .await
        .unwrap();
    built
        .entry()
        .service
        .process(&client_message("GRR", "ok", 7))
        .await
        .unwrap();
    assert_eq!(grr.received.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn reserved_service_names_are_refused() {
    let mut c = grpc_config("127.0.0.1:1");
    c.name = "system".into();
    let err = factory().build(&c).await.err().unwrap();
    assert!(
        err.to_string().contains("illegal service name [system]"),
        "{err}"
    );
}
