//! `fleetgate_deployment_servers`: what each server serves for each service with a deployment
//! (stable and candidate digests, since when, its statistics, a build failure), as it last
//! reported. A Fleetgate table.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0017_deployment_servers"
    }
}

/// Times are microseconds since the epoch; `stats` is JSON written by the reporting server.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS fleetgate_deployment_servers(
server_name VARCHAR(255) NOT NULL,
service_name VARCHAR(128) NOT NULL,
stable_digest VARCHAR(64) NOT NULL,
candidate_digest VARCHAR(64) NOT NULL,
deployment_id BIGINT NOT NULL,
since_time BIGINT NOT NULL,
updated_time BIGINT NOT NULL,
stats TEXT NOT NULL,
failure TEXT NOT NULL,
PRIMARY KEY (server_name, service_name))"];

const SQLITE: &[&str] = &[r"CREATE TABLE IF NOT EXISTS fleetgate_deployment_servers(
server_name TEXT NOT NULL,
service_name TEXT NOT NULL,
stable_digest TEXT NOT NULL,
candidate_digest TEXT NOT NULL,
deployment_id INTEGER NOT NULL,
since_time INTEGER NOT NULL,
updated_time INTEGER NOT NULL,
stats TEXT NOT NULL,
failure TEXT NOT NULL,
PRIMARY KEY (server_name, service_name))"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "fleetgate_deployment_servers").await
    }
}
