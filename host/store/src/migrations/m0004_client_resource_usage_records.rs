//! `client_resource_usage_records`: resource usage reports, columns in the original's positional order (datastore.md §3.4).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0004_client_resource_usage_records"
    }
}

/// Fleetspeak's statement, verbatim, so Go servers and Fleetgate can share the database.
const MYSQL: &[&str] = &[r"CREATE TABLE IF NOT EXISTS client_resource_usage_records(
client_id BINARY(8) NOT NULL,
scope VARCHAR(128) NOT NULL,
pid BIGINT,
process_start_time BIGINT,
client_timestamp BIGINT,
server_timestamp BIGINT,
process_terminated BOOL NOT NULL,
mean_user_cpu_rate REAL,
max_user_cpu_rate REAL,
mean_system_cpu_rate REAL,
max_system_cpu_rate REAL,
mean_resident_memory_mib INT4,
max_resident_memory_mib INT4,
mean_num_fds INT,
max_num_fds INT,
CONSTRAINT client_resource_usage_records_fk_1
  FOREIGN KEY (client_id)
  REFERENCES clients(client_id)
  ON DELETE CASCADE)"];

const SQLITE: &[&str] = &[
    r"CREATE TABLE IF NOT EXISTS client_resource_usage_records(
client_id BLOB NOT NULL,
scope TEXT NOT NULL,
pid INTEGER,
process_start_time INTEGER,
client_timestamp INTEGER,
server_timestamp INTEGER,
process_terminated INTEGER NOT NULL,
mean_user_cpu_rate REAL,
max_user_cpu_rate REAL,
mean_system_cpu_rate REAL,
max_system_cpu_rate REAL,
mean_resident_memory_mib INTEGER,
max_resident_memory_mib INTEGER,
mean_num_fds INTEGER,
max_num_fds INTEGER,
FOREIGN KEY (client_id) REFERENCES clients(client_id) ON DELETE CASCADE)",
    r"CREATE INDEX IF NOT EXISTS client_resource_usage_records_client_id ON client_resource_usage_records(client_id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::run(m, MYSQL, SQLITE).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_table(m, "client_resource_usage_records").await
    }
}
