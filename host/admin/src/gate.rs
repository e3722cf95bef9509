//! The gate every admin call passes, on both listeners: it decides whether the caller may make
//! the call, hands the handler a [`Grant`], and writes the audit line of every mutating call and
//! every refusal to the tracing target [`AUDIT_TARGET`](crate::AUDIT_TARGET).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use fleetgate_engine::Engine;
use http::{Request, Response};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;

use crate::lock::{Caller, Grant, Policy};
use crate::status;

/// Every RPC of both services by method name (unique across them), and whether it changes state.
pub const RPCS: &[(&str, bool)] = &[
    ("CreateBroadcast", true),
    ("ListActiveBroadcasts", false),
    ("DisableBroadcasts", true),
    ("ListClients", false),
    ("StreamClientIds", false),
    ("ListClientContacts", false),
    ("StreamClientContacts", false),
    ("GetMessageStatus", false),
    ("InsertMessage", true),
    ("DeletePendingMessages", true),
    ("GetPendingMessages", false),
    ("GetPendingMessageCount", false),
    ("StoreFile", true),
    ("DeleteFile", true),
    ("KeepAlive", false),
    ("BlacklistClient", true),
    ("FetchClientResourceUsageRecords", false),
    ("InsertMessages", true),
    ("PurgePendingMessages", true),
    ("ListPlugins", false),
    ("ReloadPlugins", true),
    ("ListDeadLetters", false),
    ("GetDeadLetter", false),
    ("ReplayDeadLetters", true),
    ("PurgeDeadLetters", true),
    ("TraceMessage", false),
    ("DeployPlugin", true),
    ("PromotePlugin", true),
    ("RollbackPlugin", true),
    ("PluginRolloutStatus", false),
    ("PluginHistory", false),
];

/// The services whose paths the gate knows; any other path is an unknown RPC.
const SERVICES: &[&str] = &[
    "fleetspeak.server.Admin",
    "fleetgate.admin.v1.FleetgateAdmin",
];

/// The method name of a known RPC path (`/fleetspeak.server.Admin/InsertMessage`).
fn method(path: &str) -> Option<&'static str> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if !SERVICES.contains(&service) {
        return None;
    }
    RPCS.iter().find(|(m, _)| *m == method).map(|(m, _)| *m)
}

fn mutating(method: Option<&str>) -> bool {
    method.is_none_or(|m| RPCS.iter().any(|(n, w)| *n == m && *w))
}

#[derive(Clone)]
pub(crate) enum Mode {
    /// The plaintext listener: every call allowed, as in the original.
    Open,
    Locked(Arc<Policy>),
}

#[derive(Clone)]
pub(crate) struct GateLayer {
    mode: Mode,
    engine: Engine,
}

impl GateLayer {
    pub(crate) fn new(mode: Mode, engine: Engine) -> Self {
        Self { mode, engine }
    }
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Gate<S> {
    inner: S,
    layer: GateLayer,
}

/// Who is calling, for log lines.
struct Who {
    caller: String,
    peer: String,
}

impl GateLayer {
    /// The grant of an admitted call, or the status refusing it.
    fn admit(&self, req: &Request<Body>, method: Option<&str>) -> Result<Grant, (Who, Status)> {
        let policy = match &self.mode {
            Mode::Open => return Ok(Grant::unrestricted("plaintext")),
            Mode::Locked(p) => p,
        };
        let conn = req.extensions().get::<Caller>();
        let peer = conn
            .and_then(|c| c.peer)
            .map_or_else(|| "unknown".into(), |p| p.to_string());
        let rpc = method.unwrap_or("unknown RPC");
        let Some(identity) = conn.and_then(|c| c.identity.as_ref()) else {
            let who = Who {
                caller: "no certificate".into(),
                peer,
            };
            return Err((
                who,
                status::unauthenticated("the admin API requires a client certificate"),
            ));
        };
        let Some(rule) = policy.find(identity) else {
            let who = Who {
                caller: identity.to_string(),
                peer,
            };
            let s = status::unauthenticated(format!(
                "certificate {identity} is not in the admin policy"
            ));
            return Err((who, s));
        };
        if method.is_none_or(|m| !rule.rpcs.allows(m)) {
            let s =
                status::permission_denied(format!("identity {:?} may not call {rpc}", rule.name));
            let who = Who {
                caller: rule.name.clone(),
                peer,
            };
            return Err((who, s));
        }
        Ok(Grant::new(rule.name.clone(), rule.services.clone()))
    }

    fn refused(&self, rpc: &str, code: tonic::Code) {
        if let Some(m) = self.engine.metrics() {
            m.admin_call_refused(rpc, code_name(code));
        }
    }
}

fn peer_of(req: &Request<Body>) -> String {
    let ext = req.extensions();
    ext.get::<Caller>()
        .and_then(|c| c.peer)
        .or_else(|| ext.get::<TcpConnectInfo>().and_then(|c| c.remote_addr()))
        .map_or_else(|| "unknown".into(), |p| p.to_string())
}

/// The gRPC status of a response: in its headers when the handler failed (trailers-only), absent
/// when it succeeded (the status then comes in the trailers).
fn outcome(resp: &Response<Body>) -> tonic::Code {
    resp.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from)
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::PermissionDenied => "permission_denied",
        tonic::Code::Unauthenticated => "unauthenticated",
        _ => "other",
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<Request<Body>> for Gate<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let method = method(req.uri().path());
        let rpc = method.unwrap_or("unknown");
        let grant = match self.layer.admit(&req, method) {
            Ok(g) => g,
            Err((who, status)) => {
                tracing::warn!(
                    target: crate::AUDIT_TARGET,
                    caller = %who.caller,
                    peer = %who.peer,
                    rpc = req.uri().path(),
                    outcome = ?status.code(),
                    reason = status.message(),
                    "admin call refused"
                );
                self.layer.refused(rpc, status.code());
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        };
        let peer = peer_of(&req);
        let caller = grant.caller.clone();
        let noted = grant.clone();
        req.extensions_mut().insert(grant);
        // The clone that was made ready serves this call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let audit = mutating(method);
        Box::pin(async move {
            let started = Instant::now();
            let resp = inner.call(req).await?;
            let code = outcome(&resp);
            // A handler refuses too: a message to a service the identity may not address.
            let refused = code_name(code) != "other";
            if refused {
                layer.refused(rpc, code);
            }
            if audit || refused {
                tracing::info!(
                    target: crate::AUDIT_TARGET,
                    %caller,
                    %peer,
                    rpc,
                    what = %noted.detail(),
                    outcome = ?code,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "admin call"
                );
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_known_methods_only() {
        assert_eq!(
            method("/fleetspeak.server.Admin/InsertMessage"),
            Some("InsertMessage")
        );
        assert_eq!(
            method("/fleetgate.admin.v1.FleetgateAdmin/ReloadPlugins"),
            Some("ReloadPlugins")
        );
        assert_eq!(method("/fleetspeak.server.Admin/Nope"), None);
        assert_eq!(method("/other.Service/InsertMessage"), None);
        assert_eq!(method("InsertMessage"), None);
        assert!(mutating(Some("StoreFile")) && !mutating(Some("ListClients")));
        // An unknown RPC is audited: the gate cannot tell what it does.
        assert!(mutating(None));
    }

    /// The table covers exactly the RPCs the descriptor set declares.
    #[test]
    fn rpc_table_matches_the_protos() {
        let pool = prost_reflect::DescriptorPool::decode(fleetgate_pb::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut declared: Vec<String> = SERVICES
            .iter()
            .flat_map(|s| {
                pool.get_service_by_name(s)
                    .expect("service")
                    .methods()
                    .map(|m| m.name().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        declared.sort();
        let mut table: Vec<String> = RPCS.iter().map(|(m, _)| (*m).to_owned()).collect();
        table.sort();
        assert_eq!(declared, table);
    }
}
