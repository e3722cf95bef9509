//! `clients`: one row per client id ever seen (datastore.md §3.1).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0001_clients"
    }
}

/// Fleetspeak's statement, verbatim, so Go servers and Fleetgate can share the database.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS clients(
client_id BINARY(8) PRIMARY KEY,
client_key BLOB,
blacklisted BOOL NOT NULL,
last_contact_time BIGINT NOT NULL,
last_contact_address TEXT(64),
last_contact_streaming_to TEXT(128),
last_clock_seconds BIGINT UNSIGNED,
last_clock_nanos INT UNSIGNED)"];

const SQLITE: &[&str] = &[r"CREATE TABLE IF NOT EXISTS clients(
client_id BLOB PRIMARY KEY,
client_key BLOB,
blacklisted INTEGER NOT NULL,
last_contact_time INTEGER NOT NULL,
last_contact_address TEXT,
last_contact_streaming_to TEXT,
last_clock_seconds INTEGER,
last_clock_nanos INTEGER)"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "clients").await
    }
}
