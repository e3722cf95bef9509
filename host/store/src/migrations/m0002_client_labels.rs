//! `client_labels`: labels of every service (datastore.md §3.2).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0002_client_labels"
    }
}

/// Fleetspeak's statement, verbatim, so Go servers and Fleetgate can share the database.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS client_labels(
client_id BINARY(8) NOT NULL,
service_name VARCHAR(128) NOT NULL,
label VARCHAR(128) NOT NULL,
PRIMARY KEY (client_id, service_name, label),
CONSTRAINT client_labels_fk_1
  FOREIGN KEY (client_id)
  REFERENCES clients(client_id)
  ON DELETE CASCADE)"];

const SQLITE: &[&str] = &[r"CREATE TABLE IF NOT EXISTS client_labels(
client_id BLOB NOT NULL,
service_name TEXT NOT NULL,
label TEXT NOT NULL,
PRIMARY KEY (client_id, service_name, label),
FOREIGN KEY (client_id) REFERENCES clients(client_id) ON DELETE CASCADE)"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "client_labels").await
    }
}
