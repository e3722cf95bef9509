//! [`DeploymentStore`]: plugin components (stored once per SHA-256), deployments and what each
//! server serves.
//!
//! The invariants are the store's, checked in one transaction each: a service has at most one
//! canary (also guaranteed by the unique `canary_of` column, whatever the isolation level), and
//! only the current canary is promoted or rolled back. Promoting supersedes the deployment
//! promoted before it, so a service has at most one promoted deployment too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use fleetgate_types::time::unix_micros;
use sea_orm::{ConnectionTrait, QueryResult, Value};
use sha2::{Digest, Sha256};

use crate::StoreError;
use crate::api::{
    Deployment, DeploymentState, DeploymentStore, NewDeployment, Result, Selection, ServingRecord,
    Thresholds,
};
use crate::db::{Q, to_i64};
use crate::messages::write::corrupt;
use crate::store::SeaOrmStore;

const DEPLOYMENT_COLS: &str = "deployment_id, service_name, digest, config, share, labels, shadow, \
     auto_rollback, window_ms, window_calls, min_calls, error_rate_points, p99_ratio, requested_by, \
     created_time, updated_time, state, reason";

const SERVING_COLS: &str = "server_name, service_name, stable_digest, candidate_digest, \
     deployment_id, since_time, updated_time, stats, failure";

fn from_micros(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

fn decode<C: ConnectionTrait>(q: &Q<'_, C>, r: &QueryResult) -> Result<Deployment> {
    let row = q.row(r);
    let share: Option<i64> = row.opt_i64(4)?;
    let labels = row.string(5)?;
    let selection = match share {
        Some(s) => Selection::Share(u8::try_from(s).map_err(|e| corrupt(q.op, e))?),
        None => Selection::Labels(
            labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
    };
    let state = row.string(16)?;
    Ok(Deployment {
        id: row.u64(0)?,
        service: row.string(1)?,
        digest: row.string(2)?,
        config: row.bytes(3)?,
        selection,
        shadow: row.bool(6)?,
        auto_rollback: row.bool(7)?,
        thresholds: Thresholds {
            window: Duration::from_millis(row.u64(8)?),
            window_calls: u32::try_from(row.u64(9)?).unwrap_or(u32::MAX),
            min_calls: u32::try_from(row.u64(10)?).unwrap_or(u32::MAX),
            error_rate_points: row.f64(11)?,
            p99_ratio: row.f64(12)?,
        },
        requested_by: row.string(13)?,
        created: from_micros(row.i64(14)?),
        updated: from_micros(row.i64(15)?),
        state: DeploymentState::parse(&state)
            .ok_or_else(|| corrupt(q.op, format!("unknown deployment state {state:?}")))?,
        reason: row.string(17)?,
    })
}

fn decode_serving<C: ConnectionTrait>(q: &Q<'_, C>, r: &QueryResult) -> Result<ServingRecord> {
    let row = q.row(r);
    Ok(ServingRecord {
        server: row.string(0)?,
        service: row.string(1)?,
        stable: row.string(2)?,
        candidate: row.string(3)?,
        deployment: row.u64(4)?,
        since: Some(from_micros(row.i64(5)?)),
        updated: Some(from_micros(row.i64(6)?)),
        stats: row.string(7)?,
        failure: row.string(8)?,
    })
}

fn check_new(d: &NewDeployment) -> Result<()> {
    if d.service.is_empty() || d.service.len() > 128 {
        return Err(StoreError::Invalid(format!(
            "service name {:?} must have 1 to 128 bytes",
            d.service
        )));
    }
    let digest = hex::encode(Sha256::digest(&d.wasm));
    if digest != d.digest {
        return Err(StoreError::Invalid(format!(
            "digest {} does not match the component's SHA-256 {digest}",
            d.digest
        )));
    }
    match &d.selection {
        Selection::Share(s) if *s > 100 => {
            Err(StoreError::Invalid(format!("share {s} is outside 0-100")))
        }
        Selection::Labels(l)
            if l.is_empty() || l.iter().any(|l| l.is_empty() || l.contains(',')) =>
        {
            Err(StoreError::Invalid(format!(
                "labels {l:?} must be non-empty and contain no commas"
            )))
        }
        _ => Ok(()),
    }
}

/// A violation of `canary_of`'s unique key is a second canary that slipped past the locking
/// read (another server's deploy committed in between): a conflict, not a database failure.
fn second_canary(e: StoreError, service: &str) -> StoreError {
    match &e {
        StoreError::Backend { message, .. }
            if message.contains("Duplicate entry") || message.contains("UNIQUE constraint") =>
        {
            StoreError::Conflict(format!(
                "service {service:?} already has a deployment in canary; promote or roll it back first"
            ))
        }
        _ => e,
    }
}

/// The service's canary, locked, or a conflict naming what is missing.
async fn canary<C: ConnectionTrait>(
    q: &Q<'_, C>,
    service: &str,
    id: Option<u64>,
) -> Result<Deployment> {
    let sql = format!(
        "SELECT {DEPLOYMENT_COLS} FROM fleetgate_deployments WHERE service_name = ? AND state = ?{}",
        q.d.for_update()
    );
    let row = q
        .one(
            &sql,
            vec![service.into(), DeploymentState::Canary.as_str().into()],
        )
        .await?;
    let Some(row) = row else {
        return Err(StoreError::Conflict(format!(
            "service {service:?} has no deployment in canary"
        )));
    };
    let d = decode(q, &row)?;
    if let Some(id) = id.filter(|id| *id != d.id) {
        return Err(StoreError::Conflict(format!(
            "deployment {id} of service {service:?} is not its canary (deployment {} is)",
            d.id
        )));
    }
    Ok(d)
}

async fn set_state<C: ConnectionTrait>(
    q: &Q<'_, C>,
    id: u64,
    state: DeploymentState,
    reason: &str,
    now: i64,
) -> Result<()> {
    q.exec(
        "UPDATE fleetgate_deployments SET state = ?, reason = ?, updated_time = ?, canary_of = NULL \
         WHERE deployment_id = ?",
        vec![
            state.as_str().into(),
            reason.into(),
            now.into(),
            to_i64(id).into(),
        ],
    )
    .await?;
    Ok(())
}

async fn by_id<C: ConnectionTrait>(q: &Q<'_, C>, id: u64) -> Result<Deployment> {
    let sql =
        format!("SELECT {DEPLOYMENT_COLS} FROM fleetgate_deployments WHERE deployment_id = ?");
    let row = q
        .one(&sql, vec![to_i64(id).into()])
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("deployment {id}")))?;
    decode(q, &row)
}

#[async_trait]
impl DeploymentStore for SeaOrmStore {
    async fn create_deployment(&self, d: &NewDeployment) -> Result<Deployment> {
        check_new(d)?;
        let now = unix_micros(self.now());
        self.tx("create_deployment", move |tx| {
            Box::pin(async move {
                let q = tx.q();
                match canary(&q, &d.service, None).await {
                    Ok(c) => {
                        return Err(StoreError::Conflict(format!(
                            "service {:?} already has deployment {} in canary (sha256:{}); \
                             promote or roll it back first",
                            d.service, c.id, c.digest
                        )));
                    }
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
                let sql = format!(
                    "{} INTO fleetgate_components(digest, size, wasm, created_time) VALUES (?, ?, ?, ?)",
                    q.d.insert_ignore()
                );
                q.exec(
                    &sql,
                    vec![
                        d.digest.clone().into(),
                        to_i64(d.wasm.len() as u64).into(),
                        d.wasm.clone().into(),
                        now.into(),
                    ],
                )
                .await?;
                let (share, labels) = match &d.selection {
                    Selection::Share(s) => (Some(i64::from(*s)), String::new()),
                    Selection::Labels(l) => (None, l.join(",")),
                };
                let t = &d.thresholds;
                let res = q
                    .exec(
                        &format!(
                            "INSERT INTO fleetgate_deployments({DEPLOYMENT_COLS}, canary_of) VALUES \
                             (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        ),
                        vec![
                            d.service.clone().into(),
                            d.digest.clone().into(),
                            d.config.clone().into(),
                            share.into(),
                            labels.into(),
                            i64::from(d.shadow).into(),
                            i64::from(d.auto_rollback).into(),
                            to_i64(t.window.as_millis() as u64).into(),
                            i64::from(t.window_calls).into(),
                            i64::from(t.min_calls).into(),
                            t.error_rate_points.into(),
                            t.p99_ratio.into(),
                            d.requested_by.clone().into(),
                            now.into(),
                            now.into(),
                            DeploymentState::Canary.as_str().into(),
                            String::new().into(),
                            d.service.clone().into(),
                        ],
                    )
                    .await
                    .map_err(|e| second_canary(e, &d.service))?;
                by_id(&q, res.last_insert_id()).await
            })
        })
        .await
    }

    async fn promote_deployment(&self, service: &str, id: Option<u64>) -> Result<Deployment> {
        let now = unix_micros(self.now());
        self.tx("promote_deployment", move |tx| {
            Box::pin(async move {
                let q = tx.q();
                let c = canary(&q, service, id).await?;
                q.exec(
                    "UPDATE fleetgate_deployments SET state = ?, updated_time = ? \
                     WHERE service_name = ? AND state = ?",
                    vec![
                        DeploymentState::Superseded.as_str().into(),
                        now.into(),
                        service.into(),
                        DeploymentState::Promoted.as_str().into(),
                    ],
                )
                .await?;
                set_state(&q, c.id, DeploymentState::Promoted, "", now).await?;
                by_id(&q, c.id).await
            })
        })
        .await
    }

    async fn rollback_deployment(
        &self,
        service: &str,
        id: Option<u64>,
        reason: &str,
    ) -> Result<Deployment> {
        let now = unix_micros(self.now());
        self.tx("rollback_deployment", move |tx| {
            Box::pin(async move {
                let q = tx.q();
                let c = canary(&q, service, id).await?;
                set_state(&q, c.id, DeploymentState::RolledBack, reason, now).await?;
                by_id(&q, c.id).await
            })
        })
        .await
    }

    async fn list_deployments(&self, service: Option<&str>) -> Result<Vec<Deployment>> {
        let q = self.q("list_deployments");
        let (filter, vals): (&str, Vec<Value>) = match service {
            Some(s) => (" WHERE service_name = ?", vec![s.into()]),
            None => ("", Vec::new()),
        };
        let sql = format!(
            "SELECT {DEPLOYMENT_COLS} FROM fleetgate_deployments{filter} ORDER BY deployment_id DESC"
        );
        q.all(&sql, vals)
            .await?
            .iter()
            .map(|r| decode(&q, r))
            .collect()
    }

    async fn active_deployments(&self) -> Result<Vec<Deployment>> {
        let q = self.q("active_deployments");
        let sql = format!(
            "SELECT {DEPLOYMENT_COLS} FROM fleetgate_deployments WHERE state IN (?, ?) \
             ORDER BY service_name, deployment_id"
        );
        let vals = vec![
            DeploymentState::Canary.as_str().into(),
            DeploymentState::Promoted.as_str().into(),
        ];
        q.all(&sql, vals)
            .await?
            .iter()
            .map(|r| decode(&q, r))
            .collect()
    }

    async fn get_component(&self, digest: &str) -> Result<Vec<u8>> {
        let q = self.q("get_component");
        let row = q
            .one(
                "SELECT wasm FROM fleetgate_components WHERE digest = ?",
                vec![digest.into()],
            )
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("component sha256:{digest}")))?;
        q.row(&row).bytes(0)
    }

    async fn record_serving(&self, r: &ServingRecord) -> Result<()> {
        let now = self.now();
        let vals = || -> Vec<Value> {
            vec![
                r.server.clone().into(),
                r.service.clone().into(),
                r.stable.clone().into(),
                r.candidate.clone().into(),
                to_i64(r.deployment).into(),
                unix_micros(r.since.unwrap_or(now)).into(),
                unix_micros(r.updated.unwrap_or(now)).into(),
                r.stats.clone().into(),
                r.failure.clone().into(),
            ]
        };
        self.tx("record_serving", move |tx| {
            Box::pin(async move {
                let q = tx.q();
                q.exec(
                    "DELETE FROM fleetgate_deployment_servers WHERE server_name = ? AND service_name = ?",
                    vec![r.server.clone().into(), r.service.clone().into()],
                )
                .await?;
                q.exec(
                    &format!(
                        "INSERT INTO fleetgate_deployment_servers({SERVING_COLS}) VALUES \
                         (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    ),
                    vals(),
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn list_serving(&self, service: Option<&str>) -> Result<Vec<ServingRecord>> {
        let q = self.q("list_serving");
        let (filter, vals): (&str, Vec<Value>) = match service {
            Some(s) => (" WHERE service_name = ?", vec![s.into()]),
            None => ("", Vec::new()),
        };
        let sql = format!(
            "SELECT {SERVING_COLS} FROM fleetgate_deployment_servers{filter} \
             ORDER BY service_name, server_name"
        );
        q.all(&sql, vals)
            .await?
            .iter()
            .map(|r| decode_serving(&q, r))
            .collect()
    }
}
