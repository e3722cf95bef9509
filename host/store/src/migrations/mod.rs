//! The schema, one migration per table, in Fleetspeak's creation order (foreign keys need it),
//! then Fleetgate's own tables (`fleetgate_*`), which Go servers never touch.
//!
//! On MySQL/MariaDB each statement is the Go server's own `CREATE TABLE IF NOT EXISTS`, so the
//! schema is identical and setting it up over a database a Go server created is a no-op. On SQLite
//! the same tables and columns use SQLite types, and the indexes InnoDB adds implicitly for foreign
//! key columns are created explicitly.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

mod m0001_clients;
mod m0002_client_labels;
mod m0003_client_contacts;
mod m0004_client_resource_usage_records;
mod m0005_messages;
mod m0006_pending_messages;
mod m0007_client_contact_messages;
mod m0008_broadcasts;
mod m0009_broadcast_labels;
mod m0010_broadcast_allocations;
mod m0011_broadcast_sent;
mod m0012_files;
mod m0013_dead_letters;
mod m0014_message_trace;
mod m0015_components;
mod m0016_deployments;
mod m0017_deployment_servers;

pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_clients::Migration),
            Box::new(m0002_client_labels::Migration),
            Box::new(m0003_client_contacts::Migration),
            Box::new(m0004_client_resource_usage_records::Migration),
            Box::new(m0005_messages::Migration),
            Box::new(m0006_pending_messages::Migration),
            Box::new(m0007_client_contact_messages::Migration),
            Box::new(m0008_broadcasts::Migration),
            Box::new(m0009_broadcast_labels::Migration),
            Box::new(m0010_broadcast_allocations::Migration),
            Box::new(m0011_broadcast_sent::Migration),
            Box::new(m0012_files::Migration),
            Box::new(m0013_dead_letters::Migration),
            Box::new(m0014_message_trace::Migration),
            Box::new(m0015_components::Migration),
            Box::new(m0016_deployments::Migration),
            Box::new(m0017_deployment_servers::Migration),
        ]
    }
}

/// Runs the statements for the connected backend, one at a time.
async fn run(m: &SchemaManager<'_>, mysql: &[&str], sqlite: &[&str]) -> Result<(), DbErr> {
    let conn = m.get_connection();
    let stmts = match conn.get_database_backend() {
        DbBackend::MySql => mysql,
        DbBackend::Sqlite => sqlite,
        DbBackend::Postgres => return Err(DbErr::Migration("PostgreSQL is not supported".into())),
    };
    for s in stmts {
        conn.execute_unprepared(s).await?;
    }
    Ok(())
}

async fn drop_table(m: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    m.get_connection()
        .execute_unprepared(&format!("DROP TABLE IF EXISTS {table}"))
        .await
        .map(|_| ())
}
