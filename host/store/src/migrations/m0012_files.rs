//! `files`: files served under /files/, modification time in ns (datastore.md §3.12).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0012_files"
    }
}

/// Fleetspeak's statement, verbatim, so Go servers and Fleetgate can share the database.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS files(
service VARCHAR(128) NOT NULL,
name VARCHAR(128) NOT NULL,
modified_time_nanos BIGINT NOT NULL,
data MEDIUMBLOB,
PRIMARY KEY (service, name))"];

const SQLITE: &[&str] = &[r"CREATE TABLE IF NOT EXISTS files(
service TEXT NOT NULL,
name TEXT NOT NULL,
modified_time_nanos INTEGER NOT NULL,
data BLOB,
PRIMARY KEY (service, name))"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "files").await
    }
}
