//! `fleetgate_dead_letters`: messages whose life ended without success (retries exhausted, too
//! old, failed permanently, expired undelivered), kept with their payload for replay. A Fleetgate
//! table: Go servers sharing the database never read or write it, and it has no foreign key into
//! Fleetspeak's tables, so their retention may prune a message while its letter stays.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0013_dead_letters"
    }
}

/// Times are microseconds since the epoch; `message` is the `fleetspeak.Message` protobuf with
/// its payload and without a result.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS fleetgate_dead_letters(
message_id BINARY(32) NOT NULL,
destination_service_name VARCHAR(128) NOT NULL,
destination_client_id BINARY(8),
message_type VARCHAR(128) NOT NULL,
reason VARCHAR(16) NOT NULL,
last_error TEXT NOT NULL,
plugin VARCHAR(128) NOT NULL,
attempts INT NOT NULL,
creation_time BIGINT NOT NULL,
dead_time BIGINT NOT NULL,
replays INT NOT NULL,
replayed_time BIGINT,
message LONGBLOB NOT NULL,
PRIMARY KEY (message_id),
INDEX (destination_service_name, dead_time),
INDEX (dead_time))"];

const SQLITE: &[&str] = &[
    r"CREATE TABLE IF NOT EXISTS fleetgate_dead_letters(
message_id BLOB NOT NULL PRIMARY KEY,
destination_service_name TEXT NOT NULL,
destination_client_id BLOB,
message_type TEXT NOT NULL,
reason TEXT NOT NULL,
last_error TEXT NOT NULL,
plugin TEXT NOT NULL,
attempts INTEGER NOT NULL,
creation_time INTEGER NOT NULL,
dead_time INTEGER NOT NULL,
replays INTEGER NOT NULL,
replayed_time INTEGER,
message BLOB NOT NULL)",
    r"CREATE INDEX IF NOT EXISTS fleetgate_dead_letters_service ON fleetgate_dead_letters(destination_service_name, dead_time)",
    r"CREATE INDEX IF NOT EXISTS fleetgate_dead_letters_dead_time ON fleetgate_dead_letters(dead_time)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "fleetgate_dead_letters").await
    }
}
