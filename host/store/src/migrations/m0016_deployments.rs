//! `fleetgate_deployments`: one row per plugin deployment — service, component digest, plugin
//! config, selection, automatic-rollback thresholds, who asked, when, and its state. A Fleetgate
//! table with no foreign key into Fleetspeak's.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0016_deployments"
    }
}

/// Times are microseconds since the epoch. `share` is NULL when the canary selects by `labels`
/// (comma-separated). `config` is the `fleetgate.plugin.v1.WasmConfig` protobuf without its path.
/// `canary_of` holds the service name while the deployment is its canary and is NULL otherwise:
/// its unique key makes a second canary of a service impossible, whatever the isolation level.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS fleetgate_deployments(
deployment_id BIGINT NOT NULL AUTO_INCREMENT,
service_name VARCHAR(128) NOT NULL,
digest CHAR(64) NOT NULL,
config LONGBLOB NOT NULL,
share INT,
labels TEXT NOT NULL,
shadow TINYINT NOT NULL,
auto_rollback TINYINT NOT NULL,
window_ms BIGINT NOT NULL,
window_calls INT NOT NULL,
min_calls INT NOT NULL,
error_rate_points DOUBLE NOT NULL,
p99_ratio DOUBLE NOT NULL,
requested_by VARCHAR(255) NOT NULL,
created_time BIGINT NOT NULL,
updated_time BIGINT NOT NULL,
state VARCHAR(16) NOT NULL,
reason TEXT NOT NULL,
canary_of VARCHAR(128),
PRIMARY KEY (deployment_id),
UNIQUE KEY (canary_of),
INDEX (service_name, state))"];

const SQLITE: &[&str] = &[
    r"CREATE TABLE IF NOT EXISTS fleetgate_deployments(
deployment_id INTEGER PRIMARY KEY AUTOINCREMENT,
service_name TEXT NOT NULL,
digest TEXT NOT NULL,
config BLOB NOT NULL,
share INTEGER,
labels TEXT NOT NULL,
shadow INTEGER NOT NULL,
auto_rollback INTEGER NOT NULL,
window_ms INTEGER NOT NULL,
window_calls INTEGER NOT NULL,
min_calls INTEGER NOT NULL,
error_rate_points REAL NOT NULL,
p99_ratio REAL NOT NULL,
requested_by TEXT NOT NULL,
created_time INTEGER NOT NULL,
updated_time INTEGER NOT NULL,
state TEXT NOT NULL,
reason TEXT NOT NULL,
canary_of TEXT UNIQUE)",
    r"CREATE INDEX IF NOT EXISTS fleetgate_deployments_service ON fleetgate_deployments(service_name, state)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "fleetgate_deployments").await
    }
}
