//! `messages`: every message ever stored, without payload (datastore.md §3.5).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0005_messages"
    }
}

/// Fleetspeak's statement, verbatim, so Go servers and Fleetgate can share the database.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS messages(
message_id BINARY(32) NOT NULL,
source_client_id BINARY(8),
source_service_name VARCHAR(128) NOT NULL,
source_message_id VARBINARY(16) NULL,
destination_client_id BINARY(8),
destination_service_name VARCHAR(128) NOT NULL,
message_type VARCHAR(128),
creation_time_seconds BIGINT NOT NULL,
creation_time_nanos INT NOT NULL,
processed_time_seconds BIGINT,
processed_time_nanos INT,
validation_info BLOB,
failed INT1,
failed_reason TEXT,
annotations BLOB,
PRIMARY KEY (message_id),
INDEX (destination_client_id))"];

const SQLITE: &[&str] = &[
    r"CREATE TABLE IF NOT EXISTS messages(
message_id BLOB NOT NULL PRIMARY KEY,
source_client_id BLOB,
source_service_name TEXT NOT NULL,
source_message_id BLOB,
destination_client_id BLOB,
destination_service_name TEXT NOT NULL,
message_type TEXT,
creation_time_seconds INTEGER NOT NULL,
creation_time_nanos INTEGER NOT NULL,
processed_time_seconds INTEGER,
processed_time_nanos INTEGER,
validation_info BLOB,
failed INTEGER,
failed_reason TEXT,
annotations BLOB)",
    r"CREATE INDEX IF NOT EXISTS messages_destination_client_id ON messages(destination_client_id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "messages").await
    }
}
