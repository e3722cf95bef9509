//! The plugin rollout RPCs of `fleetgate.admin.v1.FleetgateAdmin`: deploy, promote, roll back,
//! status and history. Every refusal names what was wrong and changes nothing: the component is
//! checked by the plugin runtime (a service this server runs, the `service` world, imports
//! granted, compiles and passes `init`) before the store is asked, and the store refuses a
//! second canary of a service or promoting or rolling back anything but the canary.

use std::collections::BTreeMap;
use std::time::Duration;

use fleetgate_engine::Engine;
use fleetgate_pb::fleetgate::admin::v1 as pb;
use fleetgate_store::{
    Deployment, DeploymentState, NewDeployment, Selection, ServingRecord, Thresholds,
};
use fleetgate_types::time::to_timestamp;
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::plugins::PluginControl;
use crate::status::{from_store, invalid};

/// The canary's share when neither a share nor labels are given.
pub const DEFAULT_SHARE: u8 = 10;

pub(crate) fn to_pb(d: Deployment) -> pb::Deployment {
    let (share, labels) = match d.selection {
        Selection::Share(s) => (Some(u32::from(s)), Vec::new()),
        Selection::Labels(l) => (None, l),
    };
    pb::Deployment {
        id: d.id,
        service: d.service,
        digest: d.digest,
        state: d.state.as_str().into(),
        share,
        labels,
        shadow: d.shadow,
        auto_rollback: d.auto_rollback,
        window: prost_types::Duration::try_from(d.thresholds.window).ok(),
        window_calls: d.thresholds.window_calls,
        min_calls: d.thresholds.min_calls,
        error_rate_points: d.thresholds.error_rate_points,
        p99_ratio: d.thresholds.p99_ratio,
        requested_by: d.requested_by,
        created: Some(to_timestamp(d.created)),
        updated: Some(to_timestamp(d.updated)),
        reason: d.reason,
    }
}

fn service_name(s: &str) -> Result<(), Status> {
    if s.is_empty() {
        return Err(invalid("service: a service name is required"));
    }
    Ok(())
}

fn thresholds(r: &pb::DeployPluginRequest) -> Result<Thresholds, Status> {
    let mut t = Thresholds::default();
    if let Some(w) = r.window {
        t.window = Duration::try_from(w)
            .ok()
            .filter(|w| !w.is_zero())
            .ok_or_else(|| invalid(format!("window: {w:?} is not a positive duration")))?;
    }
    if let Some(n) = r.window_calls {
        if n == 0 {
            return Err(invalid("window_calls: must be at least 1"));
        }
        t.window_calls = n;
    }
    if let Some(n) = r.min_calls {
        t.min_calls = n.max(1);
    }
    if let Some(p) = r.error_rate_points {
        if !(0.0..=100.0).contains(&p) {
            return Err(invalid(format!("error_rate_points: {p} is outside 0-100")));
        }
        t.error_rate_points = p;
    }
    if let Some(x) = r.p99_ratio {
        if !(x.is_finite() && x >= 1.0) {
            return Err(invalid(format!("p99_ratio: {x} must be at least 1")));
        }
        t.p99_ratio = x;
    }
    Ok(t)
}

pub(crate) async fn deploy(
    engine: &Engine,
    control: &dyn PluginControl,
    caller: &str,
    r: pb::DeployPluginRequest,
) -> Result<pb::Deployment, Status> {
    service_name(&r.service)?;
    let selection = match (&r.share, r.labels.is_empty()) {
        (Some(_), false) => {
            return Err(invalid("give either a share or labels, not both"));
        }
        (_, false) => {
            if let Some(bad) = r.labels.iter().find(|l| l.is_empty() || l.contains(',')) {
                return Err(invalid(format!(
                    "labels: {bad:?} is not a label (empty, or contains a comma)"
                )));
            }
            Selection::Labels(r.labels.clone())
        }
        (Some(s), true) => Selection::Share(
            u8::try_from(*s)
                .ok()
                .filter(|s| *s <= 100)
                .ok_or_else(|| invalid(format!("share: {s} is outside 0-100")))?,
        ),
        (None, true) => Selection::Share(DEFAULT_SHARE),
    };
    let thresholds = thresholds(&r)?;
    if r.wasm.is_empty() {
        return Err(invalid("wasm: the component is empty"));
    }
    // Refuse a second canary before the (slow) compile, with the store's own words; the
    // store checks again in its transaction.
    if let Some(c) = engine
        .store()
        .active_deployments()
        .await
        .map_err(|e| from_store("can't read the deployments", e))?
        .into_iter()
        .find(|d| d.service == r.service && d.state == DeploymentState::Canary)
    {
        return Err(Status::failed_precondition(format!(
            "service {:?} already has deployment {} in canary (sha256:{}); promote or roll it back first",
            r.service, c.id, c.digest
        )));
    }
    let config = control
        .check_deployment(&r.service, &r.wasm, r.config.clone())
        .await
        .map_err(invalid)?;
    let digest = hex::encode(Sha256::digest(&r.wasm));
    let d = engine
        .store()
        .create_deployment(&NewDeployment {
            service: r.service,
            digest,
            wasm: r.wasm,
            config,
            selection,
            shadow: r.shadow,
            auto_rollback: r.auto_rollback,
            thresholds,
            requested_by: caller.to_owned(),
        })
        .await
        .map_err(|e| from_store("can't deploy", e))?;
    tracing::info!(service = %d.service, deployment = d.id, digest = %d.digest, "plugin deployed as a canary");
    Ok(to_pb(d))
}

pub(crate) async fn promote(
    engine: &Engine,
    r: pb::PromotePluginRequest,
) -> Result<pb::Deployment, Status> {
    service_name(&r.service)?;
    let d = engine
        .store()
        .promote_deployment(&r.service, None)
        .await
        .map_err(|e| from_store("can't promote", e))?;
    Ok(to_pb(d))
}

pub(crate) async fn rollback(
    engine: &Engine,
    caller: &str,
    r: pb::RollbackPluginRequest,
) -> Result<pb::Deployment, Status> {
    service_name(&r.service)?;
    let reason = if r.reason.is_empty() {
        match caller {
            "" => "rolled back by an operator".to_owned(),
            c => format!("rolled back by {c}"),
        }
    } else {
        r.reason
    };
    let d = engine
        .store()
        .rollback_deployment(&r.service, None, &reason)
        .await
        .map_err(|e| from_store("can't roll back", e))?;
    Ok(to_pb(d))
}

pub(crate) async fn history(
    engine: &Engine,
    r: pb::PluginHistoryRequest,
) -> Result<pb::PluginHistoryResponse, Status> {
    service_name(&r.service)?;
    let ds = engine
        .store()
        .list_deployments(Some(&r.service))
        .await
        .map_err(|e| from_store("can't list deployments", e))?;
    Ok(pb::PluginHistoryResponse {
        deployments: ds.into_iter().map(to_pb).collect(),
    })
}

fn version_stats(v: Option<&serde_json::Value>) -> Option<pb::VersionStats> {
    let v = v?;
    let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let f = |k: &str| v.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
    Some(pb::VersionStats {
        calls: n("calls"),
        errors: n("errors"),
        traps: n("traps"),
        permanent: n("permanent"),
        p50_ms: f("p50_ms"),
        p99_ms: f("p99_ms"),
    })
}

fn serving(r: ServingRecord) -> pb::ServerServing {
    let stats: serde_json::Value = serde_json::from_str(&r.stats).unwrap_or_default();
    pb::ServerServing {
        server: r.server,
        stable_digest: r.stable,
        candidate_digest: r.candidate,
        deployment: r.deployment,
        since: r.since.map(to_timestamp),
        updated: r.updated.map(to_timestamp),
        stable: version_stats(stats.get("stable")),
        candidate: version_stats(stats.get("candidate")),
        failure: r.failure,
        shadow: shadow_stats(stats.get("shadow")),
    }
}

fn shadow_stats(v: Option<&serde_json::Value>) -> Option<pb::ShadowStats> {
    let v = v.filter(|v| v.is_object())?;
    let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    Some(pb::ShadowStats {
        copies: n("copies"),
        agreed: n("agreed"),
        candidate_failed: n("candidate_failed"),
        candidate_succeeded: n("candidate_succeeded"),
        withheld_messages: n("withheld_messages"),
        withheld_grpc_calls: n("withheld_grpc_calls"),
        last_difference: v
            .get("last_difference")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Sums the servers' statistics; the percentiles are the worst server's (an upper bound).
fn sum<'a>(all: impl Iterator<Item = &'a pb::VersionStats>) -> Option<pb::VersionStats> {
    let mut out: Option<pb::VersionStats> = None;
    for s in all {
        let o = out.get_or_insert_with(Default::default);
        o.calls += s.calls;
        o.errors += s.errors;
        o.traps += s.traps;
        o.permanent += s.permanent;
        o.p50_ms = o.p50_ms.max(s.p50_ms);
        o.p99_ms = o.p99_ms.max(s.p99_ms);
    }
    out
}

pub(crate) async fn status(
    engine: &Engine,
    r: pb::PluginRolloutStatusRequest,
) -> Result<pb::PluginRolloutStatusResponse, Status> {
    let filter = (!r.service.is_empty()).then_some(r.service.as_str());
    let store = engine.store();
    let deployments = store
        .list_deployments(filter)
        .await
        .map_err(|e| from_store("can't list deployments", e))?;
    let records = store
        .list_serving(filter)
        .await
        .map_err(|e| from_store("can't list what the servers serve", e))?;
    let mut by: BTreeMap<String, pb::ServiceRollout> = BTreeMap::new();
    let entry = |by: &mut BTreeMap<String, pb::ServiceRollout>, s: &str| {
        by.entry(s.to_owned())
            .or_insert_with(|| pb::ServiceRollout {
                service: s.to_owned(),
                ..Default::default()
            })
            .service
            .clone()
    };
    // Newest first: the first seen of a service is its latest.
    for d in deployments {
        let key = entry(&mut by, &d.service);
        let s = by.get_mut(&key).expect("inserted above");
        let pbd = to_pb(d.clone());
        if s.latest.is_none() {
            s.latest = Some(pbd.clone());
        }
        match d.state {
            DeploymentState::Canary => s.canary = Some(pbd),
            DeploymentState::Promoted => s.promoted = Some(pbd),
            _ => {}
        }
    }
    for rec in records {
        let key = entry(&mut by, &rec.service);
        let s = by.get_mut(&key).expect("inserted above");
        s.servers.push(serving(rec));
    }
    if let Some(name) = filter
        && !by.contains_key(name)
    {
        return Err(Status::not_found(format!(
            "service {name:?} has no deployments and no server reports serving it"
        )));
    }
    let mut services: Vec<pb::ServiceRollout> = by.into_values().collect();
    for s in &mut services {
        s.stable = sum(s.servers.iter().filter_map(|v| v.stable.as_ref()));
        s.candidate = sum(s.servers.iter().filter_map(|v| v.candidate.as_ref()));
        for sh in s.servers.iter().filter_map(|v| v.shadow.as_ref()) {
            let o = s.shadow.get_or_insert_with(Default::default);
            o.copies += sh.copies;
            o.agreed += sh.agreed;
            o.candidate_failed += sh.candidate_failed;
            o.candidate_succeeded += sh.candidate_succeeded;
            o.withheld_messages += sh.withheld_messages;
            o.withheld_grpc_calls += sh.withheld_grpc_calls;
            if !sh.last_difference.is_empty() {
                o.last_difference = sh.last_difference.clone();
            }
        }
    }
    Ok(pb::PluginRolloutStatusResponse { services })
}
