//! `broadcast_sent`: which client already got which broadcast (datastore.md §3.11).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0011_broadcast_sent"
    }
}

/// Fleetspeak's statement, verbatim, so Go servers and Fleetgate can share the database.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS broadcast_sent(
broadcast_id BINARY(8) NOT NULL,
client_id BINARY(8) NOT NULL,
PRIMARY KEY (client_id, broadcast_id),
CONSTRAINT broadcast_sent_fk_1
  FOREIGN KEY (broadcast_id)
  REFERENCES broadcasts(broadcast_id)
  ON DELETE CASCADE,
CONSTRAINT broadcast_sent_fk_2
  FOREIGN KEY (client_id)
  REFERENCES clients(client_id)
  ON DELETE CASCADE)"];

const SQLITE: &[&str] = &[
    r"CREATE TABLE IF NOT EXISTS broadcast_sent(
broadcast_id BLOB NOT NULL,
client_id BLOB NOT NULL,
PRIMARY KEY (client_id, broadcast_id),
FOREIGN KEY (broadcast_id) REFERENCES broadcasts(broadcast_id) ON DELETE CASCADE,
FOREIGN KEY (client_id) REFERENCES clients(client_id) ON DELETE CASCADE)",
    r"CREATE INDEX IF NOT EXISTS broadcast_sent_broadcast_id ON broadcast_sent(broadcast_id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "broadcast_sent").await
    }
}
