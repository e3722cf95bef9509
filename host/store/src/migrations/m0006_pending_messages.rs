//! `pending_messages`: the work queue with payloads; scheduled_time in microseconds (datastore.md §3.6).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0006_pending_messages"
    }
}

/// Fleetspeak's statement, verbatim, so Go servers and Fleetgate can share the database.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS pending_messages(
for_server BOOL NOT NULL,
message_id BINARY(32) NOT NULL,
retry_count INT NOT NULL,
scheduled_time BIGINT NOT NULL,
data_type_url TEXT,
data_value MEDIUMBLOB,
PRIMARY KEY (for_server, message_id),
INDEX (scheduled_time),
CONSTRAINT pending_messages_fk_1
  FOREIGN KEY (message_id)
  REFERENCES messages(message_id)
  ON DELETE CASCADE)"];

const SQLITE: &[&str] = &[
    r"CREATE TABLE IF NOT EXISTS pending_messages(
for_server INTEGER NOT NULL,
message_id BLOB NOT NULL,
retry_count INTEGER NOT NULL,
scheduled_time INTEGER NOT NULL,
data_type_url TEXT,
data_value BLOB,
PRIMARY KEY (for_server, message_id),
FOREIGN KEY (message_id) REFERENCES messages(message_id) ON DELETE CASCADE)",
    r"CREATE INDEX IF NOT EXISTS pending_messages_scheduled_time ON pending_messages(scheduled_time)",
    r"CREATE INDEX IF NOT EXISTS pending_messages_message_id ON pending_messages(message_id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "pending_messages").await
    }
}
