//! `fleetgate_message_trace`: the steps of each message's life (Fleetgate's own table; Go
//! Fleetspeak servers sharing the database never see it). No foreign key to `messages`: a step
//! may be written before its message's row (a client message is processed, then stored with its
//! outcome) and may outlive it until its own retention.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0014_message_trace"
    }
}

/// Indexes: one message's steps in order (`message_id, time_micros, id`), and retention by time.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS fleetgate_message_trace(
id BIGINT NOT NULL AUTO_INCREMENT,
message_id BINARY(32) NOT NULL,
time_micros BIGINT NOT NULL,
server VARCHAR(255) NOT NULL,
step VARCHAR(32) NOT NULL,
detail TEXT NOT NULL,
PRIMARY KEY (id),
KEY fleetgate_message_trace_message (message_id, time_micros, id),
KEY fleetgate_message_trace_time (time_micros))"];

const SQLITE: &[&str] = &[
    r"CREATE TABLE IF NOT EXISTS fleetgate_message_trace(
id INTEGER PRIMARY KEY AUTOINCREMENT,
message_id BLOB NOT NULL,
time_micros INTEGER NOT NULL,
server TEXT NOT NULL,
step TEXT NOT NULL,
detail TEXT NOT NULL)",
    r"CREATE INDEX IF NOT EXISTS fleetgate_message_trace_message ON fleetgate_message_trace(message_id, time_micros, id)",
    r"CREATE INDEX IF NOT EXISTS fleetgate_message_trace_time ON fleetgate_message_trace(time_micros)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "fleetgate_message_trace").await
    }
}
