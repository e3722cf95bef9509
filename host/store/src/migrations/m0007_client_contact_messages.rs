//! `client_contact_messages`: which messages travelled in which contact (datastore.md §3.7).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0007_client_contact_messages"
    }
}

/// Fleetspeak's statement, verbatim, so Go servers and Fleetgate can share the database.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS client_contact_messages(
client_contact_id INTEGER NOT NULL,
message_id BINARY(32) NOT NULL,
PRIMARY KEY (client_contact_id, message_id),
CONSTRAINT client_contact_messages_fk_1
  FOREIGN KEY (client_contact_id)
  REFERENCES client_contacts(client_contact_id)
  ON DELETE CASCADE,
CONSTRAINT client_contact_messages_fk_2
  FOREIGN KEY (message_id)
  REFERENCES messages(message_id)
  ON DELETE CASCADE)"];

const SQLITE: &[&str] = &[
    r"CREATE TABLE IF NOT EXISTS client_contact_messages(
client_contact_id INTEGER NOT NULL,
message_id BLOB NOT NULL,
PRIMARY KEY (client_contact_id, message_id),
FOREIGN KEY (client_contact_id) REFERENCES client_contacts(client_contact_id) ON DELETE CASCADE,
FOREIGN KEY (message_id) REFERENCES messages(message_id) ON DELETE CASCADE)",
    r"CREATE INDEX IF NOT EXISTS client_contact_messages_message_id ON client_contact_messages(message_id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "client_contact_messages").await
    }
}
