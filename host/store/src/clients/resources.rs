//! Resource usage records (protos.md §4.4 for the conversion).

use std::time::SystemTime;

use fleetgate_types::ClientId;
use fleetgate_types::pb::fleetspeak::monitoring::ResourceUsageData;
use fleetgate_types::pb::fleetspeak::server::ClientResourceUsageRecord;
use fleetgate_types::time::{from_timestamp, unix_nanos};
use sea_orm::Value;

use super::ts_from_nanos;
use crate::StoreError;
use crate::api::Result;
use crate::store::SeaOrmStore;

const MIB: f64 = (1u64 << 20) as f64;

fn valid_nanos(ts: Option<&prost_types::Timestamp>, what: &str) -> Result<i64> {
    ts.and_then(from_timestamp).map(unix_nanos).ok_or_else(|| {
        StoreError::Invalid(format!(
            "failed to parse {what}: missing or invalid timestamp"
        ))
    })
}

pub(super) async fn record(s: &SeaOrmStore, id: ClientId, rud: &ResourceUsageData) -> Result<()> {
    let start = valid_nanos(rud.process_start_time.as_ref(), "process start time")?;
    let data_ts = valid_nanos(rud.data_timestamp.as_ref(), "data timestamp")?;
    let u = rud.resource_usage.unwrap_or_default();
    let vals: Vec<Value> = vec![
        id.to_vec().into(),
        rud.scope.clone().into(),
        rud.pid.into(),
        start.into(),
        data_ts.into(),
        s.now_ns().into(),
        rud.process_terminated.into(),
        u.mean_user_cpu_rate.into(),
        u.max_user_cpu_rate.into(),
        u.mean_system_cpu_rate.into(),
        u.max_system_cpu_rate.into(),
        i64::from((u.mean_resident_memory / MIB) as i32).into(),
        i64::from((u.max_resident_memory as f64 / MIB) as i32).into(),
        i64::from(u.mean_num_fds as i32).into(),
        i64::from(u.max_num_fds).into(),
    ];
    let sql = "INSERT INTO client_resource_usage_records(client_id, scope, pid, process_start_time, client_timestamp, \
               server_timestamp, process_terminated, mean_user_cpu_rate, max_user_cpu_rate, mean_system_cpu_rate, \
               max_system_cpu_rate, mean_resident_memory_mib, max_resident_memory_mib, mean_num_fds, max_num_fds) \
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let q = s.q("record_resource_usage_data");
    crate::db::retry(q.op, || Box::pin(q.exec(sql, vals.clone())))
        .await
        .map(|_| ())
}

pub(super) async fn fetch(
    s: &SeaOrmStore,
    id: ClientId,
    start: SystemTime,
    end: SystemTime,
) -> Result<Vec<ClientResourceUsageRecord>> {
    if start > end {
        return Err(StoreError::Invalid(
            "timerange is invalid: start timestamp is after end timestamp".into(),
        ));
    }
    let q = s.q("fetch_resource_usage_records");
    let sql = "SELECT scope, pid, process_start_time, client_timestamp, server_timestamp, process_terminated, \
               mean_user_cpu_rate, max_user_cpu_rate, mean_system_cpu_rate, max_system_cpu_rate, \
               mean_resident_memory_mib, max_resident_memory_mib, mean_num_fds, max_num_fds \
               FROM client_resource_usage_records WHERE client_id = ? AND server_timestamp >= ? AND server_timestamp < ?";
    let vals: Vec<Value> = vec![
        id.to_vec().into(),
        unix_nanos(start).into(),
        unix_nanos(end).into(),
    ];
    let int = |v: Option<i64>| v.and_then(|v| i32::try_from(v).ok()).unwrap_or(0);
    q.all(sql, vals)
        .await?
        .iter()
        .map(|r| {
            let r = q.row(r);
            Ok(ClientResourceUsageRecord {
                scope: r.string(0)?,
                pid: r.opt_i64(1)?.unwrap_or(0),
                process_start_time: Some(ts_from_nanos(r.opt_i64(2)?.unwrap_or(0))),
                client_timestamp: Some(ts_from_nanos(r.opt_i64(3)?.unwrap_or(0))),
                server_timestamp: Some(ts_from_nanos(r.opt_i64(4)?.unwrap_or(0))),
                process_terminated: r.bool(5)?,
                mean_user_cpu_rate: r.f64(6)? as f32,
                max_user_cpu_rate: r.f64(7)? as f32,
                mean_system_cpu_rate: r.f64(8)? as f32,
                max_system_cpu_rate: r.f64(9)? as f32,
                mean_resident_memory_mib: int(r.opt_i64(10)?),
                max_resident_memory_mib: int(r.opt_i64(11)?),
                mean_num_fds: int(r.opt_i64(12)?),
                max_num_fds: int(r.opt_i64(13)?),
            })
        })
        .collect()
}
