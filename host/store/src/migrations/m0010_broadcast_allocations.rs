//! `broadcast_allocations`: shares of a broadcast's limit reserved by one server (datastore.md §3.10).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0010_broadcast_allocations"
    }
}

/// Fleetspeak's statement, verbatim, so Go servers and Fleetgate can share the database.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS broadcast_allocations(
broadcast_id BINARY(8) NOT NULL,
allocation_id BINARY(8) NOT NULL,
sent BIGINT UNSIGNED,
message_limit BIGINT UNSIGNED,
expiration_time_seconds BIGINT,
expiration_time_nanos INT,
PRIMARY KEY (broadcast_id, allocation_id),
CONSTRAINT broadcast_allocations_fk_1
  FOREIGN KEY (broadcast_id)
  REFERENCES broadcasts(broadcast_id)
  ON DELETE CASCADE)"];

const SQLITE: &[&str] = &[r"CREATE TABLE IF NOT EXISTS broadcast_allocations(
broadcast_id BLOB NOT NULL,
allocation_id BLOB NOT NULL,
sent INTEGER,
message_limit INTEGER,
expiration_time_seconds INTEGER,
expiration_time_nanos INTEGER,
PRIMARY KEY (broadcast_id, allocation_id),
FOREIGN KEY (broadcast_id) REFERENCES broadcasts(broadcast_id) ON DELETE CASCADE)"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "broadcast_allocations").await
    }
}
