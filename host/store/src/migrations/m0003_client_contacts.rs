//! `client_contacts`: one row per poll or stream start; the row id is the contact id (datastore.md §3.3).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0003_client_contacts"
    }
}

/// Fleetspeak's statement, verbatim, so Go servers and Fleetgate can share the database.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS client_contacts(
client_contact_id INTEGER NOT NULL AUTO_INCREMENT,
client_id BINARY(8) NOT NULL,
time BIGINT NOT NULL,
sent_nonce BINARY(8) NOT NULL,
received_nonce BINARY(8) NOT NULL,
address VARCHAR(64),
PRIMARY KEY (client_contact_id),
CONSTRAINT client_contacts_fk_1
  FOREIGN KEY (client_id)
  REFERENCES clients(client_id)
  ON DELETE CASCADE)"];

const SQLITE: &[&str] = &[
    r"CREATE TABLE IF NOT EXISTS client_contacts(
client_contact_id INTEGER PRIMARY KEY AUTOINCREMENT,
client_id BLOB NOT NULL,
time INTEGER NOT NULL,
sent_nonce BLOB NOT NULL,
received_nonce BLOB NOT NULL,
address TEXT,
FOREIGN KEY (client_id) REFERENCES clients(client_id) ON DELETE CASCADE)",
    r"CREATE INDEX IF NOT EXISTS client_contacts_client_id ON client_contacts(client_id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "client_contacts").await
    }
}
