//! `broadcasts`: broadcasts with their counters (datastore.md §3.8).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0008_broadcasts"
    }
}

/// Fleetspeak's statement, verbatim, so Go servers and Fleetgate can share the database.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS broadcasts(
broadcast_id BINARY(8) NOT NULL,
source_service_name VARCHAR(128) NOT NULL,
destination_service_name VARCHAR(128),
message_type VARCHAR(128) NOT NULL,
expiration_time_seconds BIGINT,
expiration_time_nanos INT,
data_type_url TEXT,
data_value MEDIUMBLOB,
sent BIGINT UNSIGNED,
allocated BIGINT UNSIGNED,
message_limit BIGINT UNSIGNED,
PRIMARY KEY (broadcast_id))"];

const SQLITE: &[&str] = &[r"CREATE TABLE IF NOT EXISTS broadcasts(
broadcast_id BLOB NOT NULL PRIMARY KEY,
source_service_name TEXT NOT NULL,
destination_service_name TEXT,
message_type TEXT NOT NULL,
expiration_time_seconds INTEGER,
expiration_time_nanos INTEGER,
data_type_url TEXT,
data_value BLOB,
sent INTEGER,
allocated INTEGER,
message_limit INTEGER)"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "broadcasts").await
    }
}
