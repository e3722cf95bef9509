//! `fleetgate_components`: plugin components deployed through the shared store (plugin rollout),
//! stored once per SHA-256 however often deployed. A Fleetgate table: Go servers sharing the
//! database never read or write it.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0015_components"
    }
}

/// `created_time` is microseconds since the epoch.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS fleetgate_components(
digest CHAR(64) NOT NULL,
size BIGINT NOT NULL,
wasm LONGBLOB NOT NULL,
created_time BIGINT NOT NULL,
PRIMARY KEY (digest))"];

const SQLITE: &[&str] = &[r"CREATE TABLE IF NOT EXISTS fleetgate_components(
digest TEXT NOT NULL PRIMARY KEY,
size INTEGER NOT NULL,
wasm BLOB NOT NULL,
created_time INTEGER NOT NULL)"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "fleetgate_components").await
    }
}
