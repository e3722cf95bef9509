//! [`FileStore`] over the `files` table; modification times in ns.

use std::time::SystemTime;

use async_trait::async_trait;
use fleetgate_types::time::from_unix_nanos;
use sea_orm::Value;

use crate::StoreError;
use crate::api::{FileStore, Result};
use crate::db::retry;
use crate::store::SeaOrmStore;

#[async_trait]
impl FileStore for SeaOrmStore {
    async fn store_file(&self, service: &str, name: &str, data: &[u8]) -> Result<()> {
        let sql =
            "REPLACE INTO files(service, name, modified_time_nanos, data) VALUES (?, ?, ?, ?)";
        let vals: Vec<Value> = vec![
            service.into(),
            name.into(),
            self.now_ns().into(),
            data.to_vec().into(),
        ];
        let q = self.q("store_file");
        retry(q.op, || Box::pin(q.exec(sql, vals.clone())))
            .await
            .map(|_| ())
    }

    async fn delete_file(&self, service: &str, name: &str) -> Result<()> {
        let sql = "DELETE FROM files WHERE service = ? AND name = ?";
        let vals: Vec<Value> = vec![service.into(), name.into()];
        let q = self.q("delete_file");
        retry(q.op, || Box::pin(q.exec(sql, vals.clone())))
            .await
            .map(|_| ())
    }

    async fn stat_file(&self, service: &str, name: &str) -> Result<SystemTime> {
        let q = self.q("stat_file");
        let sql = "SELECT modified_time_nanos FROM files WHERE service = ? AND name = ?";
        let row = q.one(sql, vec![service.into(), name.into()]).await?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("file {service}/{name}")))?;
        Ok(from_unix_nanos(q.row(&row).i64(0)?))
    }

    async fn read_file(&self, service: &str, name: &str) -> Result<(Vec<u8>, SystemTime)> {
        let q = self.q("read_file");
        let sql = "SELECT modified_time_nanos, data FROM files WHERE service = ? AND name = ?";
        let row = q.one(sql, vec![service.into(), name.into()]).await?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("file {service}/{name}")))?;
        let r = q.row(&row);
        Ok((r.bytes(1)?, from_unix_nanos(r.i64(0)?)))
    }
}
